"""Pure ASGI middleware: unexpected errors, request-body limits, request-latency metrics,
the access log."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from azr_verify.service.api.errors import error_response

if TYPE_CHECKING:
    from azr_verify.service.metrics import Metrics

log = logging.getLogger(__name__)
access_log = logging.getLogger("azr_verify.access")

# After refusing a body, up to this much more is read and thrown away (never kept) before the
# 413 goes out: closing a socket with unread data makes the kernel send RST, and the client
# would see "connection reset" instead of the 413.
LINGER_BYTES = 8 * 1024 * 1024
LINGER_S = 2.0
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class UnhandledErrorMiddleware:
    """A bug becomes a JSON 500 and the connection stays usable.

    (An exception handler for `Exception` would answer too, but Starlette re-raises after it,
    and uvicorn then drops the keep-alive connection under the client's next request.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:  # the app's outer boundary: log it, answer JSON if still possible
            log.exception("unhandled error", extra={"path": scope.get("path")})
            if started:
                raise
            response = error_response(500, "internal_error", "internal server error")
            await response(scope, receive, send)


class InflightBodies:
    """Bytes of request bodies received and not yet answered, across all requests.

    Reserved as bodies arrive (all of a declared Content-Length at once), released when the
    response is sent; a request that would exceed `max_bytes` is refused with 429.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._bytes = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def reserve(self, size: int) -> bool:
        # Only the event loop's thread calls this: no lock needed between check and add.
        if self._bytes + size > self.max_bytes:
            return False
        self._bytes += size
        return True

    def release(self, size: int) -> None:
        self._bytes -= size


class _Reserved:
    """What one request has reserved so far (survives the read being cancelled)."""

    bytes = 0


class BodyLimitMiddleware:
    """Reads request bodies while they stream in, within limits, then hands them on.

    - A body over `max_bytes` is refused with 413 as soon as the limit is crossed (or at once
      when Content-Length says so); memory never holds more than `max_bytes` of it.
    - A body that has not fully arrived `timeout_s` after the request started is refused with
      408 and its connection closed: half-sent bodies are not held.
    - While the bodies held by all requests would exceed `inflight.max_bytes`, a new body is
      refused with 429 and Retry-After.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float, inflight: InflightBodies,
                 retry_after_s: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.inflight = inflight
        self.retry_after_s = retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared < 0:
            await error_response(400, "bad_request", "invalid Content-Length")(scope, receive,
                                                                                 send)
            return
        if declared is not None and declared > self.max_bytes:
            await _drain(receive, LINGER_BYTES if declared <= self.max_bytes + LINGER_BYTES
                         else 0)
            await self._refuse(scope, receive, send, declared)
            return
        reserved = _Reserved()
        try:
            if declared is not None:
                if not self.inflight.reserve(declared):
                    # Read and drop a moderate body first, as for a 413, so the client sees
                    # the 429 rather than a reset connection; nothing of it is kept.
                    await _drain(receive, declared if declared <= LINGER_BYTES else 0)
                    await self._overloaded(scope, receive, send, declared)
                    return
                reserved.bytes = declared
            body: bytes | None = None
            with anyio.move_on_after(self.timeout_s):
                body = await self._read(scope, receive, send, reserved)
                if body is None:
                    return  # refused or the client left; already answered if need be
            if body is None:
                await self._timed_out(scope, receive, send)
                return
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()  # later calls wait for the disconnect, as usual

            await self.app(scope, replay, send)
        finally:
            self.inflight.release(reserved.bytes)

    async def _read(self, scope: Scope, receive: Receive, send: Send,
                    reserved: _Reserved) -> bytes | None:
        """The whole body, or None once an answer (or nothing, if the client left) is due."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None  # the client left; nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.max_bytes:
                await _drain(receive, LINGER_BYTES, more=more)
                await self._refuse(scope, receive, send, None)
                return None
            if size > reserved.bytes:  # no Content-Length (or a lying one): reserve as it comes
                if not self.inflight.reserve(size - reserved.bytes):
                    await _drain(receive, LINGER_BYTES, more=more)
                    await self._overloaded(scope, receive, send, size)
                    return None
                reserved.bytes = size
            chunks.append(chunk)
            if not more:
                return b"".join(chunks)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send,
                      declared: int | None) -> None:
        size = f"{declared} bytes" if declared is not None else "the body"
        response = error_response(413, "payload_too_large",
                                  f"{size} exceeds the limit of {self.max_bytes} bytes",
                                  headers={"Connection": "close"})
        await response(scope, receive, send)

    async def _overloaded(self, scope: Scope, receive: Receive, send: Send, size: int) -> None:
        response = error_response(
            429, "overloaded", f"request bodies in flight would exceed "
            f"{self.inflight.max_bytes} bytes with this one ({size} bytes); retry later",
            headers={"Retry-After": str(self.retry_after_s), "Connection": "close"})
        await response(scope, receive, send)

    async def _timed_out(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            408, "request_timeout", f"the request body did not arrive within "
            f"{self.timeout_s:g} s (AZR_VERIFY_BODY_TIMEOUT_S)", headers={"Connection": "close"})
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None


async def _drain(receive: Receive, limit: int, more: bool = True) -> None:
    """Reads and discards up to `limit` bytes for at most LINGER_S."""
    drained = 0
    with anyio.move_on_after(LINGER_S):
        while more and drained < limit:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            more = message.get("more_body", False)


class RequestMetricsMiddleware:
    """Times every HTTP request; labels by route template so label values stay bounded."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(scope["method"], label, status,
                                         time.perf_counter() - started)


class AccessLogMiddleware:
    """One log line per HTTP request: method, path, status, duration, items, API key name.

    Routes leave the item count and the key's name (never the key) in the request state.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        # Created here so that what routes store in request.state is seen after they return.
        state = scope.setdefault("state", {})

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 2)
            method, path = scope["method"], scope.get("path", "")
            access_log.info(f"{method} {path} {status}", extra={
                "method": method, "path": path, "status": status, "duration_ms": duration_ms,
                "items": state.get("items"), "key_name": state.get("key_name"),
                "client": (scope.get("client") or (None,))[0]})
