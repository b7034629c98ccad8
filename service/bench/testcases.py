"""`azr-verify bench --testcases`: stdin/stdout test-case throughput, side by side with a naive
baseline in the same run (docs/design.md §8, §10).

Workload: distinct small programs (so no cache ever helps) that read two integers from stdin
and print a result, each with the same number of cases. Rows:

- engine: `Engine.check_testcases`, batches of 32 programs;
- HTTP `/v1/testcases`: `azr-verify serve` as its own process, batches of 32 programs, from
  two client threads;
- HTTP `/run_code`: one request per case, from 8 client threads (what veRL's sandbox reward
  does against SandboxFusion);
- baseline: one `subprocess.run([python, "-c", program], input=stdin)` per case, no sandbox,
  with as many threads as the pool has zygotes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from azr_verify.service.bench.rows import Row
from azr_verify.service.bench.served import served_api
from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine
from azr_verify.service.models import PolicyName, TestCase, TestcaseItem, Verdict

PROGRAMS_PER_BATCH = 32
HTTP_BATCH_CLIENTS = 2
RUN_CODE_CLIENTS = 8


def workload(programs: int, cases: int, offset: int) -> list[TestcaseItem]:
    """Distinct programs (`offset` keeps phases apart), each with `cases` cases."""
    items = []
    for k in range(programs):
        factor = k + offset
        program = ("import sys\na, b = map(int, sys.stdin.readline().split())\n"
                   f"print(a * {factor} + b)\n")
        items.append(TestcaseItem(id=k, program=program, cases=[
            TestCase(input=f"{c} {k}\n", output=f"{c * factor + k}\n") for c in range(cases)]))
    return items


def _batches(items: Sequence[TestcaseItem]) -> list[Sequence[TestcaseItem]]:
    return [items[k:k + PROGRAMS_PER_BATCH] for k in range(0, len(items), PROGRAMS_PER_BATCH)]


def _require_accepted(verdicts: Sequence[str], what: str) -> None:
    bad = [v for v in verdicts if v != Verdict.ACCEPTED.value]
    if bad:
        raise RuntimeError(f"{what}: {len(bad)} benchmark programs not accepted ({bad[0]})")


def _timed(name: str, cases: int, work: Callable[[], None]) -> Row:
    started = time.perf_counter()
    work()
    return Row(name, cases, time.perf_counter() - started)


def bench_engine(settings: Settings, programs: int, cases: int) -> Row:
    with Engine.start(settings) as engine:
        engine.check_testcases(workload(8, 2, offset=10**6))  # warm every zygote
        items = workload(programs, cases, offset=0)

        def work() -> None:
            for batch in _batches(items):
                results = engine.check_testcases(batch, PolicyName.PERMISSIVE)
                _require_accepted([r.verdict.value for r in results], "engine")

        return _timed("engine check_testcases", programs * cases, work)


def bench_http_testcases(url: str, programs: int, cases: int) -> Row:
    items = workload(programs, cases, offset=10**4)
    bodies = [{"items": [i.model_dump(mode="json") for i in batch]} for batch in _batches(items)]

    def send(share: list[dict[str, Any]]) -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            for body in share:
                response = client.post("/v1/testcases", json=body)
                response.raise_for_status()
                _require_accepted([r["verdict"] for r in response.json()["results"]],
                                  "/v1/testcases")

    def work() -> None:
        shares = [bodies[k::HTTP_BATCH_CLIENTS] for k in range(HTTP_BATCH_CLIENTS)]
        with ThreadPoolExecutor(HTTP_BATCH_CLIENTS) as pool:
            list(pool.map(send, shares))

    return _timed(f"HTTP /v1/testcases, {PROGRAMS_PER_BATCH} programs/request",
                  programs * cases, work)


def bench_http_run_code(url: str, programs: int, cases: int) -> Row:
    items = workload(programs, cases, offset=2 * 10**4)
    runs = [(item.program, case) for item in items for case in item.cases]

    def send(share: list[tuple[str, TestCase]]) -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            for program, case in share:
                body = client.post("/run_code", json={
                    "code": program, "language": "python", "stdin": case.input,
                    "run_timeout": 10, "memory_limit_MB": 256}).json()
                if body["status"] != "Success" or body["run_result"]["stdout"] != case.output:
                    raise RuntimeError(f"/run_code: unexpected answer {body}")

    def work() -> None:
        shares = [runs[k::RUN_CODE_CLIENTS] for k in range(RUN_CODE_CLIENTS)]
        with ThreadPoolExecutor(RUN_CODE_CLIENTS) as pool:
            list(pool.map(send, shares))

    return _timed(f"HTTP /run_code, 1 case/request, {RUN_CODE_CLIENTS} clients", len(runs),
                  work)


def bench_baseline(python: str, programs: int, cases: int, workers: int) -> Row:
    items = workload(programs, cases, offset=3 * 10**4)
    runs = [(item.program, case) for item in items for case in item.cases]

    def run(program: str, case: TestCase) -> None:
        done = subprocess.run([python, "-c", program], input=case.input, capture_output=True,
                              text=True, check=True)
        if done.stdout != case.output:
            raise RuntimeError(f"baseline: {done.stdout!r} != {case.output!r}")

    def work() -> None:
        with ThreadPoolExecutor(workers) as pool:
            for future in [pool.submit(run, program, case) for program, case in runs]:
                future.result()

    return _timed(f"baseline: subprocess.run(python -c) per case, {workers} threads",
                  len(runs), work)


def run_testcase_bench(settings: Settings, programs: int, cases: int, baseline_cases: int,
                       report: Callable[[str], None]) -> str:
    report(f"cpus={os.cpu_count()} zygotes={settings.workers} backend={settings.sandbox.value} "
           f"programs={programs} cases/program={cases}")
    rows = [bench_engine(settings, programs, cases)]
    report(f"{rows[-1].what}: {rows[-1].rate:.0f} cases/s")
    with tempfile.TemporaryDirectory(prefix="azr-bench-tc-") as tmp:
        served = settings.model_copy(update={"data_dir": Path(tmp) / "data"})
        with served_api(served, Path(tmp)) as url:
            rows.append(bench_http_testcases(url, programs, cases))
            report(f"{rows[-1].what}: {rows[-1].rate:.0f} cases/s")
            rows.append(bench_http_run_code(url, max(1, programs // 4), cases))
            report(f"{rows[-1].what}: {rows[-1].rate:.0f} cases/s")
    baseline_programs = max(1, baseline_cases // cases)
    rows.append(bench_baseline(sys.executable, baseline_programs, cases, settings.workers))
    return format_rows(rows)


def format_rows(rows: list[Row]) -> str:
    baseline = rows[-1].rate
    lines = [f"{'what':<62} {'cases':>6} {'seconds':>8} {'cases/s':>8} {'vs baseline':>11}"]
    for row in rows:
        ratio = f"{row.rate / baseline:.1f}x" if baseline else "-"
        lines.append(f"{row.what:<62} {row.count:>6} {row.seconds:>8.2f} {row.rate:>8.1f} "
                     f"{ratio:>11}")
    return "\n".join(lines)
