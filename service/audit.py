"""The audit log: every rejected item (any verdict but accepted / wrong_output), with why.

One protocol, two stores: SQLite under `data_dir` in embedded mode, a Redis stream in
distributed mode (workers write, the API reads). Records are stored as ASCII JSON: model-written
programs may hold lone surrogates, which neither SQLite's UTF-8 nor Redis' clients accept raw.

Reads go through one `AuditQuery` (verdict, time range, rule, text, API key) for `/v1/audit`,
the console and exports alike (docs/design.md §5). The SQLite store answers every filter from an
index (a rule table, a full-text index, per-minute and per-hour counts), so a page or a chart
stays fast on
a million records; the Redis store filters while it scans, bounded by `SCAN_LIMIT` entries.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import redis
from pydantic import BaseModel, Field

from azr_verify.service.config import Settings
from azr_verify.service.errors import ConfigError, InvalidQueryError
from azr_verify.service.models import CheckItem, CheckResult, PolicyName, Verdict, Violation
from azr_verify.service.queue.connection import as_text, sync_client, translate_errors
from azr_verify.service.queue.keys import Keys

log = logging.getLogger(__name__)

DB_NAME = "audit.sqlite3"
# Bumped whenever the tables or `search_text` change: the full-text index is contentless, so
# deleting a row re-derives the text it indexed and must derive exactly the same text.
SCHEMA_VERSION = 2
# Rows trimmed to `audit_retention` once per this many inserts (trimming scans an index).
_TRIM_EVERY = 1000
_PAGE = 500
CLOCK_SKEW_S = 300
MINUTE_S = 60
# Pre-counted records per (slot, verdict, key): a chart of whole slots reads these instead of
# the rows. The coarsest rollup that divides the chart's buckets is used.
ROLLUPS = (("audit_hour", 3600), ("audit_minute", MINUTE_S))
# The most stream entries one Redis read examines while filtering (page or chart).
SCAN_LIMIT = 100_000
# The most matches of a rule or text search the SQLite store reads for one chart.
CHART_SCAN_LIMIT = 20_000
_TOKEN = re.compile(r"[^\W_]+")


class AuditRecord(BaseModel):
    """One rejected item."""

    id: str | None = Field(default=None, description="The store's id of the record (a page cursor; "
                           "the console's item link). Not part of the stored JSON.")
    time: float = Field(description="UNIX time it was checked.")
    program_hash: str = Field(description="sha256 of the program text.")
    program: str = Field(description="The program text; empty for a comparison item.")
    input: str
    output: str | None = Field(None, description="The expected output the client sent.")
    entry: str
    policy: str
    verdict: Verdict
    violations: list[Violation] = Field(default_factory=list)
    error_type: str | None = None
    error: str | None = None
    api_key_name: str | None = None
    item_id: str | int | None = None
    meta: dict[str, Any] | None = None

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude={"id"}), ensure_ascii=True,
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, record_id: str | None = None) -> AuditRecord:
        # json.loads, not model_validate_json: pydantic's parser refuses escaped lone
        # surrogates, which Python's accepts (and the record was written by Python).
        record = cls.model_validate(json.loads(text))
        record.id = record_id
        return record

    @property
    def rules(self) -> list[str]:
        return sorted({v.rule for v in self.violations})


def program_hash(program: str) -> str:
    return hashlib.sha256(program.encode("utf-8", "surrogatepass")).hexdigest()


def records_for(items: Sequence[CheckItem], results: Sequence[CheckResult],
                policy: PolicyName, key_name: str | None,
                now: float | None = None) -> list[AuditRecord]:
    """Audit records for the rejected items of a checked batch."""
    stamp = time.time() if now is None else now
    return [
        AuditRecord(time=stamp, program_hash=program_hash(item.program or ""),
                    program=item.program or "",  # "" for a comparison: nothing ran
                    input=item.input, output=item.output, entry=item.entry, policy=policy.value,
                    verdict=result.verdict, violations=result.violations,
                    error_type=result.error_type, error=result.error, api_key_name=key_name,
                    item_id=item.id, meta=item.meta)
        for item, result in zip(items, results, strict=True) if result.verdict.is_rejection
    ]


# -- queries ------------------------------------------------------------------------------


def search_tokens(text: str) -> list[str]:
    """Words as the full-text index sees them: runs of letters and digits, lower-cased."""
    return _TOKEN.findall(text.lower())


def search_text(record: AuditRecord) -> str:
    """What text search looks in: program, input, output, error, ids and meta."""
    parts = [record.program, record.input, record.output or "", record.error_type or "",
             record.error or "", "" if record.item_id is None else str(record.item_id),
             record.program_hash, json.dumps(record.meta) if record.meta else ""]
    # Lone surrogates cannot be stored as UTF-8; as "?" they separate words like spaces.
    return "\n".join(parts).encode("utf-8", "replace").decode("utf-8")


@dataclass(frozen=True)
class AuditQuery:
    """Which records to read. Every field narrows; None means no constraint.

    `text` matches records containing its words in order, the last one as a prefix
    (`os.sys` finds `os.system(...)`). `api_key_name` is the per-key scope.
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
    next_before: str | None  # cursor of the next (older) page; None when this is the last


@dataclass(frozen=True)
class AuditCounts:
    """Records per verdict in `buckets` equal slices of [start, start + width * buckets)."""

    start: float
    width: float
    buckets: list[Counter[str]]
    truncated: bool = False  # the Redis store stopped at SCAN_LIMIT entries


class AuditStore(Protocol):
    def record(self, records: Sequence[AuditRecord]) -> None: ...

    def page(self, query: AuditQuery, limit: int, before: str | None = None) -> AuditPage:
        """The newest `limit` matching records older than the record `before`, newest first."""
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


# -- SQLite (embedded mode) ----------------------------------------------------------------

_TABLES = (
    "CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, time REAL NOT NULL, "
    "verdict TEXT NOT NULL, record TEXT NOT NULL, key_name TEXT)",
    "CREATE TABLE IF NOT EXISTS audit_rule (rule TEXT NOT NULL, id INTEGER NOT NULL, "
    "time REAL NOT NULL, verdict TEXT NOT NULL, PRIMARY KEY (rule, id)) WITHOUT ROWID",
    *(f"CREATE TABLE IF NOT EXISTS {table} (slot INTEGER NOT NULL, verdict TEXT NOT NULL, "
      "key_name TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (slot, verdict, key_name)) "
      "WITHOUT ROWID" for table, _ in ROLLUPS),
    # Contentless: the text lives in `record` already; the index keeps only words.
    "CREATE VIRTUAL TABLE IF NOT EXISTS audit_text USING fts5(text, content='', "
    "tokenize='unicode61 remove_diacritics 0')",
)
# An equality filter's index yields rowids in order (ORDER BY id needs no sort); the time
# index turns time bounds into id bounds and counts short ranges without reading rows.
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS audit_by_time ON audit (time, verdict)",
    "CREATE INDEX IF NOT EXISTS audit_by_verdict ON audit (verdict)",
    "CREATE INDEX IF NOT EXISTS audit_by_key ON audit (key_name)",
    "CREATE INDEX IF NOT EXISTS audit_by_key_verdict ON audit (key_name, verdict)",
)
_OLD_INDEXES = ("audit_time", "audit_verdict_time")  # schema 1's
_NO_KEY = ""  # the rollups' key_name for records without one (it is part of the key)


class SqliteAuditStore:
    """Embedded mode. One connection guarded by a lock: writes come from request threads."""

    def __init__(self, path: Path, retention: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.retention = retention
        self._lock = threading.Lock()
        self._inserts = 0
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate(path)

    # -- schema ---------------------------------------------------------------------------

    def _migrate(self, path: Path) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ConfigError(f"{path} has audit schema {version}; this azr-verify reads "
                              f"{SCHEMA_VERSION} and older")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(audit)")}
        self._db.execute("BEGIN")
        if columns and "key_name" not in columns:
            self._db.execute("ALTER TABLE audit ADD COLUMN key_name TEXT")
        if version < SCHEMA_VERSION:
            for name in _OLD_INDEXES:
                self._db.execute(f"DROP INDEX IF EXISTS {name}")  # names are literals above
        for statement in _TABLES + _INDEXES:
            self._db.execute(statement)
        if columns and version < SCHEMA_VERSION:
            self._reindex(path)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._db.execute("COMMIT")

    def _reindex(self, path: Path) -> None:
        """Version 1 kept only the JSON: derive key names, rules, words and counts from it."""
        total = self._db.execute("SELECT COUNT(*) FROM audit").fetchone()[0]
        log.info("upgrading the audit log to schema %d", SCHEMA_VERSION,
                 extra={"path": str(path), "records": total})
        for table in ("audit_rule", *(table for table, _ in ROLLUPS)):
            self._db.execute(f"DELETE FROM {table}")  # table names are literals above
        self._db.execute("INSERT INTO audit_text(audit_text) VALUES('delete-all')")
        last = 0
        while True:
            rows = self._db.execute("SELECT id, record FROM audit WHERE id > ? ORDER BY id "
                                    "LIMIT ?", (last, _PAGE)).fetchall()
            if not rows:
                return
            records = [AuditRecord.from_json(text) for _, text in rows]
            ids = [row_id for row_id, _ in rows]
            self._db.executemany("UPDATE audit SET key_name = ? WHERE id = ?",
                                 [(r.api_key_name, i) for r, i in zip(records, ids,
                                                                      strict=True)])
            self._index(ids, records, +1)
            last = ids[-1]

    def _index(self, ids: Sequence[int], records: Sequence[AuditRecord], sign: int) -> None:
        """Adds (+1) or removes (-1) the rule rows, words and rollup counts of records."""
        pairs = list(zip(ids, records, strict=True))
        rules = [(rule, i, r.time, r.verdict.value) for i, r in pairs for rule in r.rules]
        if sign > 0:
            self._db.executemany("INSERT INTO audit_rule (rule, id, time, verdict) "
                                 "VALUES (?, ?, ?, ?)", rules)
            self._db.executemany("INSERT INTO audit_text (rowid, text) VALUES (?, ?)",
                                 [(i, search_text(r)) for i, r in pairs])
        else:
            self._db.executemany("DELETE FROM audit_rule WHERE rule = ? AND id = ?",
                                 [(rule, i) for rule, i, _, _ in rules])
            self._db.executemany("INSERT INTO audit_text (audit_text, rowid, text) "
                                 "VALUES ('delete', ?, ?)",
                                 [(i, search_text(r)) for i, r in pairs])
        for table, seconds in ROLLUPS:  # table names are literals
            slots = Counter((int(r.time // seconds), r.verdict.value,
                             r.api_key_name or _NO_KEY) for r in records)
            self._db.executemany(
                f"INSERT INTO {table} (slot, verdict, key_name, n) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO UPDATE SET n = n + excluded.n",
                [(*key, sign * n) for key, n in slots.items()])
            if sign < 0:
                self._db.execute(f"DELETE FROM {table} WHERE n <= 0")

    # -- writes ---------------------------------------------------------------------------

    def record(self, records: Sequence[AuditRecord]) -> None:
        if not records or self.retention == 0:
            return
        with self._lock:
            self._db.execute("BEGIN")
            try:
                ids = []
                for r in records:
                    cursor = self._db.execute(
                        "INSERT INTO audit (time, verdict, record, key_name) VALUES (?, ?, ?, ?)",
                        (r.time, r.verdict.value, r.to_json(), r.api_key_name))
                    assert cursor.lastrowid is not None
                    ids.append(cursor.lastrowid)
                self._index(ids, records, +1)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._inserts += len(records)
            if self._inserts >= _TRIM_EVERY:
                self._inserts = 0
                self._trim()

    def _trim(self) -> None:
        """Deletes the oldest rows beyond `retention`, a page at a time."""
        while True:
            rows = self._db.execute(
                "SELECT id, record FROM audit WHERE id <= (SELECT MAX(id) FROM audit) - ? "
                "ORDER BY id LIMIT ?", (self.retention, _PAGE)).fetchall()
            if not rows:
                return
            ids = [row_id for row_id, _ in rows]
            self._db.execute("BEGIN")
            self._index(ids, [AuditRecord.from_json(text) for _, text in rows], -1)
            self._db.execute("DELETE FROM audit WHERE id <= ?", (ids[-1],))
            self._db.execute("COMMIT")

    # -- reads ----------------------------------------------------------------------------
    #
    # Newest first means highest id first: ids follow insertion, which follows the records'
    # times, and every index below ends in the rowid, so each filter streams in id order and
    # a page stops after `limit` rows. Time bounds become an id range first (two index
    # seeks), then also filter exactly.

    def _id_range(self, since: float | None, until: float | None) -> tuple[int, int] | None:
        """Ids that can hold records in (since, until]; None when none can."""
        low, high = 0, 2**63 - 1
        if since is not None:
            row = self._db.execute("SELECT id FROM audit WHERE time > ? ORDER BY time LIMIT 1",
                                   (since - CLOCK_SKEW_S,)).fetchone()
            if row is None:
                return None
            low = int(row[0])
        if until is not None:
            row = self._db.execute("SELECT id FROM audit WHERE time <= ? ORDER BY time DESC "
                                   "LIMIT 1", (until + CLOCK_SKEW_S,)).fetchone()
            if row is None:
                return None
            high = int(row[0])
        return (low, high) if low <= high else None

    @staticmethod
    def _source(query: AuditQuery) -> tuple[str, str]:
        """FROM clause and the id column that orders it: a rule or a text search drives the
        scan from its own index."""
        if query.rule is not None:
            return "audit_rule r JOIN audit a ON a.id = r.id", "r.id"
        if query.words:
            return "audit_text t JOIN audit a ON a.id = t.rowid", "t.rowid"
        return "audit a", "a.id"

    def _where(self, query: AuditQuery, order: str,
               ids: tuple[int, int]) -> tuple[list[str], list[Any]]:
        clauses = [f"{order} BETWEEN ? AND ?"]
        params: list[Any] = [ids[0], ids[1]]
        if query.rule is not None:
            clauses.append("r.rule = ?")
            params.append(query.rule)
        if query.words:
            if query.rule is not None:
                clauses.append("a.id IN (SELECT rowid FROM audit_text WHERE audit_text "
                               "MATCH ?)")
            else:
                clauses.append("t.audit_text MATCH ?")
            params.append(query.fts_query())
        if query.verdict is not None:
            clauses.append("a.verdict = ?")
            params.append(query.verdict.value)
        if query.api_key_name is not None:
            clauses.append("a.key_name = ?")
            params.append(query.api_key_name)
        if query.since is not None:
            clauses.append("a.time > ?")
            params.append(query.since)
        if query.until is not None:
            clauses.append("a.time <= ?")
            params.append(query.until)
        return clauses, params

    def _select(self, query: AuditQuery, columns: str, descending: bool, limit: int,
                before: int | None = None, after: int | None = None) -> list[Any]:
        """Matching rows in id order, at most `limit`; call with the lock held."""
        ids = self._id_range(query.since, query.until)
        if ids is None:
            return []
        low, high = ids
        if before is not None:
            high = min(high, before - 1)
        if after is not None:
            low = max(low, after + 1)
        source, order = self._source(query)
        clauses, params = self._where(query, order, (low, high))
        direction = "DESC" if descending else "ASC"
        sql = (f"SELECT {columns} FROM {source} WHERE {' AND '.join(clauses)} "
               f"ORDER BY {order} {direction} LIMIT ?")  # fragments are literals above
        return self._db.execute(sql, [*params, limit]).fetchall()

    @staticmethod
    def _row_id(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise InvalidQueryError(f"cursor {text!r} is not an id of this audit log") \
                from None

    def page(self, query: AuditQuery, limit: int, before: str | None = None) -> AuditPage:
        cursor = None if before is None else self._row_id(before)
        with self._lock:
            rows = self._select(query, "a.id, a.record", True, limit + 1, before=cursor)
        records = [AuditRecord.from_json(text, str(row_id)) for row_id, text in rows[:limit]]
        more = len(rows) > limit
        return AuditPage(records, records[-1].id if more and records else None)

    def get(self, record_id: str, query: AuditQuery) -> AuditRecord | None:
        try:
            row_id = int(record_id)
        except ValueError:
            return None
        with self._lock:
            row = self._db.execute("SELECT record FROM audit WHERE id = ?", (row_id,)).fetchone()
        if row is None:
            return None
        record = AuditRecord.from_json(row[0], str(row_id))
        return record if query.matches(record) else None

    def iterate(self, query: AuditQuery) -> Iterator[AuditRecord]:
        after: int | None = None
        while True:
            with self._lock:
                rows = self._select(query, "a.id, a.record", False, _PAGE, after=after)
            for row_id, text in rows:
                yield AuditRecord.from_json(text, str(row_id))
            if len(rows) < _PAGE:
                return
            after = int(rows[-1][0])

    def time_bounds(self, query: AuditQuery) -> tuple[float, float] | None:
        # The first and the last match in id order: one index seek each.
        bounds = AuditQuery(verdict=query.verdict, since=query.since, until=query.until,
                            api_key_name=query.api_key_name)
        with self._lock:
            first = self._select(bounds, "a.time", False, 1)
            last = self._select(bounds, "a.time", True, 1)
        if not first or not last:
            return None
        return float(first[0][0]), float(last[0][0])

    def counts(self, query: AuditQuery, start: float, width: float,
               buckets: int) -> AuditCounts:
        stop = start + width * buckets
        result: list[Counter[str]] = [Counter() for _ in range(buckets)]
        rollup = next((
            (table, seconds) for table, seconds in ROLLUPS
            if all(value % seconds == 0 for value in (start, width))
            and all(bound is None or bound % seconds == 0
                    for bound in (query.since, query.until))), None)
        truncated = False
        with self._lock:
            if query.rule is None and not query.words and rollup:
                rows = self._rollup_counts(query, start, stop, width, *rollup)
                # Slots hold [t, t + slot); `since` is exclusive and `until` inclusive.
                for bound, sign in ((query.since, -1), (query.until, +1)):
                    if bound is not None and start <= bound < stop:
                        rows += [(int((bound - start) // width), verdict, sign * n)
                                 for verdict, n in self._at_time(query, bound)]
            elif query.rule is None and not query.words:
                rows = self._row_counts(query, start, stop, width)
            elif not query.words and query.api_key_name is None:
                rows = self._rule_counts(query, start, stop, width)
            else:
                # A text search: read the matches' times, newest first, bounded.
                floor = start - 1e-6  # since is exclusive; the first bucket starts at start
                ranged = AuditQuery(
                    verdict=query.verdict, rule=query.rule, text=query.text,
                    api_key_name=query.api_key_name,
                    since=floor if query.since is None else max(query.since, floor),
                    until=stop if query.until is None else min(query.until, stop))
                times = self._select(ranged, "a.time, a.verdict", True, CHART_SCAN_LIMIT + 1)
                truncated = len(times) > CHART_SCAN_LIMIT
                counted = Counter((int((t - start) // width), v)
                                  for t, v in times[:CHART_SCAN_LIMIT] if start <= t < stop)
                rows = [(bucket, verdict, n) for (bucket, verdict), n in counted.items()]
        for bucket, verdict, n in rows:
            index = int(bucket)
            if 0 <= index < buckets:
                result[index][verdict] += int(n)
        return AuditCounts(start, width, result, truncated)

    def _rollup_counts(self, query: AuditQuery, start: float, stop: float, width: float,
                       table: str, seconds: int) -> list[Any]:
        """Buckets and bounds of whole slots: the rollup answers exactly."""
        sql = (f"SELECT CAST((slot * ? - ?) / ? AS INTEGER), verdict, SUM(n) FROM {table} "
               "WHERE slot >= ? AND slot < ?")
        params: list[Any] = [seconds, start, width, int(start // seconds),
                             int(stop // seconds)]
        for clause, value in (("verdict = ?", query.verdict and query.verdict.value),
                              ("key_name = ?", query.api_key_name),
                              ("slot >= ?", None if query.since is None
                               else int(query.since // seconds)),
                              ("slot < ?", None if query.until is None
                               else int(query.until // seconds))):
            if value is not None:
                sql += f" AND {clause}"
                params.append(value)
        return self._db.execute(sql + " GROUP BY 1, 2", params).fetchall()

    def _at_time(self, query: AuditQuery, stamp: float) -> list[Any]:
        sql = "SELECT verdict, COUNT(*) FROM audit WHERE time = ?"
        params: list[Any] = [stamp]
        for clause, value in (("verdict = ?", query.verdict and query.verdict.value),
                              ("key_name = ?", query.api_key_name)):
            if value is not None:
                sql += f" AND {clause}"
                params.append(value)
        return self._db.execute(sql + " GROUP BY 1", params).fetchall()

    def _rule_counts(self, query: AuditQuery, start: float, stop: float,
                     width: float) -> list[Any]:
        """A rule's matches, counted from the rule table alone (it keeps time and verdict)."""
        sql = ("SELECT CAST((time - ?) / ? AS INTEGER), verdict, COUNT(*) FROM audit_rule "
               "WHERE rule = ? AND time >= ? AND time < ?")
        params: list[Any] = [start, width, query.rule, start, stop]
        ids = self._id_range(query.since, query.until)
        if ids is None:
            return []
        sql += " AND id BETWEEN ? AND ?"
        params.extend(ids)
        for clause, value in (("verdict = ?", query.verdict and query.verdict.value),
                              ("time > ?", query.since), ("time <= ?", query.until)):
            if value is not None:
                sql += f" AND {clause}"
                params.append(value)
        return self._db.execute(sql + " GROUP BY 1, 2", params).fetchall()

    def _row_counts(self, query: AuditQuery, start: float, stop: float,
                    width: float) -> list[Any]:
        """Short buckets: count the rows in range from the (time, verdict) index."""
        sql = ("SELECT CAST((time - ?) / ? AS INTEGER), verdict, COUNT(*) FROM audit "
               "WHERE time >= ? AND time < ?")
        params: list[Any] = [start, width, start, stop]
        for clause, value in (("verdict = ?", query.verdict and query.verdict.value),
                              ("key_name = ?", query.api_key_name), ("time > ?", query.since),
                              ("time <= ?", query.until)):
            if value is not None:
                sql += f" AND {clause}"
                params.append(value)
        return self._db.execute(sql + " GROUP BY 1, 2", params).fetchall()

    def rules(self) -> list[str]:
        # One index seek per distinct rule instead of a scan of every rule row.
        sql = ("WITH RECURSIVE seen(rule) AS (SELECT MIN(rule) FROM audit_rule UNION ALL "
               "SELECT (SELECT MIN(rule) FROM audit_rule WHERE rule > seen.rule) FROM seen "
               "WHERE seen.rule IS NOT NULL) SELECT rule FROM seen WHERE rule IS NOT NULL")
        with self._lock:
            return [row[0] for row in self._db.execute(sql)]

    def close(self) -> None:
        with self._lock:
            self._db.close()


# -- Redis (distributed mode) --------------------------------------------------------------


class RedisAuditStore:
    """Distributed mode: a capped Redis stream; entry ids are Redis-time milliseconds."""

    def __init__(self, client: redis.Redis, keys: Keys, retention: int) -> None:
        self.client = client
        self.key = keys.audit
        self.retention = retention

    def record(self, records: Sequence[AuditRecord]) -> None:
        if not records or self.retention == 0:
            return
        with translate_errors("audit write"), self.client.pipeline(transaction=False) as pipe:
            for record in records:
                pipe.xadd(self.key, {"r": record.to_json()}, maxlen=self.retention,
                          approximate=True)
            pipe.execute()

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
        while True:
            entries: Any
            with translate_errors("audit read"):
                if newest_first:
                    entries = self.client.xrevrange(self.key, max=high, min=low, count=_PAGE)
                else:
                    entries = self.client.xrange(self.key, min=low, max=high, count=_PAGE)
            yield [AuditRecord.from_json(fields[b"r"], as_text(entry_id))
                   for entry_id, fields in entries]
            if len(entries) < _PAGE:
                return
            last = as_text(entries[-1][0])
            # Exclusive bounds continue after the last entry seen.
            if newest_first:
                high = f"({last}"
            else:
                low = f"({last}"

    def page(self, query: AuditQuery, limit: int, before: str | None = None) -> AuditPage:
        if before is not None and not re.fullmatch(r"\d+-\d+", before):
            raise InvalidQueryError(f"cursor {before!r} is not an id of this audit log")
        found: list[AuditRecord] = []
        examined = 0
        last_seen: str | None = None
        for page in self._pages(query, newest_first=True, after=before):
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
            entries: Any = self.client.xrange(self.key, min=record_id, max=record_id, count=1)
        if not entries:
            return None
        entry_id, fields = entries[0]
        record = AuditRecord.from_json(fields[b"r"], as_text(entry_id))
        return record if query.matches(record) else None

    def iterate(self, query: AuditQuery) -> Iterator[AuditRecord]:
        for page in self._pages(query, newest_first=False):
            yield from (r for r in page if query.matches(r))

    def time_bounds(self, query: AuditQuery) -> tuple[float, float] | None:
        # The ends of the stream within the time range: a chart's extent, without a scan.
        ranged = AuditQuery(since=query.since, until=query.until)
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


def open_audit_store(settings: Settings) -> AuditStore:
    """The store of the configured mode."""
    if settings.redis_url:
        return RedisAuditStore(sync_client(settings), Keys.from_settings(settings),
                               settings.audit_retention)
    return SqliteAuditStore(Path(settings.data_dir) / DB_NAME, settings.audit_retention)


def parse_verdict(text: str | None) -> Verdict | None:
    if text is None:
        return None
    try:
        return Verdict(text)
    except ValueError:
        names = ", ".join(v.value for v in Verdict)
        raise ConfigError(f"unknown verdict {text!r}; expected one of: {names}") from None


# -- export ---------------------------------------------------------------------------------

CSV_COLUMNS = ("id", "time", "time_utc", "verdict", "rules", "violations", "error_type",
               "error", "api_key_name", "item_id", "policy", "entry", "program_hash", "input",
               "output", "program", "meta")
# A spreadsheet runs a cell that starts with one of these as a formula; programs are
# model-written, so such cells get a leading apostrophe (OWASP's CSV-injection advice).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def jsonl_lines(records: Iterable[AuditRecord]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record.model_dump(mode="json"), ensure_ascii=True,
                         separators=(",", ":")) + "\n"


def utc_text(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    # Lone surrogates cannot be written as UTF-8: show them as \udXXX escapes.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_lines(records: Iterable[AuditRecord]) -> Iterator[str]:
    """A header, then one CSV row per record (RFC 4180 quoting)."""

    class _Line:
        text = ""

        def write(self, chunk: str) -> None:
            self.text += chunk

    line = _Line()
    writer = csv.writer(line)
    writer.writerow(CSV_COLUMNS)
    yield line.text
    for r in records:
        line.text = ""
        violations = "; ".join(f"{v.rule}:{v.name}@{v.line}" for v in r.violations)
        writer.writerow([_cell(value) for value in (
            r.id, r.time, utc_text(r.time), r.verdict.value, " ".join(r.rules), violations,
            r.error_type, r.error, r.api_key_name, r.item_id, r.policy, r.entry,
            r.program_hash, r.input, r.output, r.program,
            json.dumps(r.meta, ensure_ascii=True) if r.meta is not None else None)])
        yield line.text


def export_records(settings: Settings, out: IO[str], query: AuditQuery,
                   fmt: str = "jsonl") -> int:
    """`azr-verify audit export`: every matching record, oldest first, as JSONL or CSV."""
    store = open_audit_store(settings)
    count = 0

    def counted() -> Iterator[AuditRecord]:
        nonlocal count
        for record in store.iterate(query):
            count += 1
            yield record

    try:
        for line in (csv_lines if fmt == "csv" else jsonl_lines)(counted()):
            out.write(line)
    finally:
        store.close()
    return count
