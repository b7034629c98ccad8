"""`azr-verify bench --audit`: the audit console and `/v1/audit` on a large audit log.

Fills a fresh SQLite audit log with synthetic records (a week of a training run: every
rejecting verdict, policy rules, searchable text), serves it with `azr-verify serve`, and times
what a person watching a run does: the first page with its chart, each filter, the next page,
one item. Beside it, the same questions as full scans of the same table (what the log cost
before it had indexes), timed in SQLite directly.
"""

from __future__ import annotations

import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from azr_verify.service.bench.served import served_process
from azr_verify.service.models import Verdict, Violation
from azr_verify.service.stores.audit.records import AuditRecord, program_hash
from azr_verify.service.stores.audit.sqlite import DB_NAME, SqliteAuditStore

RARE_WORD = "needlemarker"
RARE_EVERY = 100_000
SPAN_S = 7 * 86400
_BATCH = 2000
START_TIMEOUT_S = 120.0

_SHAPES: list[tuple[Verdict, str, str | None, str | None, tuple[tuple[str, str, int], ...]]] = [
    (Verdict.RUNTIME_ERROR, "def f(xs):\n    return xs[len(xs) + {k}]", "IndexError",
     "list index out of range", ()),
    (Verdict.RUNTIME_ERROR, "def f(a, b):\n    return a // (b - {k})", "ZeroDivisionError",
     "integer division or modulo by zero", ()),
    (Verdict.UNSAFE, "import subprocess\ndef f(cmd):\n    return subprocess.run(cmd, {k})",
     None, "rejected by policy azr: subprocess", (("import_denied", "subprocess", 1),)),
    (Verdict.UNSAFE, "def f(x):\n    return x.__class__.__mro__[{k}]", None,
     "rejected by policy azr: __class__", (("dunder_attribute", "__class__", 2),)),
    (Verdict.TIMEOUT, "def f(n):\n    while n != {k}:\n        n += 1\n    return n", None,
     "exceeded the time limit", ()),
    (Verdict.NONDETERMINISTIC, "def f(xs):\n    return list(set(xs))[{k} % 3]", None,
     "run 1 gave 'b'; run 2 gave 'a'", ()),
    (Verdict.NOT_LITERAL, "def f(n):\n    return (k for k in range(n + {k}))", None,
     "returned a generator", ()),
    (Verdict.SYNTAX_ERROR, "def f(x)\n    return x + {k}", None, "program: expected ':'", ()),
]
_WEIGHTS = [30, 18, 16, 8, 10, 6, 6, 6]


def synthetic_records(count: int, now: float, seed: int = 1) -> Iterator[list[AuditRecord]]:
    """`count` records over the week before `now`, oldest first, in batches."""
    rng = random.Random(seed)
    batch: list[AuditRecord] = []
    for k in range(count):
        verdict, template, error_type, error, violations = rng.choices(_SHAPES, _WEIGHTS)[0]
        program = template.format(k=k)
        if k % RARE_EVERY == 0:
            program += f"  # {RARE_WORD}"
        batch.append(AuditRecord(
            time=now - SPAN_S + SPAN_S * k / count, program_hash=program_hash(program),
            program=program, input=str(k % 97), entry="f", policy="azr", verdict=verdict,
            violations=[Violation(rule=r, name=n, line=line) for r, n, line in violations],
            error_type=error_type, error=error,
            api_key_name="trainer" if k % 4 else "evaluator", item_id=f"step{k // 64}-{k % 64}",
            meta={"step": k // 64, "role": "proposer" if k % 2 else "solver"}))
        if len(batch) == _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def fill(path: Path, count: int, now: float) -> float:
    """Writes the records through the real store; returns records per second."""
    store = SqliteAuditStore(path, retention=count)
    started = time.perf_counter()
    try:
        for batch in synthetic_records(count, now):
            store.record(batch)
    finally:
        store.close()
    return count / (time.perf_counter() - started)


@contextmanager
def served(data_dir: Path, logs: Path) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZR_VERIFY_")}
    env.update({"AZR_VERIFY_DATA_DIR": str(data_dir), "AZR_VERIFY_WORKERS": "1",
                "AZR_VERIFY_AUDIT_RETENTION": "100000000"})
    with served_process(env, logs, START_TIMEOUT_S) as (url, _process):
        yield url


def _timed(client: httpx.Client, path: str, rounds: int) -> list[float]:
    client.get(path).raise_for_status()  # warm: first use of each index page
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return times


def _naive(db: Path, now: float) -> list[tuple[str, float]]:
    """The same questions as full scans of the audit table (no rule table, no FTS, no
    per-minute counts): what each costs on this many rows."""
    queries = [
        ("chart, all time (GROUP BY over every row)",
         "SELECT CAST((time - ?) / 10800 AS INTEGER), verdict, COUNT(*) FROM audit "
         "GROUP BY 1, 2", (now - SPAN_S,)),
        ("text search, rare word (scan of the JSON)",
         "SELECT id FROM audit WHERE instr(record, ?) ORDER BY time DESC LIMIT 50",
         (RARE_WORD,)),
    ]
    connection = sqlite3.connect(db)
    rows = []
    try:
        for label, sql, params in queries:
            started = time.perf_counter()
            connection.execute(sql, params).fetchall()
            rows.append((label, (time.perf_counter() - started) * 1000))
    finally:
        connection.close()
    return rows


def run_audit_bench(records: int = 1_000_000, rounds: int = 5) -> str:
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="azr-audit-bench-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        db = data / DB_NAME
        insert_rate = fill(db, records, now)
        size_mb = sum(f.stat().st_size for f in data.iterdir()) / 1e6
        with served(data, Path(tmp)) as url, \
                httpx.Client(base_url=url, timeout=120) as client:
            first = client.get("/v1/audit", params={"limit": 50}).json()
            newest_id = first["records"][0]["id"]
            views = [
                ("/console: first page + chart (7 days)", "/console"),
                ("/console: verdict=timeout", "/console?verdict=timeout"),
                ("/console: rule=dunder_attribute", "/console?rule=dunder_attribute"),
                (f"/console: text search, rare word ({records // RARE_EVERY} hits)",
                 f"/console?q={RARE_WORD}"),
                ("/console: text search, 'ZeroDivisionError' (~18%)",
                 "/console?q=ZeroDivisionError"),
                ("/console: last 24 hours", "/console?range=24h"),
                ("/console: next page (cursor)", f"/console?before={first['next_cursor']}"),
                ("/console/items/{id}: one item", f"/console/items/{newest_id}"),
                ("/v1/audit?limit=100", "/v1/audit?limit=100"),
                ("/v1/audit?verdict=unsafe&q=subprocess",
                 "/v1/audit?verdict=unsafe&q=subprocess&limit=100"),
            ]
            measured = [(label, _timed(client, path, rounds)) for label, path in views]
        naive = _naive(db, now)
    lines = [f"audit log: {records:,} records over 7 days, {size_mb:,.0f} MB on disk "
             f"(tables and indexes); written at {insert_rate:,.0f} records/s through the "
             f"store; cpus={os.cpu_count()}",
             f"{'HTTP GET (azr-verify serve, embedded)':<58} {'median ms':>10} {'max ms':>8}"]
    for label, times in measured:
        lines.append(f"{label:<58} {statistics.median(times):>10.1f} {max(times):>8.1f}")
    lines.append(f"{'baseline: the same question as a full scan (SQLite)':<58} {'ms':>10}")
    for label, ms in naive:
        lines.append(f"{label:<58} {ms:>10.1f}")
    lines.append(f"(median and max of {rounds} requests after one warm-up request each)")
    return "\n".join(lines)
