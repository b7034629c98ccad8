"""Task values the loop moves around: buffered tasks and the two roles."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from azr_verify.client import IOPair, TaskType


class Role(StrEnum):
    PROPOSE = "propose"
    SOLVE = "solve"


@dataclass(frozen=True)
class Triple:
    """A validated deduction/abduction task: `output` is the service's gold output."""

    program: str
    input: str
    output: str


@dataclass(frozen=True)
class InductionTask:
    """A validated induction task: the solver sees `visible` and `message`, and its program
    is checked on `hidden`."""

    program: str
    message: str
    visible: tuple[IOPair, ...]
    hidden: tuple[IOPair, ...]


Task = Triple | InductionTask


def group_key(task_type: TaskType, role: Role) -> str:
    """Name of one of the six (task type, role) groups, as used in metrics."""
    return f"{task_type.value}/{role.value}"
