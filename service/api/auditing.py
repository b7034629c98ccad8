"""Reading the audit log over HTTP, in one place for `/v1/audit`, its export and the console.

`audit_query` turns a caller and its filters into the store's `AuditQuery`; every reader goes
through it (`/v1/audit`, `/v1/audit/export`, the console's pages, and so `azr-verify audit
export --url` and the client), so the caller's audit scope, decided by `audit_scope` alone,
applies to all of them (docs/design.md §5). The store is blocking; these helpers run it off
the event loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, TypeVar

import anyio
from fastapi import Query
from starlette.responses import StreamingResponse

from azr_verify.service.api.auth import ApiKeys
from azr_verify.service.api.errors import ApiError
from azr_verify.service.errors import InvalidQueryError
from azr_verify.service.models import Verdict
from azr_verify.service.stores.audit.export import csv_lines, jsonl_lines
from azr_verify.service.stores.audit.query import AuditCounts, AuditPage, AuditQuery, AuditStore
from azr_verify.service.stores.audit.records import AuditRecord

T = TypeVar("T")
MAX_PAGE = 10_000
MAX_TEXT_CHARS = 200
RULE_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
EXPORT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
# Nice bucket widths for the chart, in seconds; the widest that gives at most this many bars.
CHART_BUCKETS = 60
_WIDTHS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
           43200, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400)


@dataclass(frozen=True)
class AuditFilters:
    """What a reader asks for; the scope is added by `audit_query`."""

    verdict: Verdict | None = None
    since: float | None = None
    until: float | None = None
    rule: str | None = None
    text: str | None = None


def audit_filters(
    verdict: Annotated[Verdict | None, Query(description="Only this verdict.")] = None,
    since: Annotated[float | None, Query(description="Only records after this UNIX time.")]
    = None,
    until: Annotated[float | None, Query(description="Only records at or before this UNIX "
                                          "time.")] = None,
    rule: Annotated[str | None, Query(description="Only records with a policy violation of "
                                      "this rule (e.g. import_denied).",
                                      pattern=RULE_PATTERN)] = None,
    q: Annotated[str | None, Query(description="Text search over program, input, output, "
                                   "error, item id, program hash and meta: the words in "
                                   "order, the last one as a prefix.",
                                   max_length=MAX_TEXT_CHARS)] = None,
) -> AuditFilters:
    """FastAPI dependency: the filters of `/v1/audit` and `/v1/audit/export`."""
    return AuditFilters(verdict, since, until, rule, q or None)


def audit_scope(keys: ApiKeys, key_name: str | None) -> str | None:
    """The API key name whose records this caller may read; None reads every key's.

    Every reader of the audit log passes through here, the single place per-key scoping
    applies: a key reads only its own records; an admin key (AZR_VERIFY_ADMIN_KEYS) reads
    every key's; a service without keys has one tenant, who reads everything.
    """
    if not keys.enabled:
        return None
    if key_name is None:  # never reached through the auth dependency; fail closed anyway
        raise ApiError(401, "unauthorized", "an API key is needed to read the audit log")
    return None if keys.is_admin(key_name) else key_name


def audit_query(keys: ApiKeys, key_name: str | None, filters: AuditFilters) -> AuditQuery:
    """The caller's filters within the caller's scope. Raises 422 for a malformed filter."""
    try:
        return AuditQuery(verdict=filters.verdict, since=filters.since, until=filters.until,
                          rule=filters.rule, text=filters.text,
                          api_key_name=audit_scope(keys, key_name))
    except InvalidQueryError as exc:
        raise ApiError(422, "validation_error", str(exc)) from None


async def _off_loop(call: Callable[[], T]) -> T:
    try:
        return await anyio.to_thread.run_sync(call)
    except InvalidQueryError as exc:
        raise ApiError(422, "validation_error", str(exc)) from None


async def read_page(store: AuditStore, query: AuditQuery, limit: int, cursor: str | None,
                    oldest_first: bool = False) -> AuditPage:
    return await _off_loop(lambda: store.page(query, limit, cursor, oldest_first))


async def read_record(store: AuditStore, query: AuditQuery, record_id: str
                      ) -> AuditRecord | None:
    return await _off_loop(lambda: store.get(record_id, query))


async def read_rules(store: AuditStore) -> list[str]:
    return await _off_loop(store.rules)


@dataclass(frozen=True)
class Chart:
    counts: AuditCounts
    total: int

    @property
    def stop(self) -> float:
        return self.counts.start + self.counts.width * len(self.counts.buckets)


def chart_range(bounds: tuple[float, float] | None, query: AuditQuery,
                now: float) -> tuple[float, float]:
    """The time span the chart covers: the filter's range, else the records' extent."""
    low = query.since if query.since is not None else (bounds[0] if bounds else now - 3600)
    high = query.until if query.until is not None else max(now, bounds[1] if bounds else now)
    return low, max(high, low + 1)


def bucket_width(span: float, buckets: int = CHART_BUCKETS) -> float:
    for width in _WIDTHS:
        if span / width <= buckets:
            return float(width)
    return float(math.ceil(span / buckets / 86400) * 86400)


async def read_chart(store: AuditStore, query: AuditQuery, now: float | None = None) -> Chart:
    current = time.time() if now is None else now

    def compute() -> Chart:
        low, high = chart_range(store.time_bounds(query), query, current)
        width = bucket_width(high - low)
        start = math.floor(low / width) * width  # aligned: minute counts answer whole minutes
        buckets = max(1, math.ceil((high - start) / width))
        if high >= start + buckets * width:
            buckets += 1  # `until` is inclusive: keep its own second inside the last bucket
        counts = store.counts(query, start, width, buckets)
        return Chart(counts, sum(sum(bucket.values()) for bucket in counts.buckets))

    return await _off_loop(compute)


def export_response(store: AuditStore, query: AuditQuery, fmt: str) -> StreamingResponse:
    """Every matching record, oldest first, streamed as JSONL or CSV (no size limit)."""
    if fmt not in EXPORT_TYPES:
        raise ApiError(422, "validation_error",
                       f"unknown export format {fmt!r}; expected one of: "
                       f"{', '.join(EXPORT_TYPES)}")
    lines = (csv_lines if fmt == "csv" else jsonl_lines)(store.iterate(query))

    async def body() -> AsyncIterator[bytes]:
        # The store blocks: each chunk is read in a worker thread.
        chunk_lines: Iterator[str] = _chunks(lines)
        while True:
            chunk = await anyio.to_thread.run_sync(next, chunk_lines, None)
            if chunk is None:
                return
            yield chunk.encode("utf-8")

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return StreamingResponse(body(), media_type=EXPORT_TYPES[fmt], headers={
        "Content-Disposition": f'attachment; filename="azr-verify-audit-{stamp}.{fmt}"',
        "Cache-Control": "no-store"})


def _chunks(lines: Iterator[str], size: int = 256) -> Iterator[str]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)
