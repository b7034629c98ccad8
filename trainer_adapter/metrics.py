"""Per-step metrics: timing, a summary of the step's samples, and the JSONL writer."""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO


class Timer:
    """Accumulates wall time per phase (generation, verification, update)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.totals[phase] += time.perf_counter() - start

    def as_dict(self) -> dict[str, float]:
        return {f"{phase}_s": round(seconds, 4) for phase, seconds in self.totals.items()}


def summarize(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    return {"count": len(values), "mean": statistics.fmean(values),
            "std": statistics.pstdev(values), "min": min(values), "max": max(values)}


def rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


class MetricsWriter:
    """Appends one JSON object per step to DIR/metrics.jsonl (flushed each step, so a
    crashed run keeps what it measured)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: TextIO = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
