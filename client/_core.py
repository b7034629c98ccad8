"""Sans-IO core shared by `Client` and `AsyncClient`.

Every operation is written once, as a generator ("flow") that yields *effects* and receives
their outcomes:

- `ApiRequest` -> the driver sends it and sends back an `ApiResponse`, or throws a
  `TransportError` into the flow;
- `Sleep` -> the driver sleeps (``time.sleep`` or ``asyncio.sleep``);
- `Concurrent` -> the driver runs the sub-flows (one by one, or concurrently) and sends back
  their return values in order.

Request building, retries with backoff, error mapping, chunking and response parsing live
here; the two drivers only perform effects. This is what keeps the sync and async twins from
drifting apart (httpx's own transports play the same role).
"""

from __future__ import annotations

import email.utils
import json
import math
import random
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from .config import ClientConfig
from .errors import (
    APIError,
    AuthError,
    BadRequestError,
    InvalidArgumentError,
    InvalidItemError,
    JobFailedError,
    JobTimeoutError,
    NotFoundError,
    PayloadTooLargeError,
    ProtocolError,
    RateLimitedError,
    ServerError,
    ServiceUnavailableError,
    TransportError,
)
from .models import (
    AuditPage,
    AuditRecord,
    AuditResponse,
    CheckItem,
    CheckResponse,
    CheckResult,
    CompareMode,
    ErrorEnvelope,
    JobState,
    JobStatus,
    ServiceInfo,
    SubmitResponse,
    TestCase,
    TestcaseItem,
    TestcaseResponse,
    TestcaseResult,
    Verdict,
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

# Statuses worth retrying: overload and gateway hiccups. Everything else is final.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
USER_AGENT = "azr-verify-client/0.1"


@dataclass(frozen=True)
class ApiRequest:
    method: str
    path: str
    params: Mapping[str, str] | None = None
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ApiResponse:
    status: int
    headers: Mapping[str, str]  # keys lower-cased by the driver
    body: bytes
    where: str | None = None  # "METHOD URL", named by the errors about this response


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Concurrent:
    flows: Sequence[Generator[Effect, Any, Any]]


Effect = ApiRequest | Sleep | Concurrent
Flow = Generator[Effect, Any, T]
ItemLike = CheckItem | Mapping[str, Any]
TestcaseItemLike = TestcaseItem | Mapping[str, Any]


class Core:
    """Pure request/response logic for one configuration."""

    def __init__(self, config: ClientConfig, rng: random.Random | None = None) -> None:
        self.config = config
        # Jitter only needs to decorrelate clients; a private RNG keeps tests reproducible.
        self._rng = rng or random.Random()

    # -- request building ------------------------------------------------------------

    def headers(self, has_body: bool) -> dict[str, str]:
        headers = {"accept": "application/json", "user-agent": USER_AGENT}
        if has_body:
            headers["content-type"] = "application/json"
        if self.config.api_key:
            headers["authorization"] = f"Bearer {self.config.api_key}"
        return headers

    def request(self, method: str, path: str, *, payload: Any = None,
                params: Mapping[str, str] | None = None) -> ApiRequest:
        body = None
        if payload is not None:
            # ensure_ascii: model-written programs may hold lone surrogates, which only
            # survive as \u escapes.
            body = json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode()
        return ApiRequest(method, path, params, body, self.headers(body is not None))

    # -- retries ---------------------------------------------------------------------

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter (AWS style): U(0, min(cap, base * 2^n))."""
        cap = min(self.config.backoff_max_s, self.config.backoff_initial_s * (2 ** attempt))
        return self._rng.uniform(0, cap)

    def retry_delay(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is None:
            return self.backoff(attempt)
        # Honour the server's floor; a little jitter above it avoids a thundering herd.
        floor = min(retry_after_s, self.config.retry_after_max_s)
        return floor + self._rng.uniform(0, min(1.0, 0.1 * floor + 0.05))

    def send(self, req: ApiRequest) -> Flow[ApiResponse]:
        """Send with retries; returns a 2xx response or raises a mapped APIError."""
        attempt = 0
        while True:
            try:
                resp: ApiResponse = yield req
            except TransportError:
                if attempt >= self.config.max_retries:
                    raise
                yield Sleep(self.backoff(attempt))
                attempt += 1
                continue
            if resp.status < 400:
                return resp
            error = map_error(resp)
            if resp.status not in RETRYABLE_STATUSES or attempt >= self.config.max_retries:
                raise error
            yield Sleep(self.retry_delay(attempt, getattr(error, "retry_after_s", None)))
            attempt += 1

    # -- operations ------------------------------------------------------------------

    def check(self, items: Iterable[ItemLike], policy: str | None = None
              ) -> Flow[list[CheckResult]]:
        batch = coerce_items(items)
        policy = policy or self.config.policy
        return (yield from self._batch(_TRIPLES, batch, policy))

    def check_testcases(self, items: Iterable[TestcaseItemLike], policy: str | None = None
                        ) -> Flow[list[TestcaseResult]]:
        """Programs judged on stdin/stdout test cases (`POST /v1/testcases`). The policy
        defaults to the service's (permissive) for these, never to `config.policy`: azr
        refuses `input()` and `sys`, which stdin programs need."""
        batch = coerce_testcase_items(items)
        return (yield from self._batch(_TESTCASES, batch, policy))

    def _batch(self, route: _Route[I, R], batch: list[I], policy: str | None) -> Flow[list[R]]:
        results = yield from self._chunked(route, batch, policy)
        for _ in range(self.config.sandbox_error_retries):
            # sandbox_error is the verifier's failure and retryable by contract: re-send
            # only those items, keep everything else.
            failed = [k for k, r in enumerate(results) if r.verdict is Verdict.SANDBOX_ERROR]
            if not failed:
                break
            retried = yield from self._chunked(route, [batch[k] for k in failed], policy)
            for k, result in zip(failed, retried, strict=True):
                results[k] = result
        return results

    def _chunked(self, route: _Route[I, R], batch: list[I], policy: str | None
                 ) -> Flow[list[R]]:
        if not batch:
            return []
        size = self.config.chunk_size
        chunks = [batch[k:k + size] for k in range(0, len(batch), size)]
        if len(chunks) == 1:
            return (yield from self._chunk(route, chunks[0], policy))
        parts: list[list[R]] = yield Concurrent(
            [self._chunk(route, chunk, policy) for chunk in chunks])
        return [result for part in parts for result in part]

    def _chunk(self, route: _Route[I, R], chunk: list[I], policy: str | None
               ) -> Flow[list[R]]:
        payload: dict[str, Any] = {"items": [dump_item(item) for item in chunk]}
        if policy is not None:
            payload["policy"] = policy
        try:
            resp = yield from self.send(self.request("POST", route.path, payload=payload))
        except PayloadTooLargeError:
            # The server's limits may be lower than our chunk size: halve and go on rather
            # than make the caller guess the limit.
            if len(chunk) == 1:
                raise
            mid = len(chunk) // 2
            left = yield from self._chunk(route, chunk[:mid], policy)
            right = yield from self._chunk(route, chunk[mid:], policy)
            return left + right
        results = route.parse(resp)
        if len(results) != len(chunk):
            raise ProtocolError(f"sent {len(chunk)} items, got {len(results)} results",
                                resp.where)
        return results

    def submit(self, items: Iterable[ItemLike], policy: str | None = None) -> Flow[str]:
        payload = {"items": [dump_item(item) for item in coerce_items(items)],
                   "policy": policy or self.config.policy}
        resp = yield from self.send(self.request("POST", "/v1/jobs", payload=payload))
        return parse(SubmitResponse, resp).job_id

    def job(self, job_id: str) -> Flow[JobStatus]:
        resp = yield from self.send(self.request("GET", f"/v1/jobs/{job_id}"))
        return parse(JobStatus, resp)

    def wait(self, job_id: str, timeout: float | None = None,
             poll_interval: float | None = None) -> Flow[JobStatus]:
        """Poll until the job is terminal; `timeout=None` waits forever."""
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = poll_interval or self.config.poll_interval_s
        while True:
            status = yield from self.job(job_id)
            if status.status is JobState.FINISHED:
                return status
            if status.status is JobState.FAILED:
                raise JobFailedError(f"job {job_id} failed: {status.error}", status)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise JobTimeoutError(
                    f"job {job_id} still {status.status.value} after {timeout}s "
                    f"({status.progress.done}/{status.progress.total})", status)
            pause = interval if deadline is None else min(interval, deadline - now)
            yield Sleep(pause)
            interval = min(interval * 1.5, self.config.poll_interval_max_s)

    def audit(self, verdict: Verdict | str | None = None,
              since: datetime | float | None = None,
              limit: int | None = None, *, until: datetime | float | None = None,
              rule: str | None = None, text: str | None = None,
              before: str | None = None) -> Flow[list[AuditRecord]]:
        """Rejected items, newest first; `since`/`until` are datetimes or UNIX times."""
        params = audit_params(verdict, since, until, rule, text, limit)
        if before is not None:
            params["cursor"] = before
        resp = yield from self.send(self.request("GET", "/v1/audit", params=params))
        return parse(AuditResponse, resp).records

    def audit_page(self, verdict: Verdict | str | None = None,
                   since: datetime | float | None = None, limit: int = 1000,
                   oldest_first: bool = False, cursor: str | None = None, *,
                   until: datetime | float | None = None, rule: str | None = None,
                   text: str | None = None) -> Flow[AuditPage]:
        """One page of audit records; the service returns only those the key may read."""
        params = audit_params(verdict, since, until, rule, text, limit)
        params["order"] = "asc" if oldest_first else "desc"
        if cursor is not None:
            params["cursor"] = cursor
        resp = yield from self.send(self.request("GET", "/v1/audit", params=params))
        body = parse(AuditResponse, resp)
        return AuditPage(records=body.records, next_cursor=body.next_cursor)

    def info(self) -> Flow[ServiceInfo]:
        resp = yield from self.send(self.request("GET", "/v1/info"))
        return parse(ServiceInfo, resp)


# -- helpers -----------------------------------------------------------------------------


def audit_params(verdict: Verdict | str | None, since: datetime | float | None,
                 until: datetime | float | None, rule: str | None, text: str | None,
                 limit: int | None) -> dict[str, str]:
    """The query of `GET /v1/audit`: the console's filters and a page size."""
    params: dict[str, str] = {}
    if verdict is not None:
        try:
            params["verdict"] = Verdict(verdict).value
        except ValueError:
            names = ", ".join(v.value for v in Verdict)
            raise InvalidArgumentError(f"unknown verdict {verdict!r}; expected one of: "
                                       f"{names}") from None
    for name, value in (("since", since), ("until", until)):
        if value is not None:
            params[name] = repr(unix_time(name, value))
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidArgumentError(f"limit must be a positive int, not {limit!r}")
        params["limit"] = str(limit)
    params.update({k: v for k, v in (("rule", rule), ("q", text)) if v is not None})
    return params


def unix_time(name: str, value: datetime | float) -> float:
    """The API takes UNIX seconds; an aware or naive datetime converts exactly."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentError(f"{name} must be a datetime or a UNIX time, not "
                                   f"{value!r}")
    return float(value)


class _Judged(Protocol):
    @property
    def verdict(self) -> Verdict: ...


I = TypeVar("I", bound=BaseModel)  # noqa: E741
R = TypeVar("R", bound=_Judged)


@dataclass(frozen=True)
class _Route(Generic[I, R]):
    """A batch endpoint: where its items go and how its results are read."""

    path: str
    parse: Callable[[ApiResponse], list[R]]


_TRIPLES: _Route[CheckItem, CheckResult] = _Route(
    "/v1/check", lambda resp: parse(CheckResponse, resp).results)
_TESTCASES: _Route[TestcaseItem, TestcaseResult] = _Route(
    "/v1/testcases", lambda resp: parse(TestcaseResponse, resp).results)


CaseLike = TestCase | tuple[str, str | None] | Mapping[str, Any]


def testcase_item(program: str, cases: Sequence[CaseLike], compare: CompareMode | str,
                  timeout_s: float | None, memory_mb: int | None) -> TestcaseItem:
    """One TestcaseItem from a program and (stdin, expected) pairs or mappings."""
    built: list[TestCase] = []
    for case in cases:
        if isinstance(case, TestCase):
            built.append(case)
        elif isinstance(case, Mapping):
            built.append(TestCase.model_validate(case))
        else:
            stdin, expected = case
            built.append(TestCase(input=stdin, output=expected))
    try:
        return TestcaseItem(program=program, cases=built, compare=CompareMode(compare),
                            timeout_s=timeout_s, memory_mb=memory_mb)
    except (ValidationError, ValueError) as exc:
        raise InvalidItemError(f"invalid test-case item: {exc}") from exc


def coerce_testcase_items(items: Iterable[TestcaseItemLike]) -> list[TestcaseItem]:
    out = []
    for item in items:
        if isinstance(item, TestcaseItem):
            out.append(item)
        else:
            try:
                out.append(TestcaseItem.model_validate(item))
            except ValidationError as exc:
                raise InvalidItemError(f"item {len(out)}: {exc}") from exc
    return out


def coerce_items(items: Iterable[ItemLike]) -> list[CheckItem]:
    out = []
    for item in items:
        if isinstance(item, CheckItem):
            out.append(item)
        else:
            try:
                out.append(CheckItem.model_validate(item))
            except ValidationError as exc:
                # A caller bug: report it before anything is sent.
                raise InvalidItemError(f"item {len(out)}: {exc}") from exc
    return out


def dump_item(item: BaseModel) -> dict[str, Any]:
    # Unset optional fields are left out so the server's defaults apply.
    return item.model_dump(mode="json", exclude_none=True)


def parse(model: type[M], resp: ApiResponse) -> M:
    try:
        return model.model_validate_json(resp.body)
    except ValidationError as exc:
        raise ProtocolError(
            f"unexpected {model.__name__} body (HTTP {resp.status}): {exc}", resp.where) from exc


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


_STATUS_ERRORS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    422: BadRequestError,
}


def map_error(resp: ApiResponse) -> APIError:
    """Turn an error response into the client's exception, reading the JSON error body."""
    try:
        body = ErrorEnvelope.model_validate_json(resp.body).error
        code, message = body.code, body.message
    except ValidationError:
        # A proxy in front of the service may answer with HTML or nothing at all.
        code = f"http_{resp.status}"
        message = resp.body[:500].decode("utf-8", "replace") or "(empty body)"
    retry_after = parse_retry_after(resp.headers.get("retry-after"))
    url = resp.where
    if resp.status == 429:
        return RateLimitedError(resp.status, code, message, retry_after, url=url)
    if resp.status == 503:
        return ServiceUnavailableError(resp.status, code, message, retry_after, url=url)
    if resp.status in _STATUS_ERRORS:
        return _STATUS_ERRORS[resp.status](resp.status, code, message, url=url)
    if resp.status >= 500:
        return ServerError(resp.status, code, message, url=url)
    return APIError(resp.status, code, message, url=url)
