"""CPU cost of the static check in the trusted process, per program shape (docs/design.md §6).

    .venv/bin/python -m azr_verify.service.bench.policy [--kilobytes 256]

For each workload, side by side: `ast.parse` alone (the floor: any AST-based check parses), the
previous approach (`ast.parse` + `compile`, which CPython 3.11 does in superlinear time on some
inputs), and `check_program` under `permissive` (syntax only) and `azr`. CPU seconds
(`time.process_time`), so other load on the machine inflates them less than wall time.
"""

from __future__ import annotations

import argparse
import ast
import time
from collections.abc import Callable
from functools import partial

from azr_verify.service.models import PolicyName
from azr_verify.service.verify.policy import check_program

_TYPICAL = '''
def helper_{i}(xs, k=3):
    total = 0
    for j, x in enumerate(xs):
        if x % 2 == 0 and j > k:
            total += x * j - len(str(x))
        else:
            total -= max(x, k) // 2
    return [total, sorted(xs, key=lambda v: -v)[:k], {{'a': 1, 'b': (2, 3)}}]
'''
_CHAIN = ("f = " + "".join(f"lambda a{i}: " for i in range(10))
          + "+".join(f"a{i}" for i in range(10)) + "\n")


def workloads(size: int) -> dict[str, str]:
    """Programs of about `size` characters."""
    def repeat(unit: str) -> str:
        return unit * max(1, size // len(unit))

    return {
        "typical functions": "".join(_TYPICAL.format(i=i)
                                     for i in range(max(1, size // len(_TYPICAL)))),
        "identical lambdas": repeat("f = lambda a: a\n"),
        "identical functions": repeat("def f(a): return a\n"),
        "nested closures (depth 10)": repeat(_CHAIN),
        "refused everywhere": "def f(x):\n" + repeat("    x.__class__; getattr(x, y)\n"),
        "one format string": "def f(x):\n    return '" + "{0[0]}" * (size // 6)
                             + "'.format((x,))\n",
    }


def _parse_and_compile(source: str) -> object:
    return compile(ast.parse(source), "<program>", "exec")


def cpu_seconds(action: Callable[[], object]) -> float:
    start = time.process_time()
    action()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kilobytes", type=int, default=256,
                        help="size of each workload (default 256; the compile column takes "
                             "minutes at 1024)")
    parser.add_argument("--without-compile", action="store_true",
                        help="skip the previous approach's column")
    args = parser.parse_args()
    size = args.kilobytes * 1024
    print(f"{'workload':28s} {'KB':>6s} {'ast.parse':>10s} {'+compile':>10s} "
          f"{'permissive':>11s} {'azr':>8s}  (CPU seconds)")
    for name, source in workloads(size).items():
        parse = cpu_seconds(partial(ast.parse, source))
        old = float("nan") if args.without_compile else cpu_seconds(
            partial(_parse_and_compile, source))
        permissive = cpu_seconds(partial(check_program, source, PolicyName.PERMISSIVE))
        azr = cpu_seconds(partial(check_program, source, PolicyName.AZR))
        print(f"{name:28s} {len(source) / 1024:6.0f} {parse:10.2f} {old:10.2f} "
              f"{permissive:11.2f} {azr:8.2f}")


if __name__ == "__main__":
    main()
