"""`Client`: the blocking driver of the sans-IO core."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from . import _azr_flows
from ._core import (
    ApiRequest,
    ApiResponse,
    CaseLike,
    Concurrent,
    Core,
    Flow,
    ItemLike,
    Sleep,
    TestcaseItemLike,
    testcase_item,
)
from ._transport import base_url_of, timeout_of, url_of, wrap_httpx_error
from .azr import ANSWER_DETERMINISM_RUNS, IOPairLike, ProposalOutcome
from .config import ClientConfig
from .errors import AzrClientError
from .models import (
    AuditPage,
    AuditRecord,
    CheckResult,
    CompareMode,
    JobStatus,
    ServiceInfo,
    TestcaseResult,
    Verdict,
)

T = TypeVar("T")


class Client:
    """Blocking client of the azr-verify service.

    >>> with Client("http://127.0.0.1:8000") as client:
    ...     client.check([{"program": "def f(a): return a", "input": "1", "output": "1"}])
    """

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None,
                 config: ClientConfig | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        # Like the CLI: AZR_VERIFY_URL / AZR_VERIFY_API_KEY unless a config is given.
        config = config or ClientConfig.from_env()
        updates = {k: v for k, v in (("base_url", base_url), ("api_key", api_key)) if v}
        self.config = config.model_copy(update=updates)
        self._core = Core(self.config)
        self._http = httpx.Client(base_url=base_url_of(self.config),
                                  timeout=timeout_of(self.config), transport=transport)

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- driver ----------------------------------------------------------------------

    def _send(self, req: ApiRequest) -> ApiResponse:
        try:
            resp = self._http.request(req.method, req.path, params=req.params,
                                      content=req.body, headers=req.headers)
        except httpx.HTTPError as exc:
            raise wrap_httpx_error(exc, req.method, url_of(self.config, req.path)) from exc
        return ApiResponse(resp.status_code, {k.lower(): v for k, v in resp.headers.items()},
                           resp.content, f"{req.method} {resp.request.url}")

    def _drive(self, flow: Flow[T]) -> T:
        try:
            effect = next(flow)
            while True:
                try:
                    outcome = self._perform(effect)
                except AzrClientError as exc:
                    effect = flow.throw(exc)
                else:
                    effect = flow.send(outcome)
        except StopIteration as stop:
            result: T = stop.value
            return result

    def _perform(self, effect: ApiRequest | Sleep | Concurrent) -> Any:
        if isinstance(effect, ApiRequest):
            return self._send(effect)
        if isinstance(effect, Sleep):
            time.sleep(effect.seconds)
            return None
        # Blocking driver: sub-flows run one after another, results in order.
        return [self._drive(sub) for sub in effect.flows]

    # -- API -------------------------------------------------------------------------

    def check(self, items: Iterable[ItemLike], policy: str | None = None
              ) -> list[CheckResult]:
        """Check triples; results come back in order whatever the batch size."""
        return self._drive(self._core.check(items, policy))

    def check_testcases(self, items: Iterable[TestcaseItemLike], policy: str | None = None
                        ) -> list[TestcaseResult]:
        """Judge programs on stdin/stdout test cases; results come back in order. `policy`:
        the service's default (permissive) unless given."""
        return self._drive(self._core.check_testcases(items, policy))

    def judge(self, program: str, cases: Sequence[CaseLike], *,
              compare: CompareMode | str = CompareMode.LINES, timeout_s: float | None = None,
              memory_mb: int | None = None, policy: str | None = None) -> TestcaseResult:
        """One program on its test cases: pairs (stdin, expected stdout) or mappings."""
        item = testcase_item(program, cases, compare, timeout_s, memory_mb)
        [result] = self._drive(self._core.check_testcases([item], policy))
        return result

    def submit(self, items: Iterable[ItemLike], policy: str | None = None) -> str:
        """Queue a job (one request, not chunked); returns its id."""
        return self._drive(self._core.submit(items, policy))

    def job(self, job_id: str) -> JobStatus:
        return self._drive(self._core.job(job_id))

    def wait(self, job_id: str, timeout: float | None = None,
             poll_interval: float | None = None) -> JobStatus:
        """Poll until finished; raises JobFailedError or JobTimeoutError."""
        return self._drive(self._core.wait(job_id, timeout, poll_interval))

    def audit(self, verdict: Verdict | str | None = None,
              since: datetime | float | None = None,
              limit: int | None = None, *, until: datetime | float | None = None,
              rule: str | None = None, text: str | None = None,
              before: str | None = None) -> list[AuditRecord]:
        """Rejected items, newest first: the filters of the console (verdict, time range,
        policy rule, text search); `before` is a record's id to page past."""
        return self._drive(self._core.audit(verdict, since, limit, until=until, rule=rule,
                                                text=text, before=before))

    def audit_page(self, verdict: Verdict | str | None = None,
                   since: datetime | float | None = None, limit: int = 1000,
                   oldest_first: bool = False, cursor: str | None = None, *,
                   until: datetime | float | None = None, rule: str | None = None,
                   text: str | None = None) -> AuditPage:
        """One page of audit records, newest first unless `oldest_first`; pass the page's
        `next_cursor` as `cursor` for the next one."""
        return self._drive(self._core.audit_page(verdict, since, limit, oldest_first, cursor,
                                                 until=until, rule=rule, text=text))

    def iter_audit(self, verdict: Verdict | str | None = None,
                   since: datetime | float | None = None,
                   page_size: int = 1000, *, until: datetime | float | None = None,
                   rule: str | None = None, text: str | None = None) -> Iterator[AuditRecord]:
        """Every audit record this key may read, oldest first, one page at a time."""
        cursor: str | None = None
        while True:
            page = self.audit_page(verdict, since, page_size, oldest_first=True, cursor=cursor,
                                   until=until, rule=rule, text=text)
            yield from page.records
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def info(self) -> ServiceInfo:
        return self._drive(self._core.info())

    # -- AZR helpers (docs/design.md §2) -----------------------------------------------

    def validate_proposal(self, program: str, input: str, policy: str | None = None, *,
                          determinism_runs: int | None = None) -> ProposalOutcome:
        """Deduction/abduction proposal (p, i): gold output, or the rejection reason
        (determinism runs: the service's default unless given)."""
        return self._drive(_azr_flows.validate_proposal(
            self._core, program, [input], None, policy, determinism_runs))

    def validate_induction_proposal(self, program: str, inputs: Sequence[str], *,
                                    min_valid: int | None = None,
                                    policy: str | None = None,
                                    determinism_runs: int | None = None
                                    ) -> ProposalOutcome:
        """Induction proposal (p, i1..iN): gold output per input."""
        return self._drive(_azr_flows.validate_proposal(
            self._core, program, inputs, min_valid, policy, determinism_runs))

    def check_deduction(self, program: str, input: str, predicted_output: str,
                        policy: str | None = None, *, gold_output: str | None = None,
                        determinism_runs: int | None = ANSWER_DETERMINISM_RUNS) -> bool:
        """Deduction answer o' for (p, i): True when f(i) == o'. With the task's
        `gold_output` the service compares the two values and runs nothing."""
        return self._drive(_azr_flows.check_deduction(
            self._core, program, input, predicted_output, policy, gold_output,
            determinism_runs))

    def check_abduction(self, program: str, predicted_input: str, gold_output: str,
                        policy: str | None = None, *,
                        determinism_runs: int | None = ANSWER_DETERMINISM_RUNS) -> bool:
        """Abduction answer i' for (p, o*): True when f(i') == o*."""
        return self._drive(_azr_flows.check_abduction(
            self._core, program, predicted_input, gold_output, policy, determinism_runs))

    def check_induction(self, predicted_program: str, hidden: Sequence[IOPairLike],
                        policy: str | None = None, *,
                        determinism_runs: int | None = ANSWER_DETERMINISM_RUNS) -> bool:
        """Induction answer p': True when p'(ik) == ok for every hidden pair."""
        return self._drive(_azr_flows.check_induction(
            self._core, predicted_program, hidden, policy, determinism_runs))
