"""The one result row of every benchmark table: a measured amount of work and its time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Row:
    """`count` units of work (triples, cases: the table's header names them) done in `seconds`,
    with the latency of each request where the measurement sent one at a time."""

    what: str
    count: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    note: str = ""  # what else was measured on this row (printed under the table)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def best_of(rounds: Sequence[Row]) -> Row:
    """Rounds of one measurement: the best (fastest) round's throughput, every round's
    latencies. Best-of-N, as timeit does: other tenants of a shared machine only slow a
    round down, never speed it up."""
    best = min(rounds, key=lambda row: row.seconds)
    return Row(best.what, best.count, best.seconds,
               [ms for row in rounds for ms in row.latencies_ms])
