"""The audit store of distributed mode: a capped Redis stream of every record, and a stream
per API key (docs/design.md §5). Workers write, the API reads; a read filters while it scans,
bounded by `SCAN_LIMIT` entries.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import redis

from azr_verify.service.errors import InvalidQueryError
from azr_verify.service.queue import scripts
from azr_verify.service.queue.connection import as_text, translate_errors
from azr_verify.service.queue.keys import Keys
from azr_verify.service.stores.audit.query import (
    CLOCK_SKEW_S,
    READ_PAGE,
    AuditCounts,
    AuditPage,
    AuditQuery,
)
from azr_verify.service.stores.audit.records import (
    AuditRecord,
)

# The most stream entries one Redis read examines while filtering (page or chart).
SCAN_LIMIT = 100_000


class RedisAuditStore:
    """Distributed mode: a capped Redis stream of every record, and a copy of each keyed
    record in its API key's stream under the same entry id, so a key's reads scan only its
    own records. Entry ids are Redis-time milliseconds."""

    def __init__(self, client: redis.Redis, keys: Keys, retention: int) -> None:
        self.client = client
        self.keys = keys
        self.key = keys.audit
        self.retention = retention
        self._add = scripts.AuditAddScript(client)

    def record(self, records: Sequence[AuditRecord]) -> None:
        if not records or self.retention == 0:
            return
        with translate_errors("audit write"), self.client.pipeline(transaction=False) as pipe:
            for record in records:
                key_stream = None if record.api_key_name is None else \
                    self.keys.audit_of(record.api_key_name)
                self._add(stream=self.key, key_stream=key_stream, record_json=record.to_json(),
                          retention=self.retention, pipeline=pipe)
            pipe.execute()

    def _stream(self, query: AuditQuery) -> str:
        """A scoped reader's own stream; everyone's otherwise."""
        return self.key if query.api_key_name is None else \
            self.keys.audit_of(query.api_key_name)

    @staticmethod
    def _bound(stamp: float | None, skew: float, default: str) -> str:
        # Stream ids are Redis' clock, record times the workers': widen the id range by any
        # plausible skew, then filter on the record's own time.
        if stamp is None:
            return default
        return str(max(0, int((stamp + skew) * 1000)))

    def _pages(self, query: AuditQuery, newest_first: bool, after: str | None = None
               ) -> Iterator[list[AuditRecord]]:
        """Stream entries in order, a page at a time, from the entry `after` (exclusive)."""
        low = self._bound(query.since, -CLOCK_SKEW_S, "-")
        high = self._bound(query.until, CLOCK_SKEW_S, "+")
        if after is not None:
            if newest_first:
                high = f"({after}"
            else:
                low = f"({after}"
        stream = self._stream(query)
        while True:
            entries: Any
            with translate_errors("audit read"):
                if newest_first:
                    entries = self.client.xrevrange(stream, max=high, min=low, count=READ_PAGE)
                else:
                    entries = self.client.xrange(stream, min=low, max=high, count=READ_PAGE)
            yield [AuditRecord.from_json(fields[b"r"], as_text(entry_id))
                   for entry_id, fields in entries]
            if len(entries) < READ_PAGE:
                return
            last = as_text(entries[-1][0])
            # Exclusive bounds continue after the last entry seen.
            if newest_first:
                high = f"({last}"
            else:
                low = f"({last}"

    def page(self, query: AuditQuery, limit: int, cursor: str | None = None,
             oldest_first: bool = False) -> AuditPage:
        if cursor is not None and not re.fullmatch(r"\d+-\d+", cursor):
            raise InvalidQueryError(f"cursor {cursor!r} is not an id of this audit log")
        found: list[AuditRecord] = []
        examined = 0
        last_seen: str | None = None
        for page in self._pages(query, newest_first=not oldest_first, after=cursor):
            for record in page:
                examined += 1
                last_seen = record.id
                if query.matches(record):
                    found.append(record)
                    if len(found) > limit:
                        return AuditPage(found[:limit], found[limit - 1].id)
            if examined >= SCAN_LIMIT:
                # Bounded work per request: the cursor lets the reader continue the scan.
                return AuditPage(found, last_seen)
        return AuditPage(found, None)

    def get(self, record_id: str, query: AuditQuery) -> AuditRecord | None:
        if not re.fullmatch(r"\d+-\d+", record_id):
            return None
        with translate_errors("audit read"):
            entries: Any = self.client.xrange(self._stream(query), min=record_id,
                                              max=record_id, count=1)
        if not entries:
            return None
        entry_id, fields = entries[0]
        record = AuditRecord.from_json(fields[b"r"], as_text(entry_id))
        return record if query.matches(record) else None

    def iterate(self, query: AuditQuery) -> Iterator[AuditRecord]:
        for page in self._pages(query, newest_first=False):
            yield from (r for r in page if query.matches(r))

    def time_bounds(self, query: AuditQuery) -> tuple[float, float] | None:
        # The ends of the reader's stream within the time range: a chart's extent, without a
        # scan.
        ranged = AuditQuery(since=query.since, until=query.until,
                            api_key_name=query.api_key_name)
        newest = next(self._pages(ranged, newest_first=True), [])
        oldest = next(self._pages(ranged, newest_first=False), [])
        inside = [r.time for r in newest[:1] + oldest[:1] if ranged.matches(r)]
        return (min(inside), max(inside)) if inside else None

    def counts(self, query: AuditQuery, start: float, width: float,
               buckets: int) -> AuditCounts:
        stop = start + width * buckets
        result: list[Counter[str]] = [Counter() for _ in range(buckets)]
        examined = 0
        for page in self._pages(query, newest_first=True):
            for record in page:
                examined += 1
                if start <= record.time < stop and query.matches(record):
                    result[int((record.time - start) // width)][record.verdict.value] += 1
            if examined >= SCAN_LIMIT:
                return AuditCounts(start, width, result, truncated=True)
        return AuditCounts(start, width, result)

    def rules(self) -> list[str]:
        # The stream has no rule index; the newest page shows which rules are firing.
        page = next(self._pages(AuditQuery(), newest_first=True), [])
        return sorted({rule for record in page for rule in record.rules})

    def close(self) -> None:
        self.client.close()
