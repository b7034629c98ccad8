"""`AsyncClient`: the asyncio driver of the sans-IO core (same flows as `Client`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
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


class AsyncClient:
    """Asyncio client of the azr-verify service; chunks of a large batch run concurrently
    (at most `config.max_concurrency` requests in flight)."""

    def __init__(self, base_url: str | None = None, *, api_key: str | None = None,
                 config: ClientConfig | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        # Like the CLI: AZR_VERIFY_URL / AZR_VERIFY_API_KEY unless a config is given.
        config = config or ClientConfig.from_env()
        updates = {k: v for k, v in (("base_url", base_url), ("api_key", api_key)) if v}
        self.config = config.model_copy(update=updates)
        self._core = Core(self.config)
        self._http = httpx.AsyncClient(base_url=base_url_of(self.config),
                                       timeout=timeout_of(self.config), transport=transport)
        # Created lazily: a semaphore binds to the running loop on first use.
        self._slots: asyncio.Semaphore | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    # -- driver ----------------------------------------------------------------------

    async def _send(self, req: ApiRequest) -> ApiResponse:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.config.max_concurrency)
        async with self._slots:
            try:
                resp = await self._http.request(req.method, req.path, params=req.params,
                                                content=req.body, headers=req.headers)
            except httpx.HTTPError as exc:
                raise wrap_httpx_error(exc, req.method, url_of(self.config, req.path)) from exc
        return ApiResponse(resp.status_code, {k.lower(): v for k, v in resp.headers.items()},
                           resp.content, f"{req.method} {resp.request.url}")

    async def _drive(self, flow: Flow[T]) -> T:
        try:
            effect = next(flow)
            while True:
                try:
                    outcome = await self._perform(effect)
                except AzrClientError as exc:
                    effect = flow.throw(exc)
                else:
                    effect = flow.send(outcome)
        except StopIteration as stop:
            result: T = stop.value
            return result

    async def _perform(self, effect: ApiRequest | Sleep | Concurrent) -> Any:
        if isinstance(effect, ApiRequest):
            return await self._send(effect)
        if isinstance(effect, Sleep):
            await asyncio.sleep(effect.seconds)
            return None
        return await self._gather([self._drive(sub) for sub in effect.flows])

    @staticmethod
    async def _gather(coros: list[Any]) -> list[Any]:
        """Run concurrently; on the first failure cancel the rest and re-raise it as is
        (a TaskGroup would wrap it in an ExceptionGroup, outside the client's tree)."""
        tasks = [asyncio.ensure_future(c) for c in coros]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in tasks:
                if task.done() and not task.cancelled():
                    error = task.exception()
                    if error is not None:
                        raise error
            return [task.result() for task in tasks]
        finally:
            pending = [t for t in tasks if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    # -- API -------------------------------------------------------------------------

    async def check(self, items: Iterable[ItemLike], policy: str | None = None
                    ) -> list[CheckResult]:
        """Check triples; results come back in order whatever the batch size."""
        return await self._drive(self._core.check(items, policy))

    async def check_testcases(self, items: Iterable[TestcaseItemLike],
                              policy: str | None = None) -> list[TestcaseResult]:
        """Judge programs on stdin/stdout test cases; results come back in order. `policy`:
        the service's default (permissive) unless given."""
        return await self._drive(self._core.check_testcases(items, policy))

    async def judge(self, program: str, cases: Sequence[CaseLike], *,
                    compare: CompareMode | str = CompareMode.LINES,
                    timeout_s: float | None = None, memory_mb: int | None = None,
                    policy: str | None = None) -> TestcaseResult:
        """One program on its test cases: pairs (stdin, expected stdout) or mappings."""
        item = testcase_item(program, cases, compare, timeout_s, memory_mb)
        [result] = await self._drive(self._core.check_testcases([item], policy))
        return result

    async def submit(self, items: Iterable[ItemLike], policy: str | None = None) -> str:
        """Queue a job (one request, not chunked); returns its id."""
        return await self._drive(self._core.submit(items, policy))

    async def job(self, job_id: str) -> JobStatus:
        return await self._drive(self._core.job(job_id))

    async def wait(self, job_id: str, timeout: float | None = None,
                   poll_interval: float | None = None) -> JobStatus:
        """Poll until finished; raises JobFailedError or JobTimeoutError."""
        return await self._drive(self._core.wait(job_id, timeout, poll_interval))

    async def audit(self, verdict: Verdict | str | None = None,
                    since: datetime | float | None = None,
                    limit: int | None = None, *, until: datetime | float | None = None,
                    rule: str | None = None, text: str | None = None,
                    before: str | None = None) -> list[AuditRecord]:
        """Rejected items, newest first: the filters of the console (verdict, time range,
        policy rule, text search); `before` is a record's id to page past."""
        return await self._drive(self._core.audit(verdict, since, limit, until=until, rule=rule,
                                                text=text, before=before))

    async def audit_page(self, verdict: Verdict | str | None = None,
                         since: datetime | float | None = None, limit: int = 1000,
                         oldest_first: bool = False, cursor: str | None = None, *,
                         until: datetime | float | None = None, rule: str | None = None,
                         text: str | None = None) -> AuditPage:
        """One page of audit records, newest first unless `oldest_first`; pass the page's
        `next_cursor` as `cursor` for the next one."""
        return await self._drive(self._core.audit_page(verdict, since, limit, oldest_first,
                                                       cursor, until=until, rule=rule,
                                                       text=text))

    async def iter_audit(self, verdict: Verdict | str | None = None,
                         since: datetime | float | None = None,
                         page_size: int = 1000, *, until: datetime | float | None = None,
                         rule: str | None = None, text: str | None = None
                         ) -> AsyncIterator[AuditRecord]:
        """Every audit record this key may read, oldest first, one page at a time."""
        cursor: str | None = None
        while True:
            page = await self.audit_page(verdict, since, page_size, oldest_first=True,
                                         cursor=cursor, until=until, rule=rule, text=text)
            for record in page.records:
                yield record
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def info(self) -> ServiceInfo:
        return await self._drive(self._core.info())

    # -- AZR helpers (docs/design.md §2) -----------------------------------------------

    async def validate_proposal(self, program: str, input: str, policy: str | None = None, *,
                                determinism_runs: int | None = None) -> ProposalOutcome:
        """Deduction/abduction proposal (p, i): gold output, or the rejection reason
        (determinism runs: the service's default unless given)."""
        return await self._drive(_azr_flows.validate_proposal(
            self._core, program, [input], None, policy, determinism_runs))

    async def validate_induction_proposal(self, program: str, inputs: Sequence[str], *,
                                          min_valid: int | None = None,
                                          policy: str | None = None,
                                          determinism_runs: int | None = None
                                          ) -> ProposalOutcome:
        """Induction proposal (p, i1..iN): gold output per input."""
        return await self._drive(_azr_flows.validate_proposal(
            self._core, program, inputs, min_valid, policy, determinism_runs))

    async def check_deduction(self, program: str, input: str, predicted_output: str,
                              policy: str | None = None, *, gold_output: str | None = None,
                              determinism_runs: int | None = ANSWER_DETERMINISM_RUNS) -> bool:
        """Deduction answer o' for (p, i): True when f(i) == o'. With the task's
        `gold_output` the service compares the two values and runs nothing."""
        return await self._drive(_azr_flows.check_deduction(
            self._core, program, input, predicted_output, policy, gold_output,
            determinism_runs))

    async def check_abduction(self, program: str, predicted_input: str, gold_output: str,
                              policy: str | None = None, *,
                              determinism_runs: int | None = ANSWER_DETERMINISM_RUNS) -> bool:
        """Abduction answer i' for (p, o*): True when f(i') == o*."""
        return await self._drive(_azr_flows.check_abduction(
            self._core, program, predicted_input, gold_output, policy, determinism_runs))

    async def check_induction(self, predicted_program: str, hidden: Sequence[IOPairLike],
                              policy: str | None = None, *,
                              determinism_runs: int | None = ANSWER_DETERMINISM_RUNS) -> bool:
        """Induction answer p': True when p'(ik) == ok for every hidden pair."""
        return await self._drive(_azr_flows.check_induction(
            self._core, predicted_program, hidden, policy, determinism_runs))
