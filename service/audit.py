"""The audit log: every rejected item (any verdict but accepted / wrong_output), with why.

One protocol, two stores: SQLite under `data_dir` in embedded mode, a Redis stream in
distributed mode (workers write, the API reads). Records are stored as ASCII JSON: model-written
programs may hold lone surrogates, which neither SQLite's UTF-8 nor Redis' clients accept raw.

Records are bounded (docs/design.md §9.6): program, input, output, error and meta are kept as
excerpts of at most `audit_excerpt_chars` characters, with the full texts' sha256 and length,
so a 12 MB program costs an audit row a few KB.

Reads go through one `AuditQuery` (verdict, time range, rule, text, API key) for `/v1/audit`,
the console and exports alike (docs/design.md §5); its `api_key_name` is the reader's scope,
set in one place (service/api/auditing.py). The SQLite store answers every filter from an
index (a rule table, a full-text index, per-minute and per-hour counts), so a page or a chart
stays fast on a million records; the Redis store keeps a stream per API key beside the stream
of every record, and filters while it scans, bounded by `SCAN_LIMIT` entries.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
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
from azr_verify.service.models import (
    CheckItem,
    CheckResult,
    PolicyName,
    RunResult,
    TestcaseItem,
    TestcaseResult,
    Verdict,
    Violation,
)
from azr_verify.service.queue import scripts
from azr_verify.service.queue.connection import as_text, sync_client, translate_errors
from azr_verify.service.queue.keys import Keys

log = logging.getLogger(__name__)

DB_NAME = "audit.sqlite3"
DEFAULT_EXCERPT_CHARS = 2048
MAX_ITEM_ID_CHARS = 256
MAX_VIOLATIONS = 20
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
# Records of programs run as scripts (docs/design.md §10): their `kind`, and the entry shown.
SCRIPT_KIND_TESTCASE = "testcase"
SCRIPT_KIND_RUN_CODE = "run_code"
SCRIPT_ENTRY = "__main__"


class AuditRecord(BaseModel):
    """One rejected item, with bounded excerpts of what was sent.

    Records written before excerpts existed hold the whole texts and no `*_chars`/`*_hash`.
    """

    id: str | None = Field(default=None, description="The store's id of the record (a page "
                           "cursor; the console's item link). Not part of the stored JSON.")
    time: float = Field(description="UNIX time it was checked.")
    program_hash: str = Field(description="sha256 of the whole program text.")
    program: str = Field(description="The program, or its first `audit_excerpt_chars` "
                         "characters (see `truncated`); empty for a comparison item.")
    program_chars: int | None = Field(None, description="Length of the whole program.")
    input: str = Field(description="The input, or an excerpt of it.")
    input_hash: str | None = Field(None, description="sha256 of the whole input.")
    input_chars: int | None = None
    output: str | None = Field(None, description="The expected output the client sent (or "
                               "an excerpt of it).")
    output_hash: str | None = Field(None, description="sha256 of the whole expected output.")
    output_chars: int | None = None
    entry: str
    policy: str
    verdict: Verdict
    violations: list[Violation] = Field(default_factory=list, description=f"The first "
                                        f"{MAX_VIOLATIONS} violations.")
    error_type: str | None = None
    error: str | None = None
    api_key_name: str | None = None
    item_id: str | int | None = None
    meta: dict[str, Any] | None = None
    truncated: list[str] = Field(default_factory=list, description="Fields kept as excerpts "
                                 "or dropped (meta) because they were over the limit; empty "
                                 "when the record is whole.")
    kind: str | None = Field(default=None, description="What was checked: absent for a triple; "
                             "`testcase` (a program and its stdin/stdout cases: input and "
                             "output are those of the case that decided) or `run_code`.")

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


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


program_hash = text_hash


def records_for(items: Sequence[CheckItem], results: Sequence[CheckResult],
                policy: PolicyName, key_name: str | None, now: float | None = None,
                excerpt_chars: int = DEFAULT_EXCERPT_CHARS) -> list[AuditRecord]:
    """Audit records for the rejected items of a checked batch."""
    stamp = time.time() if now is None else now
    return [_record(item, result, policy, key_name, stamp, excerpt_chars)
            for item, result in zip(items, results, strict=True) if result.verdict.is_rejection]


def testcase_records_for(items: Sequence[TestcaseItem], results: Sequence[TestcaseResult],
                         policy: PolicyName, key_name: str | None, now: float | None = None,
                         excerpt_chars: int = DEFAULT_EXCERPT_CHARS) -> list[AuditRecord]:
    """Audit records for the rejected programs of a test-case batch: the case that decided the
    program's verdict gives the input (its stdin), the output (its expected stdout) and the
    error type."""
    stamp = time.time() if now is None else now
    records = []
    for item, result in zip(items, results, strict=True):
        if not result.verdict.is_rejection:
            continue
        deciding = next((number for number, case in enumerate(result.cases)
                         if case.verdict is result.verdict), 0)
        case = item.cases[deciding]
        error_type = result.cases[deciding].error_type if result.cases else None
        records.append(_script_record(
            kind=SCRIPT_KIND_TESTCASE, program=item.program, stdin=case.input,
            expected=case.output, verdict=result.verdict, violations=result.violations,
            error_type=error_type, error=result.error, policy=policy, key_name=key_name,
            item_id=item.id, meta=item.meta, stamp=stamp, limit=excerpt_chars))
    return records


def run_code_record(program: str, stdin: str, result: RunResult, policy: PolicyName,
                    key_name: str | None, now: float | None = None,
                    excerpt_chars: int = DEFAULT_EXCERPT_CHARS) -> AuditRecord | None:
    """The audit record of a /run_code run that was rejected (anything but exit status 0)."""
    if not result.verdict.is_rejection:
        return None
    error = result.error
    if result.stderr:
        error = f"{error or ''}\nstderr (end): {result.stderr[-excerpt_chars:]}".lstrip()
    return _script_record(
        kind=SCRIPT_KIND_RUN_CODE, program=program, stdin=stdin, expected=None,
        verdict=result.verdict, violations=result.violations, error_type=result.error_type,
        error=error, policy=policy, key_name=key_name, item_id=None, meta=None,
        stamp=time.time() if now is None else now, limit=excerpt_chars)


def _script_record(*, kind: str, program: str, stdin: str, expected: str | None,
                   verdict: Verdict, violations: Sequence[Violation], error_type: str | None,
                   error: str | None, policy: PolicyName, key_name: str | None,
                   item_id: str | int | None, meta: dict[str, Any] | None, stamp: float,
                   limit: int) -> AuditRecord:
    truncated: list[str] = []

    def excerpt(name: str, text: str, chars: int = limit) -> str:
        if len(text) <= chars:
            return text
        truncated.append(name)
        return text[:chars]

    if isinstance(item_id, str):
        item_id = excerpt("item_id", item_id, MAX_ITEM_ID_CHARS)
    if len(violations) > MAX_VIOLATIONS:
        truncated.append("violations")
    return AuditRecord(
        time=stamp, kind=kind, program_hash=text_hash(program), program_chars=len(program),
        program=excerpt("program", program), input=excerpt("input", stdin),
        input_hash=text_hash(stdin), input_chars=len(stdin),
        output=None if expected is None else excerpt("output", expected),
        output_hash=None if expected is None else text_hash(expected),
        output_chars=None if expected is None else len(expected),
        entry=SCRIPT_ENTRY, policy=policy.value, verdict=verdict,
        violations=list(violations[:MAX_VIOLATIONS]), error_type=error_type,
        error=None if error is None else excerpt("error", error), api_key_name=key_name,
        item_id=item_id, meta=_bounded_meta(meta, limit, truncated), truncated=truncated)


def _record(item: CheckItem, result: CheckResult, policy: PolicyName, key_name: str | None,
            stamp: float, limit: int) -> AuditRecord:
    truncated: list[str] = []

    def excerpt(name: str, text: str, chars: int = limit) -> str:
        if len(text) <= chars:
            return text
        truncated.append(name)
        return text[:chars]

    item_id = item.id
    if isinstance(item_id, str):
        item_id = excerpt("item_id", item_id, MAX_ITEM_ID_CHARS)
    if len(result.violations) > MAX_VIOLATIONS:
        truncated.append("violations")
    program = item.program or ""  # "" for a comparison item: nothing ran
    return AuditRecord(
        time=stamp, program_hash=text_hash(program), program_chars=len(program),
        program=excerpt("program", program),
        input=excerpt("input", item.input), input_hash=text_hash(item.input),
        input_chars=len(item.input),
        output=None if item.output is None else excerpt("output", item.output),
        output_hash=None if item.output is None else text_hash(item.output),
        output_chars=None if item.output is None else len(item.output),
        entry=item.entry, policy=policy.value, verdict=result.verdict,
        violations=result.violations[:MAX_VIOLATIONS], error_type=result.error_type,
        error=None if result.error is None else excerpt("error", result.error),
        api_key_name=key_name, item_id=item_id,
        meta=_bounded_meta(item.meta, limit, truncated), truncated=truncated)


def _bounded_meta(meta: dict[str, Any] | None, limit: int,
                  truncated: list[str]) -> dict[str, Any] | None:
    """The client's meta if its JSON fits the excerpt limit; dropped (and said so) if not."""
    if meta is None:
        return None
    try:
        size = len(json.dumps(meta, ensure_ascii=True, separators=(",", ":")))
    except (ValueError, TypeError, RecursionError):  # deeper than JSON can write back
        size = limit + 1
    if size <= limit:
        return meta
    truncated.append("meta")
    return None


# -- queries ------------------------------------------------------------------------------


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
                    f"{direction} LIMIT ?", (low, high, _PAGE)).fetchall()  # literal order
            for row_id, text in rows:
                yield AuditRecord.from_json(text, str(row_id))
            if len(rows) < _PAGE:
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
                rows = self._select(query, "a.id, a.record", False, _PAGE, after=after)
            for row_id, text in rows:
                yield AuditRecord.from_json(text, str(row_id))
            if len(rows) < _PAGE:
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


# -- Redis (distributed mode) --------------------------------------------------------------


class RedisAuditStore:
    """Distributed mode: a capped Redis stream of every record, and a copy of each keyed
    record in its API key's stream under the same entry id, so a key's reads scan only its
    own records. Entry ids are Redis-time milliseconds."""

    def __init__(self, client: redis.Redis, keys: Keys, retention: int) -> None:
        self.client = client
        self.keys = keys
        self.key = keys.audit
        self.retention = retention
        self._add = client.register_script(scripts.AUDIT_ADD)

    def record(self, records: Sequence[AuditRecord]) -> None:
        if not records or self.retention == 0:
            return
        with translate_errors("audit write"), self.client.pipeline(transaction=False) as pipe:
            for record in records:
                streams = [self.key]
                if record.api_key_name is not None:
                    streams.append(self.keys.audit_of(record.api_key_name))
                self._add(keys=streams, args=[record.to_json(), self.retention], client=pipe)
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
                    entries = self.client.xrevrange(stream, max=high, min=low, count=_PAGE)
                else:
                    entries = self.client.xrange(stream, min=low, max=high, count=_PAGE)
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


def open_audit_store(settings: Settings, read_only: bool = False) -> AuditStore:
    """The store of the configured mode; `read_only`: an existing SQLite log, unchanged."""
    if settings.redis_url:
        return RedisAuditStore(sync_client(settings), Keys.from_settings(settings),
                               settings.audit_retention)
    return SqliteAuditStore(Path(settings.data_dir) / DB_NAME, settings.audit_retention,
                            read_only=read_only)


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
               "error", "api_key_name", "item_id", "policy", "entry", "program_hash",
               "program_chars", "input_hash", "input_chars", "output_hash", "output_chars",
               "truncated", "input", "output", "program", "meta")
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
            r.program_hash, r.program_chars, r.input_hash, r.input_chars, r.output_hash,
            r.output_chars, " ".join(r.truncated), r.input, r.output, r.program,
            json.dumps(r.meta, ensure_ascii=True) if r.meta is not None else None)])
        yield line.text


def export_records(settings: Settings, out: IO[str], query: AuditQuery,
                   fmt: str = "jsonl") -> int:
    """`azr-verify audit export` from the store itself (every key's records): every matching
    record, oldest first, as JSONL or CSV. The store is opened read-only."""
    store = open_audit_store(settings, read_only=True)
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
