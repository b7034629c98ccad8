"""Reading the audit log: one `AuditQuery` (verdict, time range, rule, text, API key) for
`/v1/audit`, the console and exports alike (docs/design.md §5), the pages and counts it yields,
and the `AuditStore` protocol both stores implement. The query's `api_key_name` is the reader's
scope, set in one place (service/api/auditing.py).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from azr_verify.service.errors import ConfigError, InvalidQueryError
from azr_verify.service.models import (
    Verdict,
)
from azr_verify.service.stores.audit.records import (
    AuditRecord,
)

# Records one read of either store fetches at a time.
READ_PAGE = 500
# Record times are the writers' clocks: time bounds are widened by this much before they
# become id bounds, then each record's own time is filtered.
CLOCK_SKEW_S = 300
_TOKEN = re.compile(r"[^\W_]+")


def search_tokens(text: str) -> list[str]:
    """Words as the full-text index sees them: runs of letters and digits, lower-cased."""
    return _TOKEN.findall(text.lower())


def search_text(record: AuditRecord) -> str:
    """What text search looks in: program, input, output, error, ids and meta (the stored
    excerpts: deleting a row must derive the text it indexed)."""
    parts = [record.program, record.input, record.output or "", record.error_type or "",
             record.error or "", "" if record.item_id is None else str(record.item_id),
             record.program_hash, json.dumps(record.meta) if record.meta else ""]
    # Lone surrogates cannot be stored as UTF-8; as "?" they separate words like spaces.
    return "\n".join(parts).encode("utf-8", "replace").decode("utf-8")


@dataclass(frozen=True)
class AuditQuery:
    """Which records to read. Every field narrows; None means no constraint.

    `text` matches records containing its words in order, the last one as a prefix
    (`os.sys` finds `os.system(...)`). `api_key_name` is the reader's scope: only that key's
    records (service/api/auditing.py `audit_scope` decides it for every HTTP reader).
    """

    verdict: Verdict | None = None
    since: float | None = None  # time > since
    until: float | None = None  # time <= until
    rule: str | None = None
    text: str | None = None
    api_key_name: str | None = None
    words: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        words = tuple(search_tokens(self.text)) if self.text else ()
        if self.text and not words:
            raise InvalidQueryError(f"search text {self.text!r} has no letters or digits")
        object.__setattr__(self, "words", words)

    def matches(self, record: AuditRecord) -> bool:
        """The filter in Python (the Redis store; the SQLite store uses its indexes)."""
        if self.verdict is not None and record.verdict is not self.verdict:
            return False
        if self.since is not None and not record.time > self.since:
            return False
        if self.until is not None and not record.time <= self.until:
            return False
        if self.rule is not None and self.rule not in record.rules:
            return False
        if self.api_key_name is not None and record.api_key_name != self.api_key_name:
            return False
        return not self.words or _has_phrase(search_tokens(search_text(record)), self.words)

    def fts_query(self) -> str:
        """The FTS5 expression for `words`: a phrase whose last word is a prefix."""
        return '"' + " ".join(self.words) + '" *'


def _has_phrase(tokens: Sequence[str], words: Sequence[str]) -> bool:
    n = len(words)
    for start in range(len(tokens) - n + 1):
        if list(tokens[start:start + n - 1]) == list(words[:-1]) and \
                tokens[start + n - 1].startswith(words[-1]):
            return True
    return False


@dataclass(frozen=True)
class AuditPage:
    records: list[AuditRecord]
    # Cursor of the next page (the id of this page's last record); None when this is the last.
    next_cursor: str | None


@dataclass(frozen=True)
class AuditCounts:
    """Records per verdict in `buckets` equal slices of [start, start + width * buckets)."""

    start: float
    width: float
    buckets: list[Counter[str]]
    truncated: bool = False  # the Redis store stopped at SCAN_LIMIT entries


class AuditStore(Protocol):
    def record(self, records: Sequence[AuditRecord]) -> None: ...

    def page(self, query: AuditQuery, limit: int, cursor: str | None = None,
             oldest_first: bool = False) -> AuditPage:
        """Up to `limit` matching records past the record `cursor`: newest first (older than
        it), or oldest first (newer than it)."""
        ...

    def get(self, record_id: str, query: AuditQuery) -> AuditRecord | None:
        """One record, if it exists and `query` (the caller's scope) matches it."""
        ...

    def iterate(self, query: AuditQuery) -> Iterator[AuditRecord]:
        """Every matching record, oldest first (for export)."""
        ...

    def time_bounds(self, query: AuditQuery) -> tuple[float, float] | None:
        """Oldest and newest record time within the query's time range (a chart's extent;
        the SQLite store narrows by verdict and scope too); None when there is none."""
        ...

    def counts(self, query: AuditQuery, start: float, width: float,
               buckets: int) -> AuditCounts: ...

    def rules(self) -> list[str]:
        """Rule names that occur in the log (for the console's rule filter)."""
        ...

    def close(self) -> None: ...



def parse_verdict(text: str | None) -> Verdict | None:
    if text is None:
        return None
    try:
        return Verdict(text)
    except ValueError:
        names = ", ".join(v.value for v in Verdict)
        raise ConfigError(f"unknown verdict {text!r}; expected one of: {names}") from None
