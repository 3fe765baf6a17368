"""Balancers: loss-weighting and gradient-balancing methods, addressed by name in configs."""

from polytask.balancers.aligned_mtl import AlignedMTL
from polytask.balancers.base import (
    BALANCERS,
    Balancer,
    ScaledLosses,
    build_balancer,
    register_balancer,
)
from polytask.balancers.cagrad import CAGrad
from polytask.balancers.db_mtl import DualBalancing
from polytask.balancers.dwa import DynamicWeightAverage
from polytask.balancers.equal import EqualWeights, FixedWeights
from polytask.balancers.famo import FAMO
from polytask.balancers.gls import GeometricLossStrategy
from polytask.balancers.graddrop import GradDrop
from polytask.balancers.gradnorm import GradNorm
from polytask.balancers.gradvac import GradVac
from polytask.balancers.gramian import GramianBalancer
from polytask.balancers.imtl import IMTL, IMTLG
from polytask.balancers.imtl_l import IMTLLoss
from polytask.balancers.mgda import MGDA
from polytask.balancers.nash_mtl import NashMTL
from polytask.balancers.pcgrad import PCGrad
from polytask.balancers.rlw import RandomLossWeighting
from polytask.balancers.uncertainty import UncertaintyWeighting
from polytask.balancers.upgrad import UPGrad

__all__ = [
    "BALANCERS",
    "FAMO",
    "IMTL",
    "IMTLG",
    "MGDA",
    "AlignedMTL",
    "Balancer",
    "CAGrad",
    "DualBalancing",
    "DynamicWeightAverage",
    "EqualWeights",
    "FixedWeights",
    "GeometricLossStrategy",
    "GradDrop",
    "GradNorm",
    "GradVac",
    "GramianBalancer",
    "IMTLLoss",
    "NashMTL",
    "PCGrad",
    "RandomLossWeighting",
    "ScaledLosses",
    "UPGrad",
    "UncertaintyWeighting",
    "build_balancer",
    "register_balancer",
]
