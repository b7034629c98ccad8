"""Client of the azr-verify service (depends only on httpx and pydantic).

    from azr_verify.client import Client

    with Client("http://127.0.0.1:8000") as client:
        [result] = client.check([{"program": "def f(a): return a", "input": "1"}])
        assert result.verdict is Verdict.ACCEPTED and result.output == "1"

`client.check_testcases(...)` / `client.judge(program, [(stdin, expected), ...])` judge
whole programs on stdin/stdout test cases (docs/design.md §10).

`Client()` without arguments reads `AZR_VERIFY_URL` and `AZR_VERIFY_API_KEY`. `AsyncClient`
has the same methods as coroutines. Large batches are split into chunks and reassembled in
order; 429/503/connection failures are retried with backoff (honouring Retry-After). Every
error is an `AzrClientError`, and one about a request names its method and URL.
"""

from ._async import AsyncClient
from ._sync import Client
from .answers import ParsedResponse, extract_solver_answer, fenced_blocks, split_response
from .azr import (
    ANSWER_DETERMINISM_RUNS,
    AnswerOutcome,
    AnswerSlot,
    AnswerState,
    CheckBatch,
    IOPair,
    IOPairLike,
    ProposalOutcome,
    ProposalSlot,
    TaskType,
    fold_answer,
    fold_proposal,
)
from .config import ClientConfig
from .errors import (
    APIError,
    AuthError,
    AzrClientError,
    BadRequestError,
    InvalidArgumentError,
    InvalidItemError,
    JobError,
    JobFailedError,
    JobTimeoutError,
    NotFoundError,
    PayloadTooLargeError,
    ProtocolError,
    RateLimitedError,
    RequestTimeoutError,
    SandboxFailure,
    ServerError,
    ServiceUnavailableError,
    TransportError,
)
from .models import (
    AppliedLimits,
    AppliedScriptLimits,
    AuditPage,
    AuditRecord,
    CaseResult,
    CheckItem,
    CheckResult,
    CompareMode,
    JobProgress,
    JobState,
    JobStatus,
    ServiceInfo,
    TestCase,
    TestcaseItem,
    TestcaseResult,
    Verdict,
    Violation,
)

__all__ = [
    "ANSWER_DETERMINISM_RUNS",
    "APIError",
    "AnswerOutcome",
    "AnswerSlot",
    "AnswerState",
    "AppliedLimits",
    "AppliedScriptLimits",
    "AsyncClient",
    "AuditPage",
    "AuditRecord",
    "AuthError",
    "AzrClientError",
    "BadRequestError",
    "CaseResult",
    "CheckBatch",
    "CheckItem",
    "CheckResult",
    "Client",
    "ClientConfig",
    "CompareMode",
    "IOPair",
    "IOPairLike",
    "InvalidArgumentError",
    "InvalidItemError",
    "JobError",
    "JobFailedError",
    "JobProgress",
    "JobState",
    "JobStatus",
    "JobTimeoutError",
    "NotFoundError",
    "ParsedResponse",
    "PayloadTooLargeError",
    "ProposalOutcome",
    "ProposalSlot",
    "ProtocolError",
    "RateLimitedError",
    "RequestTimeoutError",
    "SandboxFailure",
    "ServerError",
    "ServiceInfo",
    "ServiceUnavailableError",
    "TaskType",
    "TestCase",
    "TestcaseItem",
    "TestcaseResult",
    "TransportError",
    "Verdict",
    "Violation",
    "extract_solver_answer",
    "fenced_blocks",
    "fold_answer",
    "fold_proposal",
    "split_response",
]
