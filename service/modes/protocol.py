"""The seam between the HTTP routes and where items run: the execution mode, in-process
(embedded) or on RQ workers (distributed) (docs/design.md §5).

Both modes answer the same calls; the routes never know which one they talk to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from azr_verify.service.metrics import TelemetrySnapshot
from azr_verify.service.models import (
    CheckItem,
    CheckResult,
    JobStatusResponse,
    PolicyName,
    RunResult,
    TestcaseItem,
    TestcaseResult,
)
from azr_verify.service.stores.audit.query import AuditStore


class ExecutionMode(Protocol):
    mode: str

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def check(self, items: Sequence[CheckItem], policy: PolicyName,
                    key_name: str | None) -> list[CheckResult]:
        """Raises OverloadedError (429), QueueUnavailableError (503), QueueTimeoutError."""
        ...

    async def check_testcases(self, items: Sequence[TestcaseItem], policy: PolicyName,
                              key_name: str | None) -> list[TestcaseResult]:
        """Test-case programs (docs/design.md §10); raises as `check` does."""
        ...

    async def run_code(self, program: str, stdin: str, timeout_s: float | None,
                       memory_mb: int | None, policy: PolicyName,
                       key_name: str | None) -> RunResult:
        """One run of a program as a script (/run_code); raises as `check` does."""
        ...

    async def submit(self, items: Sequence[CheckItem], policy: PolicyName,
                     key_name: str | None) -> str:
        """Accepts a job; returns its id."""
        ...

    async def job(self, job_id: str, key_name: str | None) -> JobStatusResponse:
        """Raises JobNotFoundError, also for another API key's job."""
        ...

    @property
    def audit_store(self) -> AuditStore:
        """The audit log (blocking; the routes read it through service/api/auditing.py)."""
        ...

    async def readiness(self) -> dict[str, Any]:
        """Named checks, each {"ok": bool, ...}; ready when all are ok."""
        ...

    async def executors(self) -> dict[str, Any]:
        """What runs items (for /v1/info)."""
        ...

    def snapshot(self) -> TelemetrySnapshot:
        """The executors' telemetry (metrics.TelemetrySource); blocking, call off the loop."""
        ...
