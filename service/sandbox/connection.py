"""A zygote connection over a child process's stdin/stdout pipes (the process backend).

The zygote takes a frame's bytes item by item while it answers earlier items, so the host never
blocks writing: `send` queues the frame and writes what fits, and `recv_exact` goes on writing
the rest whenever the pipe has room while it waits for records. The only clock is the caller's
per-record budget, so a frame that takes long to consume (slow items ahead of a large one) is
never mistaken for a dead zygote.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Sequence

from azr_verify.service.errors import ZygoteDiedError

READ_CHUNK = 1 << 20


class SubprocessConnection:
    """Talks to a zygote whose stdin/stdout are pipes of a local child process (bubblewrap)."""

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
        self._in_fd = self._stdin.fileno()
        self._out_fd = self._stdout.fileno()
        os.set_blocking(self._in_fd, False)
        self._buffer = bytearray()
        self._outgoing = bytearray()
        self._eof = False

    @property
    def pid(self) -> int:
        return self._process.pid

    def send(self, data: bytes) -> None:
        self._outgoing += data
        self._write_some()

    def _write_some(self) -> None:
        """Writes as much of the queued frame as the pipe takes now."""
        while self._outgoing:
            try:
                written = os.write(self._in_fd, self._outgoing)
            except BlockingIOError:
                return
            except (OSError, ValueError) as exc:
                raise ZygoteDiedError(f"{self.name}: cannot write: {exc}") from exc
            del self._outgoing[:written]

    def _fill(self) -> None:
        """Reads what is available from the zygote into the buffer (one read)."""
        if self._eof:
            raise ZygoteDiedError(f"{self.name}: exited ({self._describe_exit()})")
        try:
            chunk = os.read(self._out_fd, READ_CHUNK)
        except (OSError, ValueError) as exc:
            raise ZygoteDiedError(f"{self.name}: cannot read: {exc}") from exc
        if not chunk:
            self._eof = True
            raise ZygoteDiedError(f"{self.name}: exited ({self._describe_exit()})")
        self._buffer += chunk

    def recv_exact(self, size: int, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        while len(self._buffer) < size:
            poller = select.poll()
            poller.register(self._out_fd, select.POLLIN)
            if self._outgoing:
                poller.register(self._in_fd, select.POLLOUT)
            wait_ms = (deadline - time.monotonic()) * 1000.0
            events = poller.poll(wait_ms) if wait_ms > 0 else []
            if not events:
                raise ZygoteDiedError(f"{self.name}: no answer within {timeout_s:.1f}s")
            for fd, mask in events:
                if fd == self._in_fd:
                    self._write_some()
                elif mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    self._fill()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

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
