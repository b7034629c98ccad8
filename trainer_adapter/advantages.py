"""Task-Relative REINFORCE++ advantages (Absolute Zero, eq. 8).

One baseline per (task type, role): six groups. A sample's advantage is its reward
normalised by the mean and standard deviation of *its own* group in the current batch, so a
solver's easy deduction batch never shifts the proposer's abduction baseline.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class GroupStats:
    count: int
    mean: float
    std: float


def group_stats(groups: Sequence[Hashable], rewards: Sequence[float]
                ) -> dict[Hashable, GroupStats]:
    members: dict[Hashable, list[float]] = defaultdict(list)
    for group, reward in zip(groups, rewards, strict=True):
        members[group].append(reward)
    stats = {}
    for group, values in members.items():
        mean = sum(values) / len(values)
        # Population std: the batch *is* the group, not a sample of a larger one.
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        stats[group] = GroupStats(len(values), mean, std)
    return stats


def task_relative_advantages(groups: Sequence[Hashable], rewards: Sequence[float],
                             eps: float = 1e-6) -> list[float]:
    """A_i = (r_i - mean_g) / (std_g + eps) with g the (task type, role) group of sample i.

    A group whose rewards are all equal carries no signal: its advantages are exactly 0.
    """
    stats = group_stats(groups, rewards)
    advantages = []
    for group, reward in zip(groups, rewards, strict=True):
        s = stats[group]
        advantages.append(0.0 if s.std == 0.0 else (reward - s.mean) / (s.std + eps))
    return advantages
