"""Domain values shared by the engine, the CLI, the queue and the API.

A *triple* is (program, input, output). `CheckItem` is a triple plus per-item knobs;
`CheckResult` is what the verifier says about it. What the user's code did is always a
`Verdict`, never an exception.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ENTRY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_META_DEPTH = 32


def _depth(value: Any) -> int:
    """Nesting depth of JSON-like data, without recursion."""
    deepest = 0
    todo = [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_META_DEPTH:
                return depth
            children = node.values() if isinstance(node, dict) else node
            todo.extend((child, depth + 1) for child in children)
    return deepest


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
                                        "task type...) kept in the audit log; nested at "
                                        f"most {MAX_META_DEPTH} levels.")

    @field_validator("meta")
    @classmethod
    def _shallow_meta(cls, meta: dict[str, Any] | None) -> dict[str, Any] | None:
        # Deeper values cannot be serialised back (pydantic stops at a few hundred levels).
        if meta is not None and _depth(meta) > MAX_META_DEPTH:
            raise ValueError(f"meta is nested more than {MAX_META_DEPTH} levels deep")
        return meta

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


# -- programs run as scripts: stdin/stdout test cases (docs/design.md §10) ----------------------


class CompareMode(StrEnum):
    """How a test case's stdout is compared with its expected output, byte for byte after the
    normalisation named (whitespace is the ASCII space, \\t, \\n, \\r, \\v and \\f; the expected
    output is encoded as UTF-8)."""

    EXACT = "exact"  # the bytes as written, nothing normalised
    LINES = "lines"  # per line (\\n; a \\r before it dropped): trailing whitespace ignored;
    #                  trailing empty lines ignored
    TOKENS = "tokens"  # the sequences of whitespace-separated tokens


class TestCase(BaseModel):
    """One run of a program: what it reads on stdin and what it must write on stdout."""

    __test__ = False  # not a pytest class
    model_config = ConfigDict(extra="forbid")

    input: str = Field("", description="The program's stdin (UTF-8).")
    output: str | None = Field(None, description="Expected stdout; null means only run it "
                               "(accepted when it exits 0; its stdout comes back).")


class TestcaseItem(BaseModel):
    """A program run as a script (`python program.py`) once per test case."""

    __test__ = False
    model_config = ConfigDict(extra="forbid")

    id: str | int | None = Field(None, description="Echoed back in the result.")
    program: str = Field(description="Python source of a whole program: it reads stdin and "
                         "writes stdout.")
    cases: list[TestCase] = Field(min_length=1, description="Runs, in order; each is a fresh "
                                  "process with its own stdin.")
    compare: CompareMode = Field(CompareMode.LINES, description="exact: byte for byte; lines "
                                 "(default): trailing whitespace of each line and trailing "
                                 "empty lines ignored; tokens: whitespace-separated tokens.")
    timeout_s: float | None = Field(None, gt=0, description="Per case (wall clock and CPU).")
    memory_mb: int | None = Field(None, ge=16, description="Per case.")
    meta: dict[str, Any] | None = Field(None, description="Opaque client data kept in the "
                                        f"audit log; nested at most {MAX_META_DEPTH} levels.")

    @field_validator("meta")
    @classmethod
    def _shallow_meta(cls, meta: dict[str, Any] | None) -> dict[str, Any] | None:
        if meta is not None and _depth(meta) > MAX_META_DEPTH:
            raise ValueError(f"meta is nested more than {MAX_META_DEPTH} levels deep")
        return meta


class ScriptLimits(BaseModel):
    """Resolved limits of one script run."""

    model_config = ConfigDict(frozen=True)

    timeout_s: float
    memory_mb: int
    output_limit_bytes: int = Field(description="Most bytes kept of each of stdout and "
                                    "stderr; more is output_limit.")


class CaseResult(BaseModel):
    """The verdict on one test case."""

    verdict: Verdict
    exit_code: int | None = Field(None, description="The program's exit status, when it "
                                  "exited by itself.")
    stdout: str | None = Field(None, description="The start of what it wrote to stdout "
                               "(UTF-8, invalid bytes replaced), at most "
                               "`testcase_excerpt_chars` characters.")
    stdout_bytes: int | None = Field(None, description="How many bytes it wrote to stdout.")
    stderr: str | None = Field(None, description="The end of what it wrote to stderr (where a "
                               "traceback ends), at most `testcase_excerpt_chars` characters.")
    error_type: str | None = Field(None, description="The signal that killed it (SIGSEGV...), "
                                   "or MemoryError.")
    error: str | None = Field(None, description="Human-readable detail.")
    duration_ms: float = 0.0
    cached: bool = False


class TestcaseResult(BaseModel):
    """The verdict on a program and on each of its test cases."""

    __test__ = False
    id: str | int | None = None
    verdict: Verdict = Field(description="accepted when every case is; else the verdict of "
                             "the first case that failed on its own account; sandbox_error "
                             "when a case could not be judged and none failed.")
    passed: int = Field(description="Cases accepted.")
    total: int
    cases: list[CaseResult] = Field(default_factory=list)
    error: str | None = None
    violations: list[Violation] = Field(default_factory=list)
    duration_ms: float = Field(0.0, description="Sandbox time of every case.")
    cached: bool = Field(False, description="Every case came from the cache.")
    limits: ScriptLimits | None = Field(None, description="Set when the item asked for its "
                                        "own timeout_s or memory_mb: the values applied.")


class RunResult(BaseModel):
    """One run of a program as a script (what POST /run_code reports in SandboxFusion's
    shape): `accepted` means it exited 0; syntax_error and unsafe mean it never ran."""

    verdict: Verdict
    exit_code: int | None = None
    stdout: str = Field("", description="UTF-8, invalid bytes replaced.")
    stderr: str = ""
    error_type: str | None = Field(None, description="The signal that killed it, or "
                                   "MemoryError.")
    error: str | None = None
    violations: list[Violation] = Field(default_factory=list)
    duration_ms: float = 0.0
    limits: ScriptLimits | None = Field(None, description="The limits it ran under (absent "
                                        "when the verifier failed before it ran).")

    @property
    def cached(self) -> bool:
        """Runs are never answered from the cache (metrics read this as for other results)."""
        return False


class ScriptRunItem(BaseModel):
    """One /run_code run as a distributed chunk carries it."""

    model_config = ConfigDict(extra="forbid")

    program: str
    stdin: str = ""
    timeout_s: float | None = None
    memory_mb: int | None = None


# -- asynchronous jobs (/v1/jobs): the job store of either mode answers with these --------


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


class JobProgress(BaseModel):
    done: int
    total: int


class JobStatusResponse(BaseModel):
    job_id: str
    status: JobState
    progress: JobProgress
    results: list[CheckResult] | None = Field(None, description="Set once the job is "
                                              "finished or failed (failed chunks answer "
                                              "sandbox_error).")
    error: str | None = None
