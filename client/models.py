"""Wire models of the azr-verify HTTP API, mirrored on the client side.

The client is installable on its own (httpx + pydantic), so it never imports the service's
models; these mirror them field for field. Requests are strict (`extra="forbid"`, like the
server) so a typo fails here rather than as a 422; responses ignore unknown fields so an
older client keeps working against a newer server.
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

    @property
    def is_infrastructure_failure(self) -> bool:
        """The verifier failed, not the program: retryable, never a model failure."""
        return self is Verdict.SANDBOX_ERROR


class Violation(BaseModel):
    """One reason the static policy rejected a program."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    rule: str
    name: str
    line: int


class CheckItem(BaseModel):
    """One triple to check, with optional per-item limits (capped by the server).

    Without a program the item is a comparison: `input` holds a known literal (a gold output),
    `output` the literal to compare it with, and the service decides without running anything.
    """

    model_config = ConfigDict(extra="forbid")

    id: str | int | None = Field(default=None, description="Echoed back in the result.")
    program: str | None = Field(default=None, description="Python source defining the entry "
                                "function; omitted: a comparison of `input` with `output`.")
    input: str = Field(description="Literal call arguments, e.g. \"[1, 2], 'a', k=3\"; for a "
                       "comparison, one literal value.")
    output: str | None = Field(default=None, description="Expected repr of the return value; "
                               "null means compute it (required for a comparison).")
    entry: str = Field(default="f", pattern=ENTRY_PATTERN, max_length=128)
    determinism_runs: int | None = Field(default=None, ge=1, le=16)
    timeout_s: float | None = Field(default=None, gt=0)
    memory_mb: int | None = Field(default=None, ge=16)
    meta: dict[str, Any] | None = Field(default=None, description="Opaque client data (step, "
                                        "role, task type...) kept in the audit log.")

    @model_validator(mode="after")
    def _comparison_needs_output(self) -> CheckItem:
        if self.program is None and self.output is None:
            raise ValueError("an item without a program is a comparison and needs an output")
        return self


class AppliedLimits(BaseModel):
    """The limits an item ran under (the server's caps lower what a request asks for)."""

    model_config = ConfigDict(extra="ignore")

    timeout_s: float
    memory_mb: int
    output_limit_chars: int
    determinism_runs: int


class CheckResult(BaseModel):
    """The verdict on one triple."""

    model_config = ConfigDict(extra="ignore")

    id: str | int | None = None
    verdict: Verdict
    output: str | None = None
    error_type: str | None = None
    error: str | None = None
    violations: list[Violation] = Field(default_factory=list)
    duration_ms: float = 0.0
    cached: bool = False
    limits: AppliedLimits | None = Field(default=None, description="Set when the item asked "
                                         "for its own limits: the values applied.")

    @property
    def accepted(self) -> bool:
        return self.verdict is Verdict.ACCEPTED


class CompareMode(StrEnum):
    """How a test case's stdout is compared with its expected output (docs/design.md §10):
    `exact` bytes; `lines` (the default): each line without trailing whitespace, trailing
    empty lines ignored; `tokens`: whitespace-separated tokens. Whitespace is ASCII."""

    EXACT = "exact"
    LINES = "lines"
    TOKENS = "tokens"


class TestCase(BaseModel):
    """One run of a program: its stdin, and the stdout it must write (None: just run it)."""

    __test__ = False
    model_config = ConfigDict(extra="forbid")

    input: str = ""
    output: str | None = None


class TestcaseItem(BaseModel):
    """A whole program (`python program.py`) and its stdin/stdout test cases."""

    __test__ = False
    model_config = ConfigDict(extra="forbid")

    id: str | int | None = Field(default=None, description="Echoed back in the result.")
    program: str
    cases: list[TestCase] = Field(min_length=1)
    compare: CompareMode = CompareMode.LINES
    timeout_s: float | None = Field(default=None, gt=0, description="Per case.")
    memory_mb: int | None = Field(default=None, ge=16, description="Per case.")
    meta: dict[str, Any] | None = Field(default=None, description="Opaque client data kept "
                                        "in the audit log.")


class AppliedScriptLimits(BaseModel):
    """The limits a program's cases ran under."""

    model_config = ConfigDict(extra="ignore")

    timeout_s: float
    memory_mb: int
    output_limit_bytes: int


class CaseResult(BaseModel):
    """The verdict on one test case: the start of its stdout, the end of its stderr."""

    model_config = ConfigDict(extra="ignore")

    verdict: Verdict
    exit_code: int | None = None
    stdout: str | None = None
    stdout_bytes: int | None = None
    stderr: str | None = None
    error_type: str | None = None
    error: str | None = None
    duration_ms: float = 0.0
    cached: bool = False

    @property
    def accepted(self) -> bool:
        return self.verdict is Verdict.ACCEPTED


class TestcaseResult(BaseModel):
    """The verdict on a program (accepted when every case is) and on each case."""

    __test__ = False
    model_config = ConfigDict(extra="ignore")

    id: str | int | None = None
    verdict: Verdict
    passed: int = 0
    total: int = 0
    cases: list[CaseResult] = Field(default_factory=list)
    error: str | None = None
    violations: list[Violation] = Field(default_factory=list)
    duration_ms: float = 0.0
    cached: bool = False
    limits: AppliedScriptLimits | None = None

    @property
    def accepted(self) -> bool:
        return self.verdict is Verdict.ACCEPTED

    @property
    def pass_rate(self) -> float:
        return self.passed / self.total if self.total else 0.0


class JobState(StrEnum):
    """Lifecycle of an asynchronous job."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.FINISHED, JobState.FAILED)


class JobProgress(BaseModel):
    model_config = ConfigDict(extra="ignore")

    done: int = 0
    total: int = 0


class JobStatus(BaseModel):
    """`GET /v1/jobs/{id}`; `results` is set once the job has finished."""

    model_config = ConfigDict(extra="ignore")

    job_id: str
    status: JobState
    progress: JobProgress = Field(default_factory=JobProgress)
    results: list[CheckResult] | None = None
    error: str | dict[str, Any] | None = None


class AuditRecord(BaseModel):
    """One rejected item from `GET /v1/audit`.

    Unknown fields are kept (`extra="allow"`): the audit log is for humans, and a column a
    newer service adds should reach them.
    """

    model_config = ConfigDict(extra="allow")

    id: str | None = Field(default=None, description="The log's id of the record (a page "
                           "cursor: `audit(before=...)`, `audit_page(cursor=...)`).")
    time: float = Field(description="UNIX time the item was checked.")
    program_hash: str = Field(description="sha256 of the whole program text.")
    program: str = Field(description="The program, or an excerpt (see `truncated`).")
    program_chars: int | None = Field(default=None, description="Length of the whole program.")
    input: str
    input_hash: str | None = None
    input_chars: int | None = None
    output: str | None = Field(default=None, description="The expected output sent, if any.")
    output_hash: str | None = None
    output_chars: int | None = None
    truncated: list[str] = Field(default_factory=list, description="Fields kept as excerpts "
                                 "(or dropped, for meta) because they were over the limit.")
    entry: str = "f"
    policy: str | None = None
    verdict: Verdict
    violations: list[Violation] = Field(default_factory=list)
    error_type: str | None = None
    error: str | None = None
    api_key_name: str | None = None
    item_id: str | int | None = None
    meta: dict[str, Any] | None = None
    kind: str | None = Field(default=None, description="Absent for a triple; `testcase` or "
                             "`run_code` for programs run as scripts.")


class ServiceInfo(BaseModel):
    """`GET /v1/info`: version, mode, backend, policies and limits of the service."""

    model_config = ConfigDict(extra="allow")

    version: str
    mode: str | None = Field(default=None, description="embedded or distributed.")
    backend: str | None = Field(default=None, description="Sandbox backend.")
    policies: list[str] = Field(default_factory=list)
    limits: dict[str, Any] = Field(default_factory=dict)
    executors: dict[str, Any] = Field(default_factory=dict)


# Response envelopes (internal to the client, but typed so a malformed body is caught once).


class CheckResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    results: list[CheckResult]


class TestcaseResponse(BaseModel):
    __test__ = False
    model_config = ConfigDict(extra="ignore")

    results: list[TestcaseResult]


class SubmitResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    job_id: str
    status: JobState


class AuditResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    records: list[AuditRecord]
    next_cursor: str | None = None


class AuditPage(BaseModel):
    """One page of `GET /v1/audit`; pass `next_cursor` back for the next one (None: done)."""

    records: list[AuditRecord]
    next_cursor: str | None = None


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorEnvelope(BaseModel):
    model_config = ConfigDict(extra="ignore")

    error: ErrorBody
