"""What the benchmarks that measure a served instance share: free ports, `azr-verify serve`
and `azr-verify worker` subprocesses configured from a `Settings`, a throwaway redis-server,
and the service's own counters read from /metrics."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from azr_verify.service.config import Settings
from azr_verify.service.metrics import NAMESPACE

START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(settings: Settings) -> dict[str, str]:
    """This process's environment with `settings` as the child's AZR_VERIFY_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZR_VERIFY_")}
    for name, value in settings.model_dump(mode="json").items():
        if value is not None:
            env[f"AZR_VERIFY_{name.upper()}"] = value if isinstance(value, str) \
                else json.dumps(value)
    return env


def wait_ready(url: str, process: subprocess.Popen[bytes],
               timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


@contextmanager
def managed_process(argv: list[str], env: dict[str, str], log: Path
                    ) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess logging to `log`, stopped with SIGTERM (then SIGKILL) on exit."""
    with log.open("ab") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=out)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cli_argv(*args: str) -> list[str]:
    """`azr-verify ARGS` run by this interpreter."""
    return [sys.executable, "-m", "azr_verify.service.cli", *args]


@contextmanager
def served_process(env: dict[str, str], logs: Path, start_timeout_s: float = START_TIMEOUT_S
                   ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`azr-verify serve` in the environment `env` on a free local port; yields its base URL
    and its process once /readyz answers."""
    port = free_port()
    with managed_process(cli_argv("serve", "--host", "127.0.0.1", "--port", str(port)),
                         env, logs / f"api-{port}.log") as process:
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/readyz", process, start_timeout_s)
        yield url, process


@contextmanager
def served_api(settings: Settings, logs: Path) -> Iterator[str]:
    """`azr-verify serve` configured by `settings`; yields its base URL once /readyz answers."""
    with served_process(child_env(settings), logs) as (url, _process):
        yield url


@contextmanager
def redis_server(binary: str, directory: Path) -> Iterator[str]:
    """A throwaway redis-server without persistence; yields its URL."""
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
            "no", "--dir", str(directory)]
    with managed_process(argv, dict(os.environ), directory / "redis.log"):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"


@dataclass(frozen=True)
class ServiceCounters:
    """The executors' counters of a served instance (embedded or distributed)."""

    items: int
    executions: int
    cache_hits: int
    cache_misses: int

    def __sub__(self, other: ServiceCounters) -> ServiceCounters:
        return ServiceCounters(self.items - other.items, self.executions - other.executions,
                               self.cache_hits - other.cache_hits,
                               self.cache_misses - other.cache_misses)


def read_counters(client: httpx.Client) -> ServiceCounters:
    """The counters from GET /metrics (`client` has the service's base URL)."""
    response = client.get("/metrics")
    response.raise_for_status()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    prefix = f"{NAMESPACE}_"

    def total(name: str) -> int:
        return int(totals.get(f"{prefix}{name}_total", 0.0))

    return ServiceCounters(items=total("items"), executions=total("executions"),
                           cache_hits=total("cache_hits"), cache_misses=total("cache_misses"))
