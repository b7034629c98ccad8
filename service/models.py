"""Domain values shared by the engine, the CLI, the queue and the API.

A *triple* is (program, input, output). `CheckItem` is a triple plus per-item knobs;
`CheckResult` is what the verifier says about it. What the user's code did is always a
`Verdict`, never an exception.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

ENTRY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class Verdict(StrEnum):
    """The closed set of outcomes of checking one triple (docs/design.md §2)."""

    ACCEPTED = "accepted"
    WRONG_OUTPUT = "wrong_output"
    RUNTIME_ERROR = "runtime_error"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    NONDETERMINISTIC = "nondeterministic"
    NOT_LITERAL = "not_literal"
    UNSAFE = "unsafe"
    SYNTAX_ERROR = "syntax_error"
    SANDBOX_ERROR = "sandbox_error"

    @property
    def is_rejection(self) -> bool:
        """Rejected proposals are audited; accepted and wrong answers are ordinary traffic."""
        return self not in (Verdict.ACCEPTED, Verdict.WRONG_OUTPUT)


class PolicyName(StrEnum):
    """Named static safety policies."""

    AZR = "azr"
    PERMISSIVE = "permissive"


class Violation(BaseModel):
    """One reason the static policy rejected a program."""

    model_config = ConfigDict(frozen=True)

    rule: str = Field(description="Which rule fired (docs/design.md §6): import_denied, "
                      "module_member, computed_attribute, dunder_attribute, ...")
    name: str = Field(description="The module, builtin or attribute that was used.")
    line: int = Field(description="1-based source line.")


class CheckItem(BaseModel):
    """One triple to check, with optional per-item limits (capped by the server).

    Without a program the item is a *comparison* (docs/design.md §2): `input` is one literal
    value known from an earlier check (a gold output) and `output` the literal to compare it
    with; both are parsed and compared on the trusted side and nothing runs.
    """

    model_config = ConfigDict(extra="forbid")

    id: str | int | None = Field(None, description="Echoed back in the result.")
    program: str | None = Field(None, description="Python source defining the entry function. "
                                "Omitted: a comparison of `input` (one literal value, e.g. a "
                                "gold output) with `output`, decided without running anything "
                                "(an AZR deduction answer).")
    input: str = Field(description="Literal call arguments, e.g. \"[1, 2], 'a', k=3\"; for a "
                       "comparison, one literal value.")
    output: str | None = Field(None, description="Expected repr of the return value; null "
                               "means compute it (required for a comparison).")
    entry: str = Field("f", pattern=ENTRY_PATTERN, max_length=128)
    determinism_runs: int | None = Field(None, ge=1, le=16)
    timeout_s: float | None = Field(None, gt=0)
    memory_mb: int | None = Field(None, ge=16)
    meta: dict[str, Any] | None = Field(None, description="Opaque client data (step, role, "
                                        "task type...) kept in the audit log.")

    @model_validator(mode="after")
    def _comparison_needs_output(self) -> CheckItem:
        if self.program is None and self.output is None:
            raise ValueError("an item without a program is a comparison and needs an output")
        return self


class Limits(BaseModel):
    """Resolved limits for one execution."""

    model_config = ConfigDict(frozen=True)

    timeout_s: float
    memory_mb: int
    output_limit_chars: int
    determinism_runs: int


class CheckResult(BaseModel):
    """The verdict on one triple."""

    id: str | int | None = None
    verdict: Verdict
    output: str | None = Field(None, description="repr of the value the program returned.")
    error_type: str | None = Field(None, description="Exception class name, for runtime_error.")
    error: str | None = Field(None, description="Human-readable detail.")
    violations: list[Violation] = Field(default_factory=list)
    duration_ms: float = Field(0.0, description="Sandbox time spent on this item.")
    cached: bool = False
    limits: Limits | None = Field(None, description="The limits the item ran under, set "
                                  "when it asked for its own timeout_s, memory_mb or "
                                  "determinism_runs: a request above the server's caps is "
                                  "lowered to them, and this shows the values applied.")
