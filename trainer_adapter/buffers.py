"""Task buffers, one per task type, seeded with the identity triplet.

The proposer is conditioned on references sampled from these buffers and the solver is
trained on tasks sampled from them; every valid proposal is added (AZR keeps all of them).

Solver batches are filled *recent first* by default, as the reference trainer does
(`pred_data_mix_strategy: max_new`): the tasks added in the last `window` steps are taken
first (without replacement), the rest of the batch is drawn uniformly from the whole buffer.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from typing import Generic, TypeVar

from azr_verify.client import IOPair, TaskType

from .tasks import InductionTask, Task, Triple

T = TypeVar("T", Triple, InductionTask)


class TaskBuffer(Generic[T]):
    """An insertion-ordered set of tasks, each with the step that added it."""

    def __init__(self, tasks: Iterable[T] = (), max_size: int | None = None) -> None:
        self._tasks: list[T] = []
        self._steps: list[int] = []
        self._seen: set[T] = set()
        self.max_size = max_size
        for task in tasks:
            self.add(task)

    def add(self, task: T, step: int = 0) -> bool:
        """Add unless already present (duplicates would skew sampling); True if added."""
        if task in self._seen:
            return False
        self._tasks.append(task)
        self._steps.append(step)
        self._seen.add(task)
        if self.max_size is not None and len(self._tasks) > self.max_size:
            self._seen.discard(self._tasks.pop(0))
            self._steps.pop(0)
        return True

    def recent(self, since_step: int) -> list[T]:
        """Tasks added at `since_step` or later."""
        return [t for t, s in zip(self._tasks, self._steps, strict=True) if s >= since_step]

    def recent_first(self, k: int, since_step: int, rng: random.Random) -> list[T]:
        """Up to k recent tasks (no repeats), then uniform draws from the whole buffer."""
        recent = self.recent(since_step)
        chosen = rng.sample(recent, min(k, len(recent)))
        return chosen + self.choose(k - len(chosen), rng)

    def steps(self) -> list[int]:
        return list(self._steps)

    def sample(self, k: int, rng: random.Random) -> list[T]:
        """k distinct tasks when the buffer has them, else all of them."""
        if k >= len(self._tasks):
            return list(self._tasks)
        return rng.sample(self._tasks, k)

    def choose(self, k: int, rng: random.Random) -> list[T]:
        """k tasks with replacement (a small buffer still fills a solver batch)."""
        return [rng.choice(self._tasks) for _ in range(k)] if self._tasks else []

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[T]:
        return iter(self._tasks)

    def to_list(self) -> list[T]:
        return list(self._tasks)


class Buffers:
    """The three task buffers of an AZR run."""

    def __init__(self, max_size: int | None = None) -> None:
        self.deduction: TaskBuffer[Triple] = TaskBuffer(max_size=max_size)
        self.abduction: TaskBuffer[Triple] = TaskBuffer(max_size=max_size)
        self.induction: TaskBuffer[InductionTask] = TaskBuffer(max_size=max_size)

    @classmethod
    def seeded(cls, seed: Triple, max_size: int | None = None) -> Buffers:
        """Every buffer starts from the seed triplet (the identity function on
        'Hello World' in the paper); the induction seed shows and hides that same pair."""
        buffers = cls(max_size)
        buffers.deduction.add(seed)
        buffers.abduction.add(seed)
        pair = IOPair(seed.input, seed.output)
        buffers.induction.add(InductionTask(seed.program, "", (pair,), (pair,)))
        return buffers

    def add(self, task_type: TaskType, task: Task, step: int = 0) -> bool:
        if task_type is TaskType.INDUCTION:
            assert isinstance(task, InductionTask)
            return self.induction.add(task, step)
        assert isinstance(task, Triple)
        return self.triples(task_type).add(task, step)

    def triples(self, task_type: TaskType) -> TaskBuffer[Triple]:
        if task_type is TaskType.DEDUCTION:
            return self.deduction
        if task_type is TaskType.ABDUCTION:
            return self.abduction
        raise ValueError(f"{task_type} has no triple buffer")

    def programs(self) -> list[Triple]:
        """Programs an induction proposer may start from: the deduction and abduction
        tasks."""
        return self.deduction.to_list() + self.abduction.to_list()

    def buffer(self, task_type: TaskType) -> TaskBuffer[Triple] | TaskBuffer[InductionTask]:
        return self.induction if task_type is TaskType.INDUCTION else self.triples(task_type)

    def solver_tasks(self, task_type: TaskType, k: int, rng: random.Random, *,
                     recent_since: int | None = None) -> Sequence[Task]:
        """k tasks for the solver: recent first when `recent_since` is a step, else
        uniform with replacement."""
        buffer = self.buffer(task_type)
        if recent_since is None:
            return buffer.choose(k, rng)
        return buffer.recent_first(k, recent_since, rng)

    def sizes(self) -> dict[str, int]:
        return {TaskType.DEDUCTION.value: len(self.deduction),
                TaskType.ABDUCTION.value: len(self.abduction),
                TaskType.INDUCTION.value: len(self.induction)}
