"""A zygote connection over a child process's stdin/stdout pipes (used by every backend)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Sequence

from azr_verify.service.errors import ZygoteDiedError


class SubprocessConnection:
    """Talks to a zygote whose stdin/stdout are pipes of a local child process.

    The child may be bubblewrap wrapping the runner, or `docker run -i` attached to a container.
    """

    def __init__(self, name: str, argv: Sequence[str], *, user: int | None = None,
                 group: int | None = None, env: dict[str, str] | None = None) -> None:
        self.name = name
        self._process = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env if env is not None else {},
            user=user,
            group=group,
            extra_groups=[] if user is not None else None,
            start_new_session=True,
            bufsize=0,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._stdin = self._process.stdin
        self._stdout = self._process.stdout

    @property
    def pid(self) -> int:
        return self._process.pid

    def send(self, data: bytes) -> None:
        try:
            self._stdin.write(data)
        except (BrokenPipeError, ValueError, OSError) as exc:
            raise ZygoteDiedError(f"{self.name}: cannot write: {exc}") from exc

    def recv_exact(self, size: int, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        poller = select.poll()
        poller.register(self._stdout.fileno(), select.POLLIN)
        chunks = []
        remaining = size
        while remaining:
            wait_ms = (deadline - time.monotonic()) * 1000.0
            if wait_ms <= 0 or not poller.poll(wait_ms):
                raise ZygoteDiedError(f"{self.name}: no answer within {timeout_s:.1f}s")
            try:
                chunk = os.read(self._stdout.fileno(), min(remaining, 1 << 20))
            except (OSError, ValueError) as exc:
                raise ZygoteDiedError(f"{self.name}: cannot read: {exc}") from exc
            if not chunk:
                raise ZygoteDiedError(f"{self.name}: exited ({self._describe_exit()})")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _describe_exit(self) -> str:
        try:
            code = self._process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return "closed its output"
        stderr = b""
        if self._process.stderr is not None:
            try:
                stderr = self._process.stderr.read(4000) or b""
            except (OSError, ValueError):
                stderr = b""
        detail = stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        return f"status {code}" + (f": {' | '.join(detail)}" if detail else "")

    def alive(self) -> bool:
        return self._process.poll() is None

    def kill(self) -> None:
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
        for stream in (self._stdin, self._stdout, self._process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            self._process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self._process.kill()
