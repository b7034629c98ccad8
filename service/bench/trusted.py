"""`azr-verify bench --trusted`: what hostile requests cost the trusted process, measured.

A real `azr-verify serve` runs as its own process. For each attack of docs/design.md §9.6 (in
`input` and in `output`), and for a benign request of about the same size (the baseline), it
reports the verdict, the server process's CPU time for the request (from /proc, so sandboxes
are not counted) per 100 KB of body, and the latency of /healthz polled from another thread
while the request is in flight. Then the literal parser alone on dense shapes, and the server's
RSS while it is fed `feed_mb` MiB of distinct large requests.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import statistics
import string
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from azr_verify.service.bench.served import child_env, served_process
from azr_verify.service.config import MIB, Settings
from azr_verify.service.verify.literals import LiteralError, parse_literal

# Each request repeats its text this many times (each copy made distinct, so none is a memo
# hit): long enough for /healthz to be polled many times while it is in flight.
COPIES = 8
MAX_REQUEST_TEXT = 15 * MIB  # copies stay under the default 16 MiB body limit
PROGRAM = "def f(*a):\n    return 0\n"
_COLLIDING = "{" + ", ".join(str(i * (2**61 - 1)) for i in range(40_000)) + "}"


def _attacks() -> dict[str, str]:
    return {
        "hash-collision set (40k ints)": _COLLIDING,
        "hash-collision frozenset": "frozenset(" + _COLLIDING + ")",
        "hash-collision dict (30k keys)":
            "{" + ", ".join(f"{i * (2**61 - 1)}: {i}" for i in range(30_000)) + "}",
        "10^6-element list": "[" + "0, " * 1_000_000 + "]",
        "50,000-deep nesting": "[" * 50_000 + "]" * 50_000,
        "100,000-digit int": "9" * 100_000,
        "baseline: 90k-int list": "[" + ", ".join(str(i * 7919) for i in range(90_000)) + "]",
        "baseline: 990 KB string": repr("x" * 990_000),
    }


@dataclass
class Probe:
    """/healthz polled in a loop; each sample is (sent, answered) on the monotonic clock."""

    url: str
    samples: list[tuple[float, float]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stop.is_set():
                sent = time.perf_counter()
                client.get("/healthz").raise_for_status()
                self.samples.append((sent, time.perf_counter()))

    def latencies_ms(self, start: float, end: float) -> list[float]:
        """Samples that overlapped [start, end]."""
        return [(answered - sent) * 1000 for sent, answered in self.samples
                if answered > start and sent < end]


@dataclass
class AttackRow:
    attack: str
    where: str
    body_bytes: int
    verdicts: str
    cpu_s: float
    healthz_ms: list[float]

    @property
    def cpu_ms_per_100kb(self) -> float:
        return self.cpu_s * 1000 / (self.body_bytes / 100_000)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@contextmanager
def _server(settings: Settings, logs: Path) -> Iterator[tuple[str, int]]:
    with served_process(child_env(settings), logs) as (url, process):
        yield url, process.pid


def _items(text: str, where: str) -> list[dict[str, Any]]:
    items = []
    copies = max(1, min(COPIES, MAX_REQUEST_TEXT // len(text)))
    for copy in range(copies):
        variant = text + " " * copy  # distinct texts, same value
        if where == "input":
            items.append({"program": PROGRAM, "input": variant, "timeout_s": 1})
        else:
            items.append({"program": PROGRAM, "input": "1", "output": variant})
    return items


def measure_attack(url: str, pid: int, attack: str, text: str, where: str) -> AttackRow:
    body = json.dumps({"items": _items(text, where)}).encode()
    probe = Probe(url)
    poller = threading.Thread(target=probe.run, name="healthz-probe", daemon=True)
    poller.start()
    time.sleep(0.2)  # the probe is polling before the request goes out
    with httpx.Client(base_url=url, timeout=600) as client:
        cpu_before = _cpu_seconds(pid)
        start = time.perf_counter()
        response = client.post("/v1/check", content=body,
                               headers={"Content-Type": "application/json"})
        end = time.perf_counter()
        cpu = _cpu_seconds(pid) - cpu_before
    probe.stop.set()
    poller.join(60)
    if response.status_code == 200:
        verdicts = sorted({r["verdict"] for r in response.json()["results"]})
        shown = ", ".join(verdicts)
    else:
        shown = f"HTTP {response.status_code}"
    return AttackRow(attack, where, len(body), shown, cpu, probe.latencies_ms(start, end))


def idle_healthz_ms(url: str, seconds: float = 1.0) -> list[float]:
    probe = Probe(url)
    poller = threading.Thread(target=probe.run, daemon=True)
    poller.start()
    time.sleep(seconds)
    probe.stop.set()
    poller.join(60)
    return [(answered - sent) * 1000 for sent, answered in probe.samples]


# -- the parser alone ---------------------------------------------------------------------------

PARSER_SHAPES: dict[str, Callable[[], str]] = {
    "ints '0,'": lambda: "[" + "0," * 50_000 + "]",
    "short strings": lambda: "[" + "'a'," * 25_000 + "]",
    "floats": lambda: "[" + "1.5," * 25_000 + "]",
    "complex": lambda: "[" + "(1+2j)," * 14_000 + "]",
    "dict str->int": lambda: "{" + ",".join(f"'k{i}':{i}" for i in range(10_000)) + "}",
    "tuples (1,)": lambda: "[" + "(1,)," * 20_000 + "]",
    "nested [[]]": lambda: "[" + "[[]]," * 20_000 + "]",
    "frozensets": lambda: "{" + ",".join(f"frozenset({{{i}}})" for i in range(7_000)) + "}",
    "collision set": lambda: "{" + ",".join(str(i * (2**61 - 1)) for i in range(5_000)) + "}",
    "one big string": lambda: repr("x" * 100_000),
}


def parser_ms_per_100kb(text: str, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        with contextlib.suppress(LiteralError):
            parse_literal(text)
        best = min(best, time.process_time() - started)
    return best * 1000 / (len(text) / 100_000)


# -- memory -----------------------------------------------------------------------------------

def _large_request(rng: random.Random, items: int = 8, text_chars: int = 240_000) -> bytes:
    batch = []
    for index in range(items):
        program = "def f(a):\n    return len(a)\n" if index % 2 else \
            "def f(a):\n    raise ValueError(a[:10])\n"
        program += "# " + "".join(rng.choices(string.ascii_letters, k=2000)) + "\n"
        batch.append({"program": program,
                      "input": repr("".join(rng.choices(string.ascii_letters, k=text_chars))),
                      "output": repr("".join(rng.choices(string.ascii_letters,
                                                         k=text_chars)))})
    return json.dumps({"items": batch}).encode()


def rss_under_stream(settings: Settings, logs: Path, feed_mb: int,
                     report: Callable[[str], None]) -> list[str]:
    """Feeds distinct ~4 MiB requests; returns lines: RSS at start, along the way, at the end."""
    rng = random.Random(1)
    lines: list[str] = []
    with _server(settings, logs) as (url, pid), httpx.Client(base_url=url,
                                                             timeout=600) as client:
        start = _rss_bytes(pid)
        lines.append(f"  start: RSS {start / MIB:.0f} MiB")
        fed = 0
        peak = start
        next_report = 128 * MIB
        while fed < feed_mb * MIB:
            body = _large_request(rng)
            response = client.post("/v1/check", content=body,
                                   headers={"Content-Type": "application/json"})
            response.raise_for_status()
            fed += len(body)
            peak = max(peak, _rss_bytes(pid))
            if fed >= next_report:
                line = f"  after {fed / MIB:5.0f} MiB fed: RSS {_rss_bytes(pid) / MIB:.0f} MiB"
                lines.append(line)
                report(line)
                next_report += 128 * MIB
        lines.append(f"  end: RSS {_rss_bytes(pid) / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB, "
                     f"{fed / MIB:.0f} MiB fed")
    return lines


# -- the whole run ----------------------------------------------------------------------------

def _stats(values: list[float]) -> str:
    if not values:
        return "      -        -   (0)"
    return f"{statistics.median(values):7.1f}  {max(values):7.1f}  ({len(values)})"


def run_trusted_bench(settings: Settings, feed_mb: int = 1024,
                      report: Callable[[str], None] = print) -> str:
    # One log line per /healthz poll would cost this process CPU the server competes for.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="azr-bench-trusted-") as tmp:
        logs = Path(tmp)
        served = settings.model_copy(update={"data_dir": logs / "data"})
        out.append(f"attacks: up to {COPIES} distinct copies per request (15 MiB at most); "
                   f"server CPU from /proc; "
                   f"/healthz polled during the request (ms: p50, max, samples)")
        out.append(f"{'request':32s} {'where':6s} {'body MB':>7s} {'CPU ms':>7s} "
                   f"{'ms/100KB':>8s}  {'healthz p50':>11s} {'max':>7s}  verdicts")
        with _server(served, logs) as (url, pid):
            idle = idle_healthz_ms(url)
            out.append(f"{'idle (no request)':32s} {'':6s} {'':7s} {'':7s} {'':8s}  "
                       f"{_stats(idle)}")
            report(out[-1])
            for attack, text in _attacks().items():
                for where in ("input", "output"):
                    row = measure_attack(url, pid, attack, text, where)
                    out.append(f"{row.attack:32s} {row.where:6s} "
                               f"{row.body_bytes / 1e6:7.1f} {row.cpu_s * 1000:7.0f} "
                               f"{row.cpu_ms_per_100kb:8.1f}  {_stats(row.healthz_ms)}  "
                               f"{row.verdicts}")
                    report(out[-1])
        out.append("")
        out.append("literal parser alone (best of 5, CPU ms per 100 KB of text):")
        for name, make in PARSER_SHAPES.items():
            text = make()
            out.append(f"  {name:16s} {len(text) / 1000:6.0f} KB {parser_ms_per_100kb(text):7.1f}")
            report(out[-1])
        if feed_mb > 0:
            memory = settings.model_copy(update={
                "data_dir": logs / "rss-data", "max_body_bytes": 4 * MIB,
                "max_inflight_body_bytes": 8 * MIB})
            configured = (memory.result_cache_bytes + memory.program_cache_bytes
                          + memory.literal_cache_bytes + 4 * memory.max_inflight_body_bytes)
            out.append("")
            out.append(f"RSS while fed {feed_mb} MiB of distinct ~4 MiB requests (caches "
                       f"{(configured - 4 * memory.max_inflight_body_bytes) / MIB:.0f} MiB, "
                       f"4 x in-flight {4 * memory.max_inflight_body_bytes / MIB:.0f} MiB):")
            out += rss_under_stream(memory, logs, feed_mb, report)
    return "\n".join(out)
