#!/usr/bin/env python3
"""Engine throughput and single-item latency under another caller's bulk load, per frame size.

    .venv/bin/python scripts/frames_under_load.py 32 8 4 [--rounds 2]

For each `zygote_batch` given (executions per frame sent to a zygote), in interleaved rounds: a
fresh engine (process backend, 3 zygotes, 3 seed groups), 1,200 fresh triples in batches of 256
(throughput), then one call of 3,000 triples from a second thread while single items are
checked one at a time (the latency a reward call meets behind a bulk job). Every program is new,
so nothing is a cache hit.
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid

from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine
from azr_verify.service.models import CheckItem, PolicyName, Verdict


def fresh_items(count: int) -> list[CheckItem]:
    nonce = uuid.uuid4().hex
    return [CheckItem(program=f"def f(x):\n    return x * {i} + 1\n# {nonce}\n", input=str(i),
                      output=str(i * i + 1), determinism_runs=2) for i in range(count)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(zygote_batch: int) -> str:
    with Engine.start(Settings(workers=2, determinism_seeds=3,
                               zygote_batch=zygote_batch)) as engine:
        engine.check(fresh_items(64), PolicyName.AZR)  # warm every zygote
        batch = fresh_items(1200)
        started = time.perf_counter()
        for start in range(0, len(batch), 256):
            results = engine.check(batch[start:start + 256], PolicyName.AZR)
            assert all(r.verdict is Verdict.ACCEPTED for r in results)
        rate = len(batch) / (time.perf_counter() - started)
        bulk = fresh_items(3000)
        loader = threading.Thread(target=engine.check, args=(bulk, PolicyName.AZR))
        loader.start()
        while engine.pool.stats().queued < 100 and loader.is_alive():
            time.sleep(0.01)  # the bulk call's executions are queued in the pool
        latencies = []
        for item in fresh_items(60):
            sent = time.perf_counter()
            assert engine.check([item], PolicyName.AZR)[0].verdict is Verdict.ACCEPTED
            latencies.append((time.perf_counter() - sent) * 1000)
        loader.join()
    return (f"zygote_batch={zygote_batch:<4} {rate:8.0f} triples/s   single item under load: "
            f"p50 {percentile(latencies, 0.5):7.1f} ms  p99 {percentile(latencies, 0.99):7.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("frames", type=int, nargs="+", help="zygote_batch values to compare")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for round_number in range(1, args.rounds + 1):
        for frames in args.frames:
            print(f"round {round_number}: {measure(frames)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
