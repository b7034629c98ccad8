"""The HTTP routes. They only translate between HTTP and the Backend."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from azr_verify.service import __version__
from azr_verify.service.api.audit_access import read_audit
from azr_verify.service.api.auth import api_key_name
from azr_verify.service.api.backend import Backend
from azr_verify.service.api.errors import ApiError, error_response
from azr_verify.service.api.responses import AsciiJSONResponse
from azr_verify.service.api.schemas import (
    AuditResponse,
    CheckRequest,
    CheckResponse,
    ErrorResponse,
    HealthResponse,
    InfoResponse,
    JobCreated,
    JobState,
    JobStatusResponse,
)
from azr_verify.service.audit import AuditQuery
from azr_verify.service.config import Settings
from azr_verify.service.metrics import Metrics
from azr_verify.service.models import PolicyName, Verdict

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_AUDIT_LIMIT = 10_000
CURSOR_PATTERN = r"^[0-9]+(-[0-9]+)?$"  # a SQLite row id or a Redis stream entry id


class AuditOrder(StrEnum):
    DESC = "desc"
    ASC = "asc"


KeyName = Annotated[str | None, Depends(api_key_name)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text} for status, text in {
        400: "Malformed JSON or undecodable body", 401: "Missing or invalid API key",
        413: "Body or item count over the limit", 422: "Invalid request fields",
        429: "Overloaded; retry after Retry-After seconds",
        503: "Redis or the sandboxes are unavailable"}.items()}


def _backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _check_size(request: Request, body: CheckRequest) -> None:
    limit = _settings(request).max_items
    if len(body.items) > limit:
        raise ApiError(413, "too_many_items", f"{len(body.items)} items exceed the limit of "
                       f"{limit} per request; split the batch")


def build_router() -> APIRouter:
    router = APIRouter()

    @router.post("/v1/check", response_model=CheckResponse, responses=_ERRORS,
                 summary="Check a batch of triples and wait for the verdicts")
    async def check(request: Request, body: CheckRequest, key_name: KeyName) -> Response:
        _check_size(request, body)
        results = await _backend(request).check(body.items, body.policy, key_name)
        return AsciiJSONResponse({"results": [r.model_dump(mode="json") for r in results]})

    @router.post("/v1/jobs", response_model=JobCreated, status_code=202, responses=_ERRORS,
                 summary="Submit a batch; poll GET /v1/jobs/{job_id} for progress and results")
    async def submit(request: Request, body: CheckRequest, key_name: KeyName) -> Response:
        _check_size(request, body)
        job_id = await _backend(request).submit(body.items, body.policy, key_name)
        created = JobCreated(job_id=job_id, status=JobState.QUEUED)
        return AsciiJSONResponse(created.model_dump(mode="json"), status_code=202)

    @router.get("/v1/jobs/{job_id}", response_model=JobStatusResponse,
                responses={404: {"model": ErrorResponse, "description": "Unknown job"}},
                summary="A job's status, progress and (once finished) results")
    async def job(request: Request, job_id: str, key_name: KeyName) -> Response:
        status = await _backend(request).job(job_id, key_name)
        return AsciiJSONResponse(status.model_dump(mode="json"))

    @router.get("/v1/audit", response_model=AuditResponse,
                summary="Rejected items (every verdict but accepted and wrong_output)",
                description="An API key reads only its own records; an admin key "
                            "(AZR_VERIFY_ADMIN_KEYS), or any caller when the service has no "
                            "keys, reads all of them. Pages continue with `cursor`.")
    async def audit(request: Request, key_name: KeyName,
                    verdict: Annotated[Verdict | None, Query()] = None,
                    since: Annotated[float | None, Query(description="UNIX time")] = None,
                    limit: Annotated[int, Query(ge=1, le=MAX_AUDIT_LIMIT)] = 100,
                    order: Annotated[AuditOrder, Query(description="desc: newest first; "
                                                       "asc: oldest first")] = AuditOrder.DESC,
                    cursor: Annotated[str | None, Query(
                        pattern=CURSOR_PATTERN, max_length=64,
                        description="next_cursor of the previous page")] = None) -> Response:
        query = AuditQuery(verdict=verdict, since=since, limit=limit,
                           oldest_first=order is AuditOrder.ASC, cursor=cursor)
        page = await read_audit(request, key_name, query)
        return AsciiJSONResponse({"records": [r.model_dump(mode="json") for r in page.records],
                                  "next_cursor": page.next_cursor})

    @router.get("/v1/info", response_model=InfoResponse, summary="Version, backend, limits")
    async def info(request: Request, key_name: KeyName) -> InfoResponse:
        s = _settings(request)
        backend = _backend(request)
        return InfoResponse(
            version=__version__, mode=backend.mode, backend=s.sandbox.value,
            policies=[p.value for p in PolicyName],
            limits={"max_items": s.max_items, "max_body_bytes": s.max_body_bytes,
                    "max_queue_depth": s.max_queue_depth,
                    "default_timeout_s": s.default_timeout_s, "max_timeout_s": s.max_timeout_s,
                    "default_memory_mb": s.default_memory_mb, "max_memory_mb": s.max_memory_mb,
                    "output_limit_chars": s.output_limit_chars,
                    "default_determinism_runs": s.default_determinism_runs,
                    "max_determinism_runs": s.determinism_seeds,
                    "chunk_size": s.chunk_size},
            executors=await backend.executors())

    @router.get("/healthz", response_model=HealthResponse, summary="Liveness")
    async def healthz() -> HealthResponse:
        return HealthResponse(status="ok")

    @router.get("/readyz", response_model=HealthResponse,
                responses={503: {"model": ErrorResponse, "description": "Not ready"}},
                summary="Readiness: sandbox pool up; Redis reachable in distributed mode")
    async def readyz(request: Request) -> Response:
        checks = await _backend(request).readiness()
        failing = sorted(name for name, check in checks.items() if not check.get("ok", False))
        if failing:
            return error_response(503, "not_ready", f"not ready: {', '.join(failing)}",
                                  details=[{"check": name, **check}
                                           for name, check in checks.items()])
        return AsciiJSONResponse({"status": "ready", "checks": checks})

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        registry: Metrics = request.app.state.metrics
        body = await run_in_threadpool(registry.render)
        return Response(body, media_type=PROMETHEUS_CONTENT_TYPE)

    return router
