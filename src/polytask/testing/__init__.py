"""Public contract checks, in the spirit of scikit-learn's ``check_estimator``:
:func:`check_balancer` for a loss-weighting or gradient-balancing method and
:func:`check_architecture` for a multi-task architecture. Each raises an ``AssertionError`` naming
the property that does not hold."""

from polytask.testing.architectures import check_architecture
from polytask.testing.balancers import check_balancer

__all__ = ["check_architecture", "check_balancer"]
