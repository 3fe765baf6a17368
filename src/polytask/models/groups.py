"""Task grouping: tasks partitioned into groups, hard sharing inside each group.

One trunk per group and one head per task, as when tasks are first clustered by affinity and
each cluster gets its own network: Standley et al. 2020, "Which Tasks Should Be Learned Together
in Multi-task Learning?" (ICML); Fifty et al. 2021, "Efficiently Identifying Task Groupings for
Multi-Task Learning" (NeurIPS).

Shared parameters: the trunks of groups with two or more tasks (a singleton group's trunk belongs
to its task). The representation is the stack of the trunk outputs, ``(N, G, width)``; a task's
head reads its group's slice.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from polytask.models.base import MultiTaskModel
from polytask.models.parts import Factory, HeadFactory, check_output_sizes, make_heads


def check_groups(groups: Sequence[Sequence[str]], task_names: Sequence[str]) -> None:
    """Raise ``ValueError`` unless ``groups`` covers every task exactly once."""
    if isinstance(groups, str) or any(isinstance(g, str) for g in groups):
        raise ValueError("groups must be a list of lists of task names")
    if any(len(group) == 0 for group in groups):
        raise ValueError("groups: a group is empty")
    counts = Counter(name for group in groups for name in group)
    repeated = [name for name, n in counts.items() if n > 1]
    if repeated:
        raise ValueError(f"groups: task '{repeated[0]}' appears in more than one place")
    unknown = [name for name in counts if name not in task_names]
    if unknown:
        raise ValueError(f"groups: unknown task '{unknown[0]}'; tasks are {list(task_names)}")
    missing = [name for name in task_names if name not in counts]
    if missing:
        raise ValueError(f"groups: task '{missing[0]}' is in no group")


class GroupSharing(MultiTaskModel):
    """``heads[t](trunks[g(t)](x))`` where ``g(t)`` is the group of task ``t``."""

    def __init__(
        self,
        encoder_factory: Factory,
        encoder_width: int,
        output_sizes: Mapping[str, int],
        *,
        groups: Sequence[Sequence[str]],
        head_factory: HeadFactory | None = None,
    ) -> None:
        super().__init__(check_output_sizes(output_sizes))
        check_groups(groups, self.task_names)
        self.groups = tuple(tuple(group) for group in groups)
        self.group_of = {name: g for g, group in enumerate(self.groups) for name in group}
        self.trunks = nn.ModuleList(encoder_factory() for _ in self.groups)
        self.heads = make_heads(output_sizes, encoder_width, head_factory)

    def forward_with_representation(self, x: Any) -> tuple[dict[str, Tensor], Tensor]:
        z = torch.stack([trunk(x) for trunk in self.trunks], dim=1)
        outputs = {name: self.heads[name](z[:, self.group_of[name]]) for name in self.task_names}
        return outputs, z

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return itertools.chain.from_iterable(
            trunk.parameters()
            for trunk, group in zip(self.trunks, self.groups, strict=True)
            if len(group) > 1
        )

    def task_parameters(self, task: str) -> Iterator[nn.Parameter]:
        g = self.group_of[task]
        trunk = self.trunks[g].parameters() if len(self.groups[g]) == 1 else iter(())
        return itertools.chain(trunk, self.heads[task].parameters())
