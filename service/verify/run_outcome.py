"""What one execution did, as the trusted side decided it: the value the verdict fold reads.

`sandbox/outcome.py` makes these from a child's report and the zygote's observations (the only
code that reads what a child wrote); `verify/determinism.py` folds an item's runs into one
verdict, and `testcases.py` judges a script's run. Nothing here reads bytes or runs anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# The error type of a run whose report could not be validated: its program's runtime_error.
MALFORMED = "MalformedReport"


class OutcomeKind(StrEnum):
    """What one execution did, as decided on the trusted side (`sandbox/outcome.py: decode`)."""

    VALUE = "value"  # returned a literal value; `repr` holds it
    ERROR = "error"  # raised; `error_type` holds the class name
    TIMEOUT = "timeout"  # wall clock (the zygote's) or CPU limit (the kernel's accounting)
    MEMORY = "memory"  # ran out of memory, with the kernel's peak-memory figure as evidence
    OUTPUT_LIMIT = "output_limit"  # repr larger than the cap, by the trusted side's own count
    NOT_LITERAL = "not_literal"  # returned something that is not a literal
    NO_ENTRY = "no_entry"  # the entry function is not defined after running the program
    CRASH = "crash"  # died from a signal, exited without a report, or sent a malformed one
    SANDBOX_ERROR = "sandbox_error"  # infrastructure: the zygote died or lost the request
    EXITED = "exited"  # a script ended by itself; `exit_code` is its status



@dataclass(frozen=True, slots=True)
class ExecOutcome:
    """What one execution produced, decided on the trusted side."""

    kind: OutcomeKind
    repr: str | None = None
    error_type: str | None = None
    error: str | None = None
    duration_ms: float = 0.0
    # Scripts (`Mode.SCRIPT`): what they wrote, and their exit status when they exited.
    stdout: bytes | None = None
    stderr: bytes | None = None
    exit_code: int | None = None

    @classmethod
    def sandbox_failure(cls, message: str) -> ExecOutcome:
        return cls(kind=OutcomeKind.SANDBOX_ERROR, error=message)
