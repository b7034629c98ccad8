#!/usr/bin/env python3
"""Engine throughput and single-item latency of two git revisions, measured in one run.

    .venv/bin/python scripts/compare_revisions.py BASE_REV [--rounds 3] [--triples 2000]

BASE_REV is checked out into a temporary worktree; the working tree is the other side. Both are
imported through a throwaway package path (`azr_verify` -> the tree's folders), so one
virtual environment serves both. Rounds alternate between the two sides so that whatever else
the machine is doing affects both alike; throughput is the best round (other tenants only slow
a round down), latencies are pooled over all rounds. Only the engine's public API is used
(`Engine.start`, `Engine.check`), which both sides have.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("service", "client", "trainer_adapter")

# Runs inside each side's interpreter: prints one JSON line.
MEASURE = r"""
import json, sys, time, uuid
from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine
from azr_verify.service.models import CheckItem, PolicyName

triples, single, runs = (int(arg) for arg in sys.argv[1:4])
def items(count):
    nonce = uuid.uuid4().hex
    return [CheckItem(program=f"def f(x):\n    return x * {i} + 1\n# {nonce}\n", input=str(i),
                      output=str(i * i + 1), determinism_runs=runs) for i in range(count)]
started = time.perf_counter()
engine = Engine.start(Settings(workers=2, determinism_seeds=3))
startup = time.perf_counter() - started
try:
    engine.check(items(64), PolicyName.AZR)  # warm every zygote
    latencies = []
    for item in items(single):
        sent = time.perf_counter()
        result = engine.check([item], PolicyName.AZR)[0]
        latencies.append((time.perf_counter() - sent) * 1000)
        assert result.verdict.value == "accepted", result
    batch = items(triples)
    before = engine.pool.stats()
    started = time.perf_counter()
    for start in range(0, triples, 256):
        results = engine.check(batch[start:start + 256], PolicyName.AZR)
        assert all(r.verdict.value == "accepted" for r in results), results
    seconds = time.perf_counter() - started
    after = engine.pool.stats()
    faults = (after.child_minor_faults - before.child_minor_faults) / max(
        1, after.executions - before.executions)
finally:
    engine.close()
print(json.dumps({"startup_s": startup, "latencies_ms": latencies, "seconds": seconds,
                  "triples": triples, "child_faults": faults}))
"""


def shim(tree: Path, into: Path) -> Path:
    package = into / "azr_verify"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name in PACKAGES:
        (package / name).symlink_to(tree / name)
    return into


@dataclass(frozen=True)
class Round:
    startup_s: float
    latencies_ms: list[float]
    seconds: float
    triples: int
    child_faults: float  # minor page faults per sandboxed execution, from the kernel


def measure(path_dir: Path, triples: int, single: int, runs: int) -> Round:
    env = {**os.environ, "PYTHONPATH": str(path_dir)}
    output = subprocess.run([sys.executable, "-c", MEASURE, str(triples), str(single),
                             str(runs)], env=env, capture_output=True, text=True, check=False,
                            cwd=path_dir)
    if output.returncode != 0:
        raise SystemExit(f"measuring {path_dir} failed:\n{output.stderr[-3000:]}")
    return Round(**json.loads(output.stdout.strip().splitlines()[-1]))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the git revision to compare the working tree against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--triples", type=int, default=2000, help="batch workload per round")
    parser.add_argument("--single", type=int, default=300, help="single-item checks per round")
    parser.add_argument("--determinism-runs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="azr-compare-") as scratch:
        os.chmod(scratch, 0o755)  # the sandbox's unprivileged uid reads the base's runner.py
        base_tree = Path(scratch) / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base_tree),
                        args.base], check=True, capture_output=True)
        try:
            sides = {f"base {args.base}": shim(base_tree, Path(scratch) / "base-path"),
                     "working tree": shim(REPO, Path(scratch) / "head-path")}
            rounds: dict[str, list[Round]] = {name: [] for name in sides}
            for round_number in range(1, args.rounds + 1):
                for name, path_dir in sides.items():
                    print(f"round {round_number}/{args.rounds}: {name}", file=sys.stderr,
                          flush=True)
                    rounds[name].append(measure(path_dir, args.triples, args.single,
                                                args.determinism_runs))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(base_tree)], check=False, capture_output=True)
    print(f"cpus={os.cpu_count()} zygotes=3 seed_groups=3 determinism_runs="
          f"{args.determinism_runs} rounds={args.rounds} (interleaved)")
    print(f"{'side':<28} {'batch triples/s':>16} {'single p50 ms':>14} {'single p99 ms':>14} "
          f"{'start-up s':>11} {'faults/exec':>12}")
    for name, measured in rounds.items():
        best = min(measured, key=lambda m: m.seconds)
        rate = best.triples / best.seconds
        latencies = [ms for m in measured for ms in m.latencies_ms]
        startup = min(m.startup_s for m in measured)
        print(f"{name:<28} {rate:>16.1f} {percentile(latencies, 0.5):>14.2f} "
              f"{percentile(latencies, 0.99):>14.2f} {startup:>11.2f} "
              f"{median(m.child_faults for m in measured):>12.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
