"""Balancers: loss-weighting and gradient-balancing methods, addressed by name in configs."""

from polytask.balancers.base import BALANCERS, Balancer, build_balancer, register_balancer
from polytask.balancers.equal import EqualWeights, FixedWeights

__all__ = [
    "BALANCERS",
    "Balancer",
    "EqualWeights",
    "FixedWeights",
    "build_balancer",
    "register_balancer",
]
