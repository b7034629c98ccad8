"""`azr-verify bench`: engine throughput side by side with a naive baseline, in one run.

The workload is trivial, distinct programs (so the cache never helps) with the given number of
determinism runs. Two baselines: what a first attempt looks like (one fresh `python -c`
subprocess per execution, no sandbox, with the same parallelism), and AZR's reference executor
(`exec` of each program in one unsandboxed worker process, `f` called twice there for
determinism, whatever `--determinism-runs` says): the ceiling a sandbox that forks per
execution is measured against. The engine's row also says
what a sandboxed execution costs the kernel: its children's minor page faults and CPU time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from azr_verify.service.azr_step.reference import ProposalJob, ProposalResult, ReferenceExecutor
from azr_verify.service.bench.rows import Row
from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine
from azr_verify.service.models import CheckItem, PolicyName, Verdict

_BASELINE_SCRIPT = (
    "import sys\n"
    "namespace = {}\n"
    "exec(sys.argv[1], namespace)\n"
    "print(repr(namespace['f'](int(sys.argv[2]))))\n"
)


def trivial_items(count: int, determinism_runs: int, offset: int = 0) -> list[CheckItem]:
    return [
        CheckItem(id=i, program=f"def f(x):\n    return x * {i + offset} + 1\n", input=str(i),
                  output=str(i * (i + offset) + 1), determinism_runs=determinism_runs)
        for i in range(count)
    ]


def bench_engine(engine: Engine, triples: int, determinism_runs: int,
                 batch_size: int = 256) -> Row:
    warm = trivial_items(64, determinism_runs, offset=10**6)
    engine.check(warm, PolicyName.AZR)
    items = trivial_items(triples, determinism_runs)
    before = engine.pool.stats()
    started = time.perf_counter()
    for start in range(0, triples, batch_size):
        results = engine.check(items[start:start + batch_size], PolicyName.AZR)
        bad = [r for r in results if r.verdict is not Verdict.ACCEPTED]
        if bad:
            raise RuntimeError(f"benchmark item not accepted: {bad[0]}")
    seconds = time.perf_counter() - started
    after = engine.pool.stats()
    executions = max(1, after.executions - before.executions)
    faults = (after.child_minor_faults - before.child_minor_faults) / executions
    cpu_ms = (after.child_cpu_ms - before.child_cpu_ms) / executions
    return Row("engine", triples, seconds,
                       note=f"engine: {executions} executions; per execution, the sandboxed "
                            f"child's {faults:.0f} minor page faults and {cpu_ms:.2f} ms of CPU")


def bench_naive(python: str, triples: int, determinism_runs: int, workers: int) -> Row:
    items = trivial_items(triples, determinism_runs)

    def run(item: CheckItem, seed: int) -> str:
        assert item.program is not None  # trivial_items makes programs, never comparisons
        completed = subprocess.run(
            [python, "-c", _BASELINE_SCRIPT, item.program, item.input],
            capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        )
        return completed.stdout.strip()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as executor:
        futures = [executor.submit(run, item, seed)
                   for item in items for seed in range(1, determinism_runs + 1)]
        for future in futures:
            future.result()
    return Row("naive python -c per execution", triples, time.perf_counter() - started)


def bench_in_process(triples: int) -> Row:
    """AZR's reference executor (azr_step/reference.py): each program checked as a proposal,
    `exec`'d in one unsandboxed worker process with `f` called twice there, one round trip per
    program."""
    items = trivial_items(triples, 2, offset=2 * 10**6)
    jobs = [ProposalJob(item.program or "", item.input) for item in items]
    with ReferenceExecutor() as executor:
        executor.run_all(jobs[:64])  # its imports and first compile, as the engine's warm-up
        started = time.perf_counter()
        results = executor.run_all(jobs)
        seconds = time.perf_counter() - started
    wrong = [(item, result) for item, result in zip(items, results, strict=True)
             if not isinstance(result, ProposalResult) or result.output != item.output]
    if wrong:
        raise RuntimeError(f"in-process baseline disagrees: {wrong[0]}")
    return Row("in-process exec, one worker (AZR's)", triples, seconds)


def run_bench(settings: Settings, triples: int, baseline_triples: int,
              determinism_runs: int) -> list[Row]:
    started = time.perf_counter()
    engine = Engine.start(settings)
    startup = time.perf_counter() - started
    try:
        print(f"backend={settings.sandbox.value} workers={len(engine.pool.zygote_threads)} "
              f"seed_groups={engine.pool.seed_groups} determinism_runs={determinism_runs} "
              f"cpus={os.cpu_count()} pool start-up {startup:.2f}s", flush=True)
        engine_result = bench_engine(engine, triples, determinism_runs)
    finally:
        engine.close()
    naive = bench_naive(sys.executable, baseline_triples, determinism_runs,
                        workers=settings.workers)
    return [engine_result, naive, bench_in_process(triples)]


def format_results(results: list[Row]) -> str:
    lines = [f"{'what':<34} {'triples':>8} {'seconds':>8} {'triples/s':>10}"]
    for result in results:
        lines.append(f"{result.what:<34} {result.count:>8} {result.seconds:>8.2f} "
                     f"{result.rate:>10.1f}")
    engine, *baselines = results
    for baseline in baselines:
        if baseline.rate:
            lines.append(f"ratio engine / {baseline.what}: {engine.rate / baseline.rate:.2f}x")
    lines += [result.note for result in results if result.note]
    return "\n".join(lines)
