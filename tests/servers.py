"""Real processes for the API and distributed tests: redis-server, `azr-verify worker`s, uvicorn.

Nothing here is mocked: a redis-server on a free port in a temp dir, worker subprocesses
started through the real CLI entry point, and the real app served by uvicorn on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from azr_verify.service.api.app import create_app
from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine

REPO = Path(__file__).resolve().parent.parent
REDIS_SERVER = shutil.which("redis-server")
# The real `azr-verify serve` of the client's tests (conftest.client_service).
CLIENT_KEY = "client-key"
CLIENT_MAX_ITEMS = 300


# Opt-out for machines without every component: tests that need a missing one skip instead
# of failing. Never set in CI (.ci/run), where the AZR_VERIFY_REQUIRE_* flags also win over it.
ALLOW_SKIP_ENV = "AZR_VERIFY_ALLOW_SKIP"


def require(component: str, available: bool, env_flag: str | None = None) -> None:
    """Fails the test when a component it needs is missing (a skipped sandbox test proves
    nothing), unless the user opted out with AZR_VERIFY_ALLOW_SKIP=1 and `env_flag` (e.g.
    AZR_VERIFY_REQUIRE_DOCKER) is not set to 1."""
    if available:
        return
    required = env_flag is not None and os.environ.get(env_flag) == "1"
    if os.environ.get(ALLOW_SKIP_ENV) == "1" and not required:
        pytest.skip(f"{component} is not available ({ALLOW_SKIP_ENV}=1)")
    why = f"{env_flag}=1" if required else f"set {ALLOW_SKIP_ENV}=1 to skip instead"
    pytest.fail(f"{component} is required but not available ({why})")


def require_redis() -> str:
    require("redis-server", REDIS_SERVER is not None, "AZR_VERIFY_REQUIRE_REDIS")
    assert REDIS_SERVER is not None
    return REDIS_SERVER


def require_bwrap() -> None:
    require("bubblewrap", shutil.which("bwrap") is not None, "AZR_VERIFY_REQUIRE_BWRAP")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str,
               interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")


class RedisServer:
    """A throwaway redis-server: no persistence, its own port and directory."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.binary = require_redis()
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory), "--daemonize", "no",
             "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.ping, 10, f"redis-server on port {self.port}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


class WorkerProcess:
    """`azr-verify worker` as a real subprocess (the CLI entry point, not an import)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen = False

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "azr_verify.service.cli", "worker"],
            env=self.env, stdout=log, stderr=log, cwd=REPO)
        log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no cleanup; the job it holds is abandoned."""
        if self.process is not None and self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def freeze(self) -> None:
        """SIGSTOP: the worker does nothing until thawed; a chunk it already received stays
        with it, answered by nobody (an event the test controls, not a race)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        if self.process is None or not self.alive():
            return
        self.process.send_signal(signal.SIGCONT)  # a frozen worker cannot act on SIGTERM
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process build the same Settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZR_VERIFY_")}
    for name, value in settings.model_dump(mode="json").items():
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        env[f"AZR_VERIFY_{name.upper()}"] = text
    return env


class ServeProcess:
    """`azr-verify serve` as a real subprocess, ready once /readyz answers 200; its CPU time
    and memory are read from /proc."""

    def __init__(self, settings: Settings, log_path: Path, port: int | None = None) -> None:
        self.settings = settings
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "azr_verify.service.cli", "serve", "--host", "127.0.0.1",
             "--port", str(self.port)], env=settings_env(self.settings), cwd=REPO,
            stdout=log, stderr=log)
        log.close()
        wait_until(self.ready, 120, f"azr-verify serve on port {self.port}", interval_s=0.1)

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"azr-verify serve exited: {self.log_path.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        """The server process's own CPU time (user + system, all its threads); the
        sandboxes are other processes and are not counted."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        # utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc status")

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 300.0), **kwargs)


def client_service_settings(data_dir: Path, max_items: int) -> Settings:
    """The real service the client's tests talk to: API key, tight limits (so 413 and 429
    are reachable), and no result cache, so every check really runs in a sandbox."""
    return Settings(workers=2, data_dir=data_dir, api_keys={"client": CLIENT_KEY},
                    max_items=max_items, max_queue_depth=max_items, overload_retry_after_s=1,
                    result_cache_bytes=0)


@contextmanager
def serve_process(settings: Settings, log_path: Path, port: int | None = None
                  ) -> Iterator[ServeProcess]:
    server = ServeProcess(settings, log_path, port)
    try:
        server.start()
        yield server
    finally:
        server.stop()


class ApiServer:
    """The real app on a real uvicorn, in a thread of this process, on a free port."""

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.port = free_port()
        config = uvicorn.Config(create_app(settings, engine), host="127.0.0.1", port=self.port,
                                log_config=None, access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), 30,
                   "uvicorn start-up")
        if not self.server.started:
            raise RuntimeError("uvicorn did not start (see the log above)")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 60.0), **kwargs)


@contextmanager
def api_server(settings: Settings, engine: Engine | None = None) -> Iterator[ApiServer]:
    server = ApiServer(settings, engine)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def posts_answered(url: str, status: int, route: str = "/v1/check") -> float:
    """How many POSTs to `route` the server at `url` answered with `status`, by its own
    request metrics (the way to count a real server's requests without instrumenting it)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    wanted = f'azr_verify_request_seconds_count{{method="POST",route="{route}",' \
             f'status="{status}"}} '
    return sum(float(line[len(wanted):]) for line in text.splitlines()
               if line.startswith(wanted))


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The JSON error envelope; fails the test when the body is anything else."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error
