"""Every error the API returns is JSON: {"error": {"code", "message"}}.

This covers FastAPI's own errors too (422 validation, 404/405 from routing, malformed JSON,
undecodable bodies) and every infrastructure exception of the service.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from azr_verify.service.api.responses import AsciiJSONResponse
from azr_verify.service.errors import (
    AzrVerifyError,
    BatchLostError,
    JobNotFoundError,
    OverloadedError,
    QueueTimeoutError,
    QueueUnavailableError,
    SandboxError,
)

log = logging.getLogger(__name__)

# Codes for errors raised by Starlette/FastAPI themselves, which only carry a status.
STATUS_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 413: "payload_too_large",
    415: "unsupported_media_type", 422: "validation_error", 429: "overloaded",
    500: "internal_error", 503: "unavailable", 504: "timeout",
}
# Seconds a client should wait before retrying while Redis is unreachable.
UNAVAILABLE_RETRY_AFTER_S = 1
_MAX_DETAILS = 20


class ApiError(HTTPException):
    """An HTTP error with a stable code, raised by routes and middleware."""

    def __init__(self, status_code: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   details: list[dict[str, Any]] | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return AsciiJSONResponse({"error": body}, status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = exc.code if isinstance(exc, ApiError) else \
        STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
    message = str(exc.detail)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        # FastAPI reports an undecodable body as a generic parse error; say what it was.
        code, message = "invalid_encoding", "the request body is not valid UTF-8 JSON"
    headers = dict(exc.headers) if exc.headers else None
    return error_response(exc.status_code, code, message, headers=headers)


def _describe(error: dict[str, Any]) -> dict[str, Any]:
    # Never echo `input`: it can be megabytes of program text.
    return {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg")),
            "type": str(error.get("type"))}


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(error.get("type") == "json_invalid" for error in errors):
        reason = errors[0].get("ctx", {}).get("error", "JSON decode error")
        return error_response(400, "invalid_json", f"the request body is not valid JSON: "
                              f"{reason}")
    details = [_describe(error) for error in errors[:_MAX_DETAILS]]
    summary = "; ".join(f"{'.'.join(d['loc'])}: {d['msg']}" for d in details[:3])
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return error_response(422, "validation_error", summary + more, details=details)


def _retry_after(seconds: int) -> dict[str, str]:
    return {"Retry-After": str(seconds)}


async def _service_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, OverloadedError):
        return error_response(429, "overloaded", str(exc), _retry_after(exc.retry_after_s))
    if isinstance(exc, BatchLostError):
        return error_response(503, "batch_lost", str(exc))
    if isinstance(exc, QueueUnavailableError):
        return error_response(503, "queue_unavailable", str(exc),
                              _retry_after(UNAVAILABLE_RETRY_AFTER_S))
    if isinstance(exc, QueueTimeoutError):
        return error_response(504, "queue_timeout", str(exc))
    if isinstance(exc, JobNotFoundError):
        return error_response(404, "job_not_found", str(exc))
    if isinstance(exc, SandboxError):
        return error_response(503, "sandbox_unavailable", str(exc))
    log.error("unexpected service error", exc_info=exc)
    return error_response(500, "internal_error", f"{type(exc).__name__}: {exc}")


async def _redis_error(request: Request, exc: Exception) -> Response:
    # A Redis call that escaped translation still means "Redis is down", not a server bug.
    return error_response(503, "queue_unavailable", f"Redis is unreachable: {exc}",
                          _retry_after(UNAVAILABLE_RETRY_AFTER_S))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(AzrVerifyError, _service_error)
    app.add_exception_handler(redis.exceptions.ConnectionError, _redis_error)
    app.add_exception_handler(redis.exceptions.TimeoutError, _redis_error)
