"""Balancers: loss-weighting and gradient-balancing methods, addressed by name in configs.

Layers, bottom up: :mod:`~polytask.balancers.base` (the :class:`Balancer` contract and the one
non-finite guard), :mod:`~polytask.balancers.engine` (the only place taking per-task
gradients), :mod:`~polytask.balancers.loss_weighting` and :mod:`~polytask.balancers.weighting`
(the two kinds of rule), :mod:`~polytask.balancers.wrappers` (``update_every``,
``losses_from``), :mod:`~polytask.balancers.registry` (names, options, composition), then one
module per method.
"""

from polytask.balancers.aligned_mtl import AlignedMTL
from polytask.balancers.base import Balancer, GradientOverflow, ScaledLosses
from polytask.balancers.cagrad import CAGrad
from polytask.balancers.db_mtl import DualBalancing
from polytask.balancers.dwa import DynamicWeightAverage
from polytask.balancers.engine import GramianEngine
from polytask.balancers.equal import EqualWeights, FixedWeights
from polytask.balancers.famo import FAMO
from polytask.balancers.gls import GeometricLossStrategy
from polytask.balancers.graddrop import GradDrop
from polytask.balancers.gradnorm import GradNorm
from polytask.balancers.gradvac import GradVac
from polytask.balancers.imtl import IMTLG
from polytask.balancers.imtl_l import IMTLLoss
from polytask.balancers.loss_weighting import LossWeighting
from polytask.balancers.mgda import MGDA
from polytask.balancers.nash_mtl import NashMTL
from polytask.balancers.pcgrad import PCGrad
from polytask.balancers.registry import BALANCERS, build_balancer, register_balancer
from polytask.balancers.rlw import RandomLossWeighting
from polytask.balancers.uncertainty import UncertaintyWeighting
from polytask.balancers.upgrad import UPGrad
from polytask.balancers.weighting import GramianBalancer, Weighting

__all__ = [
    "BALANCERS",
    "FAMO",
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
    "GradientOverflow",
    "GramianBalancer",
    "GramianEngine",
    "IMTLLoss",
    "LossWeighting",
    "NashMTL",
    "PCGrad",
    "RandomLossWeighting",
    "ScaledLosses",
    "UPGrad",
    "UncertaintyWeighting",
    "Weighting",
    "build_balancer",
    "register_balancer",
]
