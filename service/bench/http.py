"""`azr-verify bench --http`: the HTTP service measured against the engine, in one run.

- engine: `Engine.check` in this process, batches of 256 (the reference rate) and one item at a
  time (the floor under any request latency);
- HTTP embedded: `azr-verify serve` as a separate process, POST /v1/check with batches of 256
  from one and from two concurrent clients, then single-item requests (p50 / p99 latency),
  in rounds interleaved with the engine's;
- HTTP embedded under load: single-item requests from one client while another client keeps
  the service saturated with batches of `max_items` (what a trainer's reward call meets when it
  shares the service with a bulk job), beside the same requests on the idle service;
- HTTP distributed: a throwaway redis-server, the API and 1 then 2 `azr-verify worker`
  processes on this machine, the same batches.

Every phase uses programs no earlier phase used, so no number is a cache hit.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from azr_verify.service.bench.engine import trivial_items
from azr_verify.service.bench.rows import Row, best_of
from azr_verify.service.bench.served import (
    START_TIMEOUT_S,
    child_env,
    cli_argv,
    managed_process,
    redis_server,
    served_api,
)
from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine
from azr_verify.service.models import CheckItem, PolicyName, Verdict

BATCH = 256
# Offsets that keep each phase's programs distinct from every other phase's.
_PHASE_OFFSET = 10_000_000


class _Phases:
    def __init__(self) -> None:
        self.n = 0

    def items(self, count: int, runs: int) -> list[CheckItem]:
        self.n += 1
        return trivial_items(count, runs, offset=self.n * _PHASE_OFFSET)


def _payload(items: Sequence[CheckItem]) -> bytes:
    return json.dumps({"items": [i.model_dump(mode="json", exclude_none=True) for i in items],
                       "policy": PolicyName.AZR.value}).encode()


def _check_accepted(results: list[dict[str, Any]]) -> None:
    bad = [r for r in results if r["verdict"] != Verdict.ACCEPTED.value]
    if bad:
        raise RuntimeError(f"benchmark item not accepted: {bad[0]}")


# -- measurements ---------------------------------------------------------------------------


def _post(client: httpx.Client, body: bytes) -> list[dict[str, Any]]:
    response = client.post("/v1/check", content=body,
                           headers={"Content-Type": "application/json"})
    response.raise_for_status()
    results: list[dict[str, Any]] = response.json()["results"]
    _check_accepted(results)
    return results


def engine_batches(engine: Engine, phases: _Phases, triples: int, runs: int) -> Row:
    items = phases.items(triples, runs)
    started = time.perf_counter()
    for start in range(0, triples, BATCH):
        results = engine.check(items[start:start + BATCH], PolicyName.AZR)
        _check_accepted([r.model_dump(mode="json") for r in results])
    return Row(f"engine (in process), batches of {BATCH}", triples,
               time.perf_counter() - started)


def engine_single(engine: Engine, phases: _Phases, count: int, runs: int) -> Row:
    """One item at a time: the floor under any HTTP latency."""
    latencies = []
    started = time.perf_counter()
    for item in phases.items(count, runs):
        sent = time.perf_counter()
        _check_accepted([engine.check([item], PolicyName.AZR)[0].model_dump(mode="json")])
        latencies.append((time.perf_counter() - sent) * 1000)
    return Row("engine (in process), single item", count, time.perf_counter() - started,
               latencies)


def http_batches(url: str, what: str, phases: _Phases, triples: int, runs: int,
                 clients: int) -> Row:
    items = phases.items(triples, runs)
    bodies = [_payload(items[s:s + BATCH]) for s in range(0, triples, BATCH)]

    def send(share: list[bytes]) -> None:
        with httpx.Client(base_url=url, timeout=300) as client:
            for body in share:
                _post(client, body)

    shares = [bodies[k::clients] for k in range(clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, shares))
    return Row(f"{what}, batches of {BATCH}, {clients} client(s)", triples,
               time.perf_counter() - started)


def http_single(url: str, what: str, phases: _Phases, count: int, runs: int) -> Row:
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        started = time.perf_counter()
        for item in phases.items(count, runs):
            sent = time.perf_counter()
            _post(client, _payload([item]))
            latencies.append((time.perf_counter() - sent) * 1000)
    return Row(f"{what}, single item", count, time.perf_counter() - started, latencies)


def http_single_under_load(url: str, what: str, phases: _Phases, count: int, runs: int,
                           bulk_items: int) -> Row:
    """Single-item requests while a second client keeps every zygote busy with batches of
    `bulk_items`; the measurement starts once the service reports every zygote busy."""
    bulk_bodies = [_payload(phases.items(bulk_items, runs)) for _ in range(4)]
    singles = phases.items(count, runs)
    stop = threading.Event()
    failures: list[BaseException] = []

    def bulk() -> None:
        try:
            with httpx.Client(base_url=url, timeout=600) as client:
                for body in bulk_bodies:
                    if stop.is_set():
                        return
                    _post(client, body)
        except BaseException as error:  # reported by the measuring thread
            failures.append(error)

    loader = threading.Thread(target=bulk, name="bench-bulk-client", daemon=True)
    loader.start()
    latencies: list[float] = []
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            while not failures and loader.is_alive():
                executors = client.get("/v1/info").json()["executors"]
                if executors["states"].get("busy", 0) >= executors["zygotes"]:
                    break
                time.sleep(0.01)
            started = time.perf_counter()
            for item in singles:
                if not loader.is_alive():
                    raise RuntimeError("the bulk client sent all its batches before the "
                                       "single-item requests were done: the latencies would "
                                       "not be under load")
                sent = time.perf_counter()
                _post(client, _payload([item]))
                latencies.append((time.perf_counter() - sent) * 1000)
            seconds = time.perf_counter() - started
    finally:
        stop.set()
        loader.join()
    if failures:
        raise RuntimeError(f"the bulk client failed: {failures[0]!r}")
    return Row(f"{what}, single item, another client's batches of {bulk_items} running",
               count, seconds, latencies)


def _warm(url: str, phases: _Phases, runs: int) -> None:
    with httpx.Client(base_url=url, timeout=300) as client:
        _post(client, _payload(phases.items(64, runs)))
        for item in phases.items(20, runs):
            _post(client, _payload([item]))


def _wait_workers(url: str, count: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        info = httpx.get(f"{url}/v1/info", timeout=5).json()
        if info["executors"]["processes"] >= count:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{count} workers did not report in time")


def bench_distributed(settings: Settings, redis_binary: str, phases: _Phases, triples: int,
                      single: int, runs: int, rounds: int, worker_counts: Sequence[int],
                      logs: Path) -> list[Row]:
    rows: list[Row] = []
    redis_dir = logs / "redis"
    redis_dir.mkdir()
    with redis_server(redis_binary, redis_dir) as redis_url:
        distributed = settings.model_copy(update={"redis_url": redis_url})
        with served_api(distributed, logs) as url, ExitStack() as workers:
            running = 0
            for count in worker_counts:
                while running < count:
                    workers.enter_context(managed_process(
                        cli_argv("worker"), child_env(distributed),
                        logs / f"worker-{running}.log"))
                    running += 1
                _wait_workers(url, count)
                _warm(url, phases, runs)
                what = f"HTTP distributed, {count} worker(s)"
                batches, singles = [], []
                for _ in range(rounds):
                    batches.append(http_batches(url, what, phases, triples, runs, clients=2))
                    singles.append(http_single(url, what, phases, single, runs))
                rows += [best_of(batches), best_of(singles)]
    return rows


def run_http_bench(settings: Settings, triples: int = 2048, single: int = 200,
                   determinism_runs: int = 2, rounds: int = 3, distributed: bool = True,
                   worker_counts: Sequence[int] = (1, 2)) -> str:
    """Runs every measurement `rounds` times, interleaved (engine, then HTTP, then again),
    so a burst of load from elsewhere hits both sides; returns the table."""
    phases = _Phases()
    measured: dict[str, list[Row]] = {}

    def keep(row: Row) -> None:
        measured.setdefault(row.what, []).append(row)

    with tempfile.TemporaryDirectory(prefix="azr-bench-") as tmp:
        logs = Path(tmp)
        embedded = settings.model_copy(update={"redis_url": None, "data_dir": logs / "data"})
        with Engine.start(settings) as engine, served_api(embedded, logs) as url:
            engine.check(phases.items(64, determinism_runs), PolicyName.AZR)  # warm-up
            _warm(url, phases, determinism_runs)
            for _ in range(rounds):
                keep(engine_batches(engine, phases, triples, determinism_runs))
                for clients in (1, 2):
                    keep(http_batches(url, "HTTP embedded", phases, triples, determinism_runs,
                                      clients))
                keep(engine_single(engine, phases, single, determinism_runs))
                keep(http_single(url, "HTTP embedded", phases, single, determinism_runs))
                keep(http_single_under_load(url, "HTTP embedded", phases, single // 2,
                                            determinism_runs, embedded.max_items))
        rows = [best_of(group) for group in measured.values()]
        skipped = None
        redis_binary = shutil.which("redis-server")
        if distributed and redis_binary is None:
            skipped = "distributed mode skipped: redis-server is not installed"
        elif distributed and redis_binary is not None:
            rows += bench_distributed(embedded, redis_binary, phases, triples, single // 2,
                                      determinism_runs, rounds, worker_counts, logs)
    return format_rows(rows, rows[0], settings, determinism_runs, rounds, skipped)


def format_rows(rows: list[Row], engine: Row, settings: Settings, runs: int, rounds: int,
                note: str | None) -> str:
    lines = [f"cpus={os.cpu_count()} zygotes/process={settings.workers} "
             f"determinism_runs={runs} chunk_size={settings.chunk_size}; throughput: best of "
             f"{rounds} interleaved rounds; latency: all rounds",
             f"{'what':<60} {'triples':>7} {'seconds':>8} {'triples/s':>10} {'vs engine':>9} "
             f"{'p50 ms':>7} {'p99 ms':>7}"]
    for row in rows:
        ratio = f"{row.rate / engine.rate:.0%}" if engine.rate and not row.latencies_ms else ""
        p50 = f"{row.percentile(0.50):.1f}" if row.latencies_ms else ""
        p99 = f"{row.percentile(0.99):.1f}" if row.latencies_ms else ""
        lines.append(f"{row.what:<60} {row.count:>7} {row.seconds:>8.2f} {row.rate:>10.1f} "
                     f"{ratio:>9} {p50:>7} {p99:>7}")
    if note:
        lines.append(f"({note})")
    return "\n".join(lines)
