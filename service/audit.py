"""The audit log: every rejected item (any verdict but accepted / wrong_output), with why.

One protocol, two stores: SQLite under `data_dir` in embedded mode, Redis streams in distributed
mode (workers write, the API reads). Records are stored as ASCII JSON: model-written programs
may hold lone surrogates, which neither SQLite's UTF-8 nor Redis' clients accept raw.

Records are bounded (docs/design.md §9.7): program, input, output, error and meta are kept as
excerpts of at most `audit_excerpt_chars` characters, with the full texts' sha256 and length,
so a 12 MB program costs an audit row a few KB. Readers are scoped (`AuditScope`): an API key
reads only its own records, an admin key or a service without keys reads all of them.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import redis
from pydantic import BaseModel, Field

from azr_verify.service.config import Settings
from azr_verify.service.errors import ConfigError
from azr_verify.service.models import CheckItem, CheckResult, PolicyName, Verdict, Violation
from azr_verify.service.queue.connection import as_text, sync_client, translate_errors
from azr_verify.service.queue.keys import Keys

DB_NAME = "audit.sqlite3"
DEFAULT_EXCERPT_CHARS = 2048
MAX_ITEM_ID_CHARS = 256
MAX_VIOLATIONS = 20
# Rows trimmed to `audit_retention` once per this many inserts (trimming scans an index).
_TRIM_EVERY = 1000
_PAGE = 500
CLOCK_SKEW_S = 300


class AuditRecord(BaseModel):
    """One rejected item, with bounded excerpts of what was sent."""

    time: float = Field(description="UNIX time it was checked.")
    program_hash: str = Field(description="sha256 of the whole program text.")
    program: str = Field(description="The program, or its first `audit_excerpt_chars` "
                         "characters (see `truncated`).")
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
                                 "or dropped (meta) because they were over the limit.")

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=True,
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> AuditRecord:
        # json.loads, not model_validate_json: pydantic's parser refuses escaped lone
        # surrogates, which Python's accepts (and the record was written by Python).
        return cls.model_validate(json.loads(text))


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
    return AuditRecord(
        time=stamp, program_hash=text_hash(item.program), program_chars=len(item.program),
        program=excerpt("program", item.program),
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


# --- reading -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditScope:
    """Whose records a reader may see: one API key's, or everyone's."""

    key_name: str | None = None
    everyone: bool = False

    @classmethod
    def all_keys(cls) -> AuditScope:
        return cls(everyone=True)

    @classmethod
    def of_key(cls, key_name: str | None) -> AuditScope:
        return cls(key_name=key_name)

    def allows(self, record: AuditRecord) -> bool:
        return self.everyone or record.api_key_name == self.key_name


@dataclass(frozen=True)
class AuditQuery:
    verdict: Verdict | None = None
    since: float | None = None  # only records with time > since
    limit: int = 100
    oldest_first: bool = False
    cursor: str | None = None  # continue after the record a previous page ended with


@dataclass(frozen=True)
class AuditPage:
    records: list[AuditRecord]
    next_cursor: str | None  # None: there is nothing after this page


class AuditStore(Protocol):
    def record(self, records: Sequence[AuditRecord]) -> None: ...

    def page(self, scope: AuditScope, query: AuditQuery) -> AuditPage:
        """Up to `query.limit` records in `scope`, newest first unless `oldest_first`."""
        ...

    def close(self) -> None: ...


def iterate(store: AuditStore, scope: AuditScope, verdict: Verdict | None,
            since: float | None, page_size: int = _PAGE) -> Iterator[AuditRecord]:
    """Every matching record, oldest first (for export)."""
    cursor: str | None = None
    while True:
        page = store.page(scope, AuditQuery(verdict=verdict, since=since, limit=page_size,
                                            oldest_first=True, cursor=cursor))
        yield from page.records
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


class SqliteAuditStore:
    """Embedded mode. One connection guarded by a lock: writes come from request threads.

    `read_only` opens an existing database without creating or changing anything (export).
    """

    def __init__(self, path: Path, retention: int, read_only: bool = False) -> None:
        self.retention = retention
        self._lock = threading.Lock()
        self._inserts = 0
        if read_only:
            if not path.is_file():
                raise ConfigError(f"no audit database at {path}; point AZR_VERIFY_DATA_DIR (or "
                                  "--data-dir) at the service's data directory, or read a "
                                  "running service with --url")
            self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                       check_same_thread=False, isolation_level=None)
            self._has_key_column = "key_name" in self._columns()
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, "
                         "time REAL NOT NULL, verdict TEXT NOT NULL, record TEXT NOT NULL, "
                         "key_name TEXT)")
        if "key_name" not in self._columns():  # a database written before per-key reading
            self._db.execute("ALTER TABLE audit ADD COLUMN key_name TEXT")
            self._db.execute("UPDATE audit SET key_name = json_extract(record, "
                             "'$.api_key_name')")
        self._has_key_column = True
        self._db.execute("CREATE INDEX IF NOT EXISTS audit_time ON audit (time)")
        self._db.execute("CREATE INDEX IF NOT EXISTS audit_verdict_time ON audit (verdict, time)")
        self._db.execute("CREATE INDEX IF NOT EXISTS audit_key ON audit (key_name, id)")

    def _columns(self) -> set[str]:
        return {row[1] for row in self._db.execute("PRAGMA table_info(audit)")}

    def record(self, records: Sequence[AuditRecord]) -> None:
        if not records or self.retention == 0:
            return
        rows = [(r.time, r.verdict.value, r.to_json(), r.api_key_name) for r in records]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO audit (time, verdict, record, key_name) "
                                 "VALUES (?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")
            self._inserts += len(rows)
            if self._inserts >= _TRIM_EVERY:
                self._inserts = 0
                self._db.execute("DELETE FROM audit WHERE id <= "
                                 "(SELECT MAX(id) FROM audit) - ?", (self.retention,))

    def page(self, scope: AuditScope, query: AuditQuery) -> AuditPage:
        clauses: list[str] = []
        params: list[Any] = []
        if not scope.everyone:
            if self._has_key_column:
                clauses.append("key_name IS ?")
            else:
                clauses.append("json_extract(record, '$.api_key_name') IS ?")
            params.append(scope.key_name)
        if query.verdict is not None:
            clauses.append("verdict = ?")
            params.append(query.verdict.value)
        if query.since is not None:
            clauses.append("time > ?")
            params.append(query.since)
        if query.cursor is not None:
            clauses.append("id > ?" if query.oldest_first else "id < ?")
            params.append(_sqlite_cursor(query.cursor))
        sql = "SELECT id, record FROM audit"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        # Both orders are literals, never user text.
        sql += " ORDER BY id ASC LIMIT ?" if query.oldest_first else " ORDER BY id DESC LIMIT ?"
        params.append(query.limit)
        with self._lock:
            rows = list(self._db.execute(sql, params))
        records = [AuditRecord.from_json(record) for _, record in rows]
        next_cursor = str(rows[-1][0]) if len(rows) == query.limit else None
        return AuditPage(records, next_cursor)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _sqlite_cursor(cursor: str) -> int:
    try:
        return int(cursor)
    except ValueError:
        raise ConfigError(f"invalid audit cursor {cursor!r}") from None


class RedisAuditStore:
    """Distributed mode: capped Redis streams, one with every record and one per API key.

    Entry ids are Redis-time milliseconds; a cursor is an entry id.
    """

    def __init__(self, client: redis.Redis, keys: Keys, retention: int) -> None:
        self.client = client
        self.keys = keys
        self.key = keys.audit
        self.retention = retention

    def record(self, records: Sequence[AuditRecord]) -> None:
        if not records or self.retention == 0:
            return
        with translate_errors("audit write"), self.client.pipeline(transaction=False) as pipe:
            for record in records:
                fields = {"r": record.to_json()}
                pipe.xadd(self.key, fields, maxlen=self.retention, approximate=True)  # type: ignore[arg-type]
                if record.api_key_name is not None:
                    pipe.xadd(self.keys.audit_of(record.api_key_name), fields,  # type: ignore[arg-type]
                              maxlen=self.retention, approximate=True)
            pipe.execute()

    def page(self, scope: AuditScope, query: AuditQuery) -> AuditPage:
        stream = self.key if scope.everyone or scope.key_name is None else \
            self.keys.audit_of(scope.key_name)
        # Stream ids are Redis' clock, record times the workers': start early enough for any
        # plausible skew, then filter on the record's own time.
        low = "-" if query.since is None else \
            str(max(0, int((query.since - CLOCK_SKEW_S) * 1000)))
        high = "+"
        if query.cursor is not None:
            _check_stream_id(query.cursor)
            if query.oldest_first:
                low = f"({query.cursor}"
            else:
                high = f"({query.cursor}"
        found: list[AuditRecord] = []
        while True:
            entries: Any
            with translate_errors("audit read"):
                if query.oldest_first:
                    entries = self.client.xrange(stream, min=low, max=high, count=_PAGE)
                else:
                    entries = self.client.xrevrange(stream, max=high, min=low, count=_PAGE)
            for entry_id, fields in entries:
                record = AuditRecord.from_json(fields[b"r"])
                if scope.allows(record) and _matches(record, query):
                    found.append(record)
                    if len(found) == query.limit:
                        return AuditPage(found, as_text(entry_id))
            if len(entries) < _PAGE:
                return AuditPage(found, None)
            # Exclusive bounds continue after the last entry seen.
            last = as_text(entries[-1][0])
            if query.oldest_first:
                low = f"({last}"
            else:
                high = f"({last}"

    def close(self) -> None:
        self.client.close()


def _matches(record: AuditRecord, query: AuditQuery) -> bool:
    return (query.verdict is None or record.verdict is query.verdict) and \
        (query.since is None or record.time > query.since)


def _check_stream_id(cursor: str) -> None:
    milliseconds, _, sequence = cursor.partition("-")
    if not (milliseconds.isdigit() and (not sequence or sequence.isdigit())):
        raise ConfigError(f"invalid audit cursor {cursor!r}")


def open_audit_store(settings: Settings, read_only: bool = False) -> AuditStore:
    """The store of the configured mode."""
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


def export_jsonl(settings: Settings, out: IO[str], verdict: str | None,
                 since: float | None) -> int:
    """`azr-verify audit export` from the store itself: every matching record, oldest first."""
    wanted = parse_verdict(verdict)
    store = open_audit_store(settings, read_only=True)
    count = 0
    try:
        for record in iterate(store, AuditScope.all_keys(), wanted, since):
            out.write(record.to_json() + "\n")
            count += 1
    finally:
        store.close()
    return count
