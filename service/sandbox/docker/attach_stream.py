"""One zygote in a container, spoken to over the container's attach stream.

Why the attach stream of the Docker API rather than `docker run -i` behind a
SubprocessConnection: no docker CLI process per zygote (an RQ worker process needs only the SDK
and the daemon socket, not the CLI), one process hop fewer per frame, and the container is
created with exactly the settings the tests read back with `docker inspect`. The price is
demultiplexing Docker's 8-byte stream headers, done in `ContainerConnection`.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import docker
from docker.errors import NotFound

from azr_verify.service.errors import SandboxUnavailableError, ZygoteDiedError
from azr_verify.service.sandbox.docker.daemon import DOCKER_ERRORS

log = logging.getLogger(__name__)

# Docker's multiplexed attach stream (no TTY): 1 byte stream id, 3 zero bytes, 4 bytes length.
STREAM_HEADER = struct.Struct(">BxxxI")
STDIN, STDOUT, STDERR = 0, 1, 2
STDERR_TAIL_BYTES = 4000
READ_CHUNK = 1 << 20


def _raw_socket(stream: Any) -> socket.socket:
    """The socket under what `attach_socket` returns (a SocketIO over a unix or TCP socket)."""
    if isinstance(stream, socket.socket):
        return stream
    inner = getattr(stream, "_sock", None)
    if isinstance(inner, socket.socket):
        return inner
    raise SandboxUnavailableError(
        f"unsupported Docker transport for attach ({type(stream).__name__}); use a unix or "
        "tcp DOCKER_HOST")


class ContainerConnection:
    """A zygote in a container, spoken to over the container's attach stream.

    The stream carries our frames to the runner's stdin and brings back its stdout and stderr
    multiplexed; stdout is demultiplexed into a buffer that `recv_exact` serves from, stderr
    is kept (a short tail) to explain a death. Without a TTY, Docker copies stdin verbatim (no
    detach-key scanning), so binary frame headers are safe.
    """

    def __init__(self, name: str, container_id: str, stream: Any, api: docker.APIClient,
                 on_close: Callable[[str], None]) -> None:
        self.name = name
        self.container_id = container_id
        self._stream = stream  # owns the socket's io reference; closed in kill()
        self._socket = _raw_socket(stream)
        # Non-blocking: `send` writes what fits and reads meanwhile, so a zygote that answers
        # while it still reads a frame never waits for us, nor we for it.
        self._socket.setblocking(False)
        self._poller = select.poll()
        self._poller.register(self._socket.fileno(), select.POLLIN)
        self._api = api
        self._on_close = on_close
        self._pending = bytearray()  # multiplexed bytes not yet decoded
        self._outgoing = bytearray()  # frame bytes not yet taken by the socket
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._eof = False
        self._closed = False
        self._pid: int | None = None

    @property
    def pid(self) -> int | None:
        """Host pid of the runner (the container's PID 1): one API call on first use.

        Lets `ZygotePool.zygote_pids` (operators, tests that SIGKILL zygotes) work as for the
        process backend.
        """
        if self._pid is None and not self._closed:
            try:
                self._pid = int(self._api.inspect_container(self.container_id)["State"]["Pid"])
            except (*DOCKER_ERRORS, KeyError, TypeError, ValueError):
                return None
        return self._pid or None

    def send(self, data: bytes) -> None:
        """Queues a frame and writes what the socket takes now; `recv_exact` writes the rest
        while it waits (see connection.py: the zygote takes a frame item by item)."""
        if self._closed:
            raise ZygoteDiedError(f"{self.name}: already killed")
        self._outgoing += data
        self._write_some()

    def _write_some(self) -> None:
        while self._outgoing:
            try:
                written = self._socket.send(self._outgoing)
            except BlockingIOError:
                return
            except OSError as exc:
                raise ZygoteDiedError(f"{self.name}: cannot write: {exc}") from exc
            del self._outgoing[:written]

    def recv_exact(self, size: int, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        fd = self._socket.fileno()
        while len(self._stdout) < size:
            remaining_ms = (deadline - time.monotonic()) * 1000.0
            if self._closed or remaining_ms <= 0:
                raise ZygoteDiedError(f"{self.name}: no answer within {timeout_s:.1f}s")
            poller = select.poll()
            poller.register(fd, select.POLLIN | (select.POLLOUT if self._outgoing else 0))
            events = poller.poll(remaining_ms)
            if not events:
                raise ZygoteDiedError(f"{self.name}: no answer within {timeout_s:.1f}s")
            for _, mask in events:
                if mask & select.POLLOUT:
                    self._write_some()
                if mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    self._read_chunk()
        data = bytes(self._stdout[:size])
        del self._stdout[:size]
        return data

    def _read_chunk(self) -> None:
        try:
            chunk = self._socket.recv(READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            raise ZygoteDiedError(f"{self.name}: cannot read: {exc}") from exc
        if not chunk:
            self._eof = True
            raise ZygoteDiedError(f"{self.name}: container exited ({self._describe_exit()})")
        self._pending += chunk
        self._demultiplex()

    def _demultiplex(self) -> None:
        pending = self._pending
        while len(pending) >= STREAM_HEADER.size:
            stream_id, length = STREAM_HEADER.unpack_from(pending)
            if stream_id not in (STDIN, STDOUT, STDERR):
                raise ZygoteDiedError(f"{self.name}: malformed attach stream")
            end = STREAM_HEADER.size + length
            if len(pending) < end:
                return
            if stream_id == STDERR:
                self._stderr += pending[STREAM_HEADER.size:end]
                del self._stderr[:-STDERR_TAIL_BYTES]
            else:
                self._stdout += pending[STREAM_HEADER.size:end]
            del pending[:end]

    def _describe_exit(self) -> str:
        try:
            state = self._api.inspect_container(self.container_id).get("State") or {}
            detail = f"exit code {state.get('ExitCode')}"
            if state.get("OOMKilled"):
                detail += ", killed by the OOM killer"
        except NotFound:
            detail = "container removed"
        except DOCKER_ERRORS as exc:
            detail = f"state unknown: {exc}"
        lines = self._stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        return detail + (f": {' | '.join(lines)}" if lines else "")

    def alive(self) -> bool:
        """Cheap (one poll, no API call): the pool asks before every batch.

        A killed container shows up as end-of-stream on the attach socket.
        """
        if self._closed or self._eof:
            return False
        if not self._poller.poll(0):
            return True
        try:
            self._read_chunk()  # readable while idle: usually end-of-stream
        except ZygoteDiedError:
            return False
        return True

    def kill(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._api.kill(self.container_id)  # auto_remove then deletes it
        except NotFound:
            pass
        except DOCKER_ERRORS as exc:
            # Already stopped (409), or the daemon is unwell: closing the stream below still
            # ends the runner (stdin_once), and the next start-up sweeps what is left.
            log.debug("killing %s: %s", self.name, exc)
        for closable in (self._stream, self._socket):
            with contextlib.suppress(OSError):
                closable.close()
        self._on_close(self.container_id)
