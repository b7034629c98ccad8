"""The audit store of embedded mode: SQLite under `data_dir` (docs/design.md §5).

Every filter is answered from an index (a rule table, a contentless full-text index, per-minute
and per-hour counts), so a page or a chart stays fast on a million records. Schema 1 files are
upgraded in place when the service opens them and read as they are by the read-only `audit
export`.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from azr_verify.service.errors import ConfigError, InvalidQueryError
from azr_verify.service.stores.audit.query import (
    CLOCK_SKEW_S,
    READ_PAGE,
    AuditCounts,
    AuditPage,
    AuditQuery,
    search_text,
)
from azr_verify.service.stores.audit.records import (
    AuditRecord,
)

log = logging.getLogger(__name__)

DB_NAME = "audit.sqlite3"
# Bumped whenever the tables or `search_text` change: the full-text index is contentless, so
# deleting a row re-derives the text it indexed and must derive exactly the same text.
SCHEMA_VERSION = 2
# Rows trimmed to `audit_retention` once per this many inserts (trimming scans an index).
_TRIM_EVERY = 1000
MINUTE_S = 60
# Pre-counted records per (slot, verdict, key): a chart of whole slots reads these instead of
# the rows. The coarsest rollup that divides the chart's buckets is used.
ROLLUPS = (("audit_hour", 3600), ("audit_minute", MINUTE_S))
# The most matches of a rule or text search the SQLite store reads for one chart.
CHART_SCAN_LIMIT = 20_000


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
# Schema 1's, and audit_key of the first per-key reads (a key_name column at schema 1).
_OLD_INDEXES = ("audit_time", "audit_verdict_time", "audit_key")
_NO_KEY = ""  # the rollups' key_name for records without one (it is part of the key)


class SqliteAuditStore:
    """Embedded mode. One connection guarded by a lock: writes come from request threads.

    `read_only` opens an existing database without creating or changing anything (`audit
    export`): a missing file is an error, never a new empty log, and an older schema is read
    as it is, by scanning the rows (upgrading it is the service's job).
    """

    def __init__(self, path: Path, retention: int, read_only: bool = False) -> None:
        self.path = path
        self.retention = retention
        self._lock = threading.Lock()
        self._inserts = 0
        self._legacy_version: int | None = None  # set when reading an older schema as it is
        try:
            if read_only:
                self._open_read_only(path)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate(path)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"cannot open the audit database {path}: {exc}") from None

    def _open_read_only(self, path: Path) -> None:
        if not path.is_file():
            raise ConfigError(f"no audit database at {path}; point AZR_VERIFY_DATA_DIR (or "
                              "--data-dir) at the service's data directory, or read a "
                              "running service with --url")
        self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                   check_same_thread=False, isolation_level=None)
        version = self._version(path)
        if "record" not in self._columns():
            raise ConfigError(f"{path} is not an azr-verify audit database")
        if version < SCHEMA_VERSION:
            self._legacy_version = version

    # -- schema ---------------------------------------------------------------------------

    def _version(self, path: Path) -> int:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise ConfigError(f"{path} has audit schema {version}; this azr-verify reads "
                              f"{SCHEMA_VERSION} and older")
        return version

    def _columns(self) -> set[str]:
        return {row[1] for row in self._db.execute("PRAGMA table_info(audit)")}

    def _migrate(self, path: Path) -> None:
        version = self._version(path)
        columns = self._columns()
        self._db.execute("BEGIN")
        try:
            self._upgrade(path, version, columns)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _upgrade(self, path: Path, version: int, columns: set[str]) -> None:
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
                                    "LIMIT ?", (last, READ_PAGE)).fetchall()
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
                "ORDER BY id LIMIT ?", (self.retention, READ_PAGE)).fetchall()
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

    def page(self, query: AuditQuery, limit: int, cursor: str | None = None,
             oldest_first: bool = False) -> AuditPage:
        row = None if cursor is None else self._row_id(cursor)
        before, after = (None, row) if oldest_first else (row, None)
        if self._legacy_version is not None:
            found = list(itertools.islice(
                (r for r in self._scan(not oldest_first, before, after) if query.matches(r)),
                limit + 1))
        else:
            with self._lock:
                rows = self._select(query, "a.id, a.record", not oldest_first, limit + 1,
                                    before=before, after=after)
            found = [AuditRecord.from_json(text, str(row_id)) for row_id, text in rows]
        records = found[:limit]
        more = len(found) > limit
        return AuditPage(records, records[-1].id if more and records else None)

    def _scan(self, descending: bool, before: int | None = None,
              after: int | None = None) -> Iterator[AuditRecord]:
        """Every row in id order, a page at a time: how an older schema is read read-only."""
        low = 0 if after is None else after
        high = 2**63 - 1 if before is None else before
        direction = "DESC" if descending else "ASC"
        while True:
            with self._lock:
                rows = self._db.execute(
                    f"SELECT id, record FROM audit WHERE id > ? AND id < ? ORDER BY id "
                    f"{direction} LIMIT ?", (low, high, READ_PAGE)).fetchall()  # literal order
            for row_id, text in rows:
                yield AuditRecord.from_json(text, str(row_id))
            if len(rows) < READ_PAGE:
                return
            if descending:
                high = int(rows[-1][0])
            else:
                low = int(rows[-1][0])

    def _require_indexes(self, what: str) -> None:
        if self._legacy_version is not None:
            raise ConfigError(f"{self.path} has audit schema {self._legacy_version}, read "
                              f"as it is: {what} needs schema {SCHEMA_VERSION}; start the "
                              "service on it once to upgrade it")

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
        if self._legacy_version is not None:
            yield from (r for r in self._scan(descending=False) if query.matches(r))
            return
        after: int | None = None
        while True:
            with self._lock:
                rows = self._select(query, "a.id, a.record", False, READ_PAGE, after=after)
            for row_id, text in rows:
                yield AuditRecord.from_json(text, str(row_id))
            if len(rows) < READ_PAGE:
                return
            after = int(rows[-1][0])

    def time_bounds(self, query: AuditQuery) -> tuple[float, float] | None:
        self._require_indexes("a time range")
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
        self._require_indexes("counting")
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
        self._require_indexes("the rule list")
        # One index seek per distinct rule instead of a scan of every rule row.
        sql = ("WITH RECURSIVE seen(rule) AS (SELECT MIN(rule) FROM audit_rule UNION ALL "
               "SELECT (SELECT MIN(rule) FROM audit_rule WHERE rule > seen.rule) FROM seen "
               "WHERE seen.rule IS NOT NULL) SELECT rule FROM seen WHERE rule IS NOT NULL")
        with self._lock:
            return [row[0] for row in self._db.execute(sql)]

    def close(self) -> None:
        with self._lock:
            self._db.close()
