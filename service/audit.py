"""The audit log: every rejected item (any verdict but accepted / wrong_output), with why.

One protocol, two stores: SQLite under `data_dir` in embedded mode, a Redis stream in
distributed mode (workers write, the API reads). Records are stored as ASCII JSON: model-written
programs may hold lone surrogates, which neither SQLite's UTF-8 nor Redis' clients accept raw.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
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
# Rows trimmed to `audit_retention` once per this many inserts (trimming scans an index).
_TRIM_EVERY = 1000
_PAGE = 500
CLOCK_SKEW_S = 300


class AuditRecord(BaseModel):
    """One rejected item."""

    time: float = Field(description="UNIX time it was checked.")
    program_hash: str = Field(description="sha256 of the program text.")
    program: str
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
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=True,
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> AuditRecord:
        # json.loads, not model_validate_json: pydantic's parser refuses escaped lone
        # surrogates, which Python's accepts (and the record was written by Python).
        return cls.model_validate(json.loads(text))


def program_hash(program: str) -> str:
    return hashlib.sha256(program.encode("utf-8", "surrogatepass")).hexdigest()


def records_for(items: Sequence[CheckItem], results: Sequence[CheckResult],
                policy: PolicyName, key_name: str | None,
                now: float | None = None) -> list[AuditRecord]:
    """Audit records for the rejected items of a checked batch."""
    stamp = time.time() if now is None else now
    return [
        AuditRecord(time=stamp, program_hash=program_hash(item.program), program=item.program,
                    input=item.input, output=item.output, entry=item.entry, policy=policy.value,
                    verdict=result.verdict, violations=result.violations,
                    error_type=result.error_type, error=result.error, api_key_name=key_name,
                    item_id=item.id, meta=item.meta)
        for item, result in zip(items, results, strict=True) if result.verdict.is_rejection
    ]


class AuditStore(Protocol):
    def record(self, records: Sequence[AuditRecord]) -> None: ...

    def query(self, verdict: Verdict | None, since: float | None,
              limit: int) -> list[AuditRecord]:
        """The newest `limit` records after `since`, newest first."""
        ...

    def iterate(self, verdict: Verdict | None, since: float | None) -> Iterator[AuditRecord]:
        """Every matching record, oldest first (for export)."""
        ...

    def close(self) -> None: ...


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
        self._db.execute("CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, "
                         "time REAL NOT NULL, verdict TEXT NOT NULL, record TEXT NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS audit_time ON audit (time)")
        self._db.execute("CREATE INDEX IF NOT EXISTS audit_verdict_time ON audit (verdict, time)")

    def record(self, records: Sequence[AuditRecord]) -> None:
        if not records or self.retention == 0:
            return
        rows = [(r.time, r.verdict.value, r.to_json()) for r in records]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO audit (time, verdict, record) VALUES (?, ?, ?)",
                                 rows)
            self._db.execute("COMMIT")
            self._inserts += len(rows)
            if self._inserts >= _TRIM_EVERY:
                self._inserts = 0
                self._db.execute("DELETE FROM audit WHERE id <= "
                                 "(SELECT MAX(id) FROM audit) - ?", (self.retention,))

    def _select(self, verdict: Verdict | None, since: float | None, order: str,
                limit: int | None, after_id: int | None = None) -> list[tuple[int, str]]:
        clauses: list[str] = []
        params: list[Any] = []
        if verdict is not None:
            clauses.append("verdict = ?")
            params.append(verdict.value)
        if since is not None:
            clauses.append("time > ?")
            params.append(since)
        if after_id is not None:
            clauses.append("id > ?")
            params.append(after_id)
        sql = "SELECT id, record FROM audit"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += f" ORDER BY id {order}"  # order is one of two literals, never user text
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._lock:
            return list(self._db.execute(sql, params))

    def query(self, verdict: Verdict | None, since: float | None,
              limit: int) -> list[AuditRecord]:
        rows = self._select(verdict, since, "DESC", limit)
        return [AuditRecord.from_json(record) for _, record in rows]

    def iterate(self, verdict: Verdict | None, since: float | None) -> Iterator[AuditRecord]:
        last: int | None = None
        while True:
            rows = self._select(verdict, since, "ASC", _PAGE, after_id=last)
            for row_id, record in rows:
                last = row_id
                yield AuditRecord.from_json(record)
            if len(rows) < _PAGE:
                return

    def close(self) -> None:
        with self._lock:
            self._db.close()


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

    def _pages(self, since: float | None, newest_first: bool) -> Iterator[list[AuditRecord]]:
        # Stream ids are Redis' clock, record times the workers': start early enough for any
        # plausible skew, then filter on the record's own time.
        low = "-" if since is None else str(max(0, int((since - CLOCK_SKEW_S) * 1000)))
        high = "+"
        while True:
            entries: Any
            with translate_errors("audit read"):
                if newest_first:
                    entries = self.client.xrevrange(self.key, max=high, min=low, count=_PAGE)
                else:
                    entries = self.client.xrange(self.key, min=low, max=high, count=_PAGE)
            yield [AuditRecord.from_json(fields[b"r"]) for _, fields in entries]
            if len(entries) < _PAGE:
                return
            last = as_text(entries[-1][0])
            # Exclusive bounds continue after the last entry seen.
            if newest_first:
                high = f"({last}"
            else:
                low = f"({last}"

    @staticmethod
    def _matches(record: AuditRecord, verdict: Verdict | None, since: float | None) -> bool:
        return (verdict is None or record.verdict is verdict) and \
            (since is None or record.time > since)

    def query(self, verdict: Verdict | None, since: float | None,
              limit: int) -> list[AuditRecord]:
        found: list[AuditRecord] = []
        for page in self._pages(since, newest_first=True):
            found.extend(r for r in page if self._matches(r, verdict, since))
            if len(found) >= limit:
                break
        return found[:limit]

    def iterate(self, verdict: Verdict | None, since: float | None) -> Iterator[AuditRecord]:
        for page in self._pages(since, newest_first=False):
            yield from (r for r in page if self._matches(r, verdict, since))

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


def export_jsonl(settings: Settings, out: IO[str], verdict: str | None,
                 since: float | None) -> int:
    """`azr-verify audit export`: every matching record as one JSON line, oldest first."""
    wanted = parse_verdict(verdict)
    store = open_audit_store(settings)
    count = 0
    try:
        for record in store.iterate(wanted, since):
            out.write(record.to_json() + "\n")
            count += 1
    finally:
        store.close()
    return count
