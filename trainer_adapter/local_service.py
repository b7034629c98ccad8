"""`azr-verify train --serve`: a private azr-verify service for one run.

The service is started as its own process through its command line (`azr-verify serve` on a
free loopback port, data under the run directory) and stopped when the run ends, so the
trainer still talks to it only over HTTP through the client. Needs the `service` extra and
bubblewrap, like `make run`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from azr_verify.client import AzrClientError, Client, ClientConfig


class ServiceStartError(RuntimeError):
    """The local service exited or did not become ready."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalService:
    def __init__(self, data_dir: Path, *, startup_timeout_s: float = 120.0,
                 workers: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout_s = startup_timeout_s
        self.workers = workers
        self.log_path = data_dir / "service.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "AZR_VERIFY_DATA_DIR": str(self.data_dir)}
        if self.workers is not None:
            env["AZR_VERIFY_WORKERS"] = str(self.workers)
        env.pop("AZR_VERIFY_REDIS_URL", None)  # always embedded
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "azr_verify.service.cli", "serve", "--host",
                 "127.0.0.1", "--port", str(self.port)], env=env, stdout=log, stderr=log)
        self._wait_ready()
        return self.url

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        config = ClientConfig(base_url=self.url, max_retries=0, timeout_s=5.0)
        with Client(config=config) as client:
            while True:
                if self._process.poll() is not None:
                    raise ServiceStartError(
                        f"azr-verify serve exited with {self._process.returncode}; "
                        f"log: {self.log_path}\n{self._log_tail()}")
                try:
                    client.info()
                    return
                except AzrClientError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise ServiceStartError(
                            f"azr-verify serve not ready after {self.startup_timeout_s:g} s; "
                            f"log: {self.log_path}\n{self._log_tail()}") from None
                    time.sleep(0.2)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> LocalService:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
