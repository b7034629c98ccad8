"""How one AZR step's samples become optimizer steps and forward passes.

- **mini-batches**: the step's samples are shuffled and split into mini-batches of about
  `mini_batch_size` samples; each mini-batch is one optimizer step (as the reference trainer's
  `ppo_mini_batch_size`), repeated for `epochs` passes;
- **micro-batches**: a mini-batch is cut into forward/backward passes whose *padded* size
  stays under `micro_batch_tokens` (sequences sorted by length so padding is small), with at
  most `micro_batch` sequences each. Gradients accumulate across micro-batches.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def split_mini_batches(items: Sequence[T], mini_batch_size: int | None,
                       rng: random.Random) -> list[list[T]]:
    """Shuffle and split into `ceil(n / size)` mini-batches of near-equal size (None: one)."""
    if not items:
        return []
    order = list(items)
    rng.shuffle(order)
    if mini_batch_size is None or mini_batch_size >= len(order):
        return [order]
    count = math.ceil(len(order) / mini_batch_size)
    base, extra = divmod(len(order), count)
    batches, start = [], 0
    for k in range(count):
        size = base + (1 if k < extra else 0)
        batches.append(order[start:start + size])
        start += size
    return batches


def token_micro_batches(lengths: Sequence[int], max_tokens: int, max_sequences: int
                        ) -> list[list[int]]:
    """Indices grouped so that `len(group) * longest(group) <= max_tokens` (a sequence longer
    than the budget goes alone), at most `max_sequences` per group, longest first."""
    if max_tokens < 1 or max_sequences < 1:
        raise ValueError("micro-batch limits must be positive")
    order = sorted(range(len(lengths)), key=lambda k: lengths[k], reverse=True)
    groups: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        width = max(longest, lengths[index])
        if current and ((len(current) + 1) * width > max_tokens
                        or len(current) >= max_sequences):
            groups.append(current)
            current, width = [], lengths[index]
        current.append(index)
        longest = width
    if current:
        groups.append(current)
    return groups
