"""Balancers: loss-weighting and gradient-balancing methods, addressed by name in configs."""

from polytask.balancers.base import BALANCERS, Balancer, build_balancer, register_balancer
from polytask.balancers.db_mtl import DualBalancing
from polytask.balancers.dwa import DynamicWeightAverage
from polytask.balancers.equal import EqualWeights, FixedWeights
from polytask.balancers.famo import FAMO
from polytask.balancers.gls import GeometricLossStrategy
from polytask.balancers.gradnorm import GradNorm
from polytask.balancers.imtl_l import IMTLLoss
from polytask.balancers.rlw import RandomLossWeighting
from polytask.balancers.uncertainty import UncertaintyWeighting

__all__ = [
    "BALANCERS",
    "FAMO",
    "Balancer",
    "DualBalancing",
    "DynamicWeightAverage",
    "EqualWeights",
    "FixedWeights",
    "GeometricLossStrategy",
    "GradNorm",
    "IMTLLoss",
    "RandomLossWeighting",
    "UncertaintyWeighting",
    "build_balancer",
    "register_balancer",
]
