"""Which tasks belong together: task affinity measured during training (:mod:`.affinity`),
partitions of the tasks that maximise it (:mod:`.grouping`) and ready ``groups`` configs
(:mod:`.group_configs`)."""

from polytask.relationships.affinity import (
    AffinityMeter,
    GradientCosine,
    TagLookahead,
    build_affinity,
    run_affinity,
)
from polytask.relationships.grouping import Grouping, best_groupings, grouping_score

__all__ = [
    "AffinityMeter",
    "GradientCosine",
    "Grouping",
    "TagLookahead",
    "best_groupings",
    "build_affinity",
    "grouping_score",
    "run_affinity",
]
