"""The HTTP routes. They only translate between HTTP and the execution mode (service/modes/);
what each needs comes in as a dependency (api/deps.py)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from azr_verify.service import __version__
from azr_verify.service.api import fusion
from azr_verify.service.api.auditing import (
    MAX_PAGE,
    audit_query,
    export_response,
    read_page,
)
from azr_verify.service.api.deps import (
    ApiKeysDep,
    AuditFiltersDep,
    AuditStoreDep,
    KeyName,
    MetricsDep,
    ModeDep,
    SettingsDep,
)
from azr_verify.service.api.errors import ApiError, error_response
from azr_verify.service.api.fusion import RunCodeRequest, RunCodeResponse
from azr_verify.service.api.responses import AsciiJSONResponse
from azr_verify.service.api.schemas import (
    AuditResponse,
    CheckRequest,
    CheckResponse,
    ErrorResponse,
    HealthResponse,
    InfoResponse,
    JobCreated,
    TestcaseRequest,
    TestcaseResponse,
)
from azr_verify.service.config import Settings
from azr_verify.service.models import JobState, JobStatusResponse, PolicyName

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CURSOR_PATTERN = r"^[0-9]+(-[0-9]+)?$"  # a SQLite row id or a Redis stream entry id


class AuditOrder(StrEnum):
    DESC = "desc"
    ASC = "asc"


class Tag:
    """OpenAPI tags: how /docs groups the operations."""

    CHECK = "check"
    TESTCASES = "testcases"
    SANDBOX_FUSION = "sandbox-fusion"
    JOBS = "jobs"
    AUDIT = "audit"
    SERVICE = "service"


TAGS_METADATA = [
    {"name": Tag.CHECK, "description": "Check a batch of (program, input, output) triples and "
     "wait for the verdicts (docs/design.md §2)."},
    {"name": Tag.TESTCASES, "description": "Whole programs run as scripts on stdin/stdout "
     "test cases, one verdict per case and one per program (docs/design.md §10)."},
    {"name": Tag.SANDBOX_FUSION, "description": "SandboxFusion's `POST /run_code` for Python: "
     "the `sandbox-fusion` client package and veRL's sandbox reward work unchanged. API keys "
     "may also come as HTTP basic auth (`http://name:KEY@host:port`), which those clients "
     "send from the URL."},
    {"name": Tag.JOBS, "description": "The same batches as asynchronous jobs with progress."},
    {"name": Tag.AUDIT, "description": "Rejected items and why: every verdict but accepted "
     "and wrong_output. The console at /console shows the same records."},
    {"name": Tag.SERVICE, "description": "Version, limits, health and metrics."},
]

_DEDUCTION = "def f(a, b):\n    return sorted(a)[:b]"
CHECK_EXAMPLES: dict[str, Any] = {
    "validate_proposal": {
        "summary": "Validate a proposal: run f and return its output",
        "value": {"items": [{"id": "p1", "program": _DEDUCTION, "input": "[3, 1, 2], 2"}]}},
    "check_answers": {
        "summary": "Check answers against expected outputs",
        "value": {"items": [
            {"id": "deduction", "program": _DEDUCTION, "input": "[3, 1, 2], 2",
             "output": "[1, 2]"},
            {"id": "abduction", "program": _DEDUCTION, "input": "[5, 4], 1", "output": "[4]"}],
            "policy": "azr"}},
    "unsafe_and_limits": {
        "summary": "A program the policy refuses, and per-item limits",
        "value": {"items": [
            {"id": "unsafe", "program": "import os\ndef f(x):\n    return os.getcwd()",
             "input": "0", "meta": {"step": 12, "role": "proposer"}},
            {"id": "slow", "program": "def f(n):\n    return sum(range(n))",
             "input": "1000000", "timeout_s": 2.0, "memory_mb": 128, "determinism_runs": 2}]}},
}
CheckBody = Annotated[CheckRequest, Body(openapi_examples=CHECK_EXAMPLES)]
_SUM = "import sys\nprint(sum(map(int, sys.stdin.read().split())))\n"
TESTCASE_EXAMPLES: dict[str, Any] = {
    "judge_a_program": {
        "summary": "A program and its stdin/stdout test cases",
        "value": {"items": [{"id": "sum", "program": _SUM, "cases": [
            {"input": "1 2\n", "output": "3\n"}, {"input": "10 20 30", "output": "60"}]}]}},
    "compare_and_limits": {
        "summary": "Token comparison, per-case limits, and a run without expected output",
        "value": {"items": [
            {"id": "tokens", "program": "print(*input().split(), sep='\\n')",
             "cases": [{"input": "a b c", "output": "a b c"}], "compare": "tokens",
             "timeout_s": 2.0, "memory_mb": 128},
            {"id": "just-run", "program": "print(input().upper())",
             "cases": [{"input": "hello"}], "meta": {"step": 3}}]}},
}
TestcaseBody = Annotated[TestcaseRequest, Body(openapi_examples=TESTCASE_EXAMPLES)]
RUN_CODE_EXAMPLES: dict[str, Any] = {
    "python": {"summary": "What the sandbox-fusion client and veRL send",
               "value": {"code": "print(input()[::-1])", "language": "python",
                         "stdin": "hello", "run_timeout": 10, "compile_timeout": 10,
                         "memory_limit_MB": 1024, "files": {}, "fetch_files": []}},
}
RunCodeBody = Annotated[RunCodeRequest, Body(openapi_examples=RUN_CODE_EXAMPLES)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text} for status, text in {
        400: "Malformed JSON or undecodable body", 401: "Missing or invalid API key",
        413: "Body or item count over the limit", 422: "Invalid request fields",
        429: "Overloaded; retry after Retry-After seconds",
        503: "Redis or the sandboxes are unavailable"}.items()}


def _check_size(request: Request, settings: Settings,
                body: CheckRequest | TestcaseRequest) -> None:
    request.state.items = len(body.items)  # for the access log
    limit = settings.max_items
    if len(body.items) > limit:
        raise ApiError(413, "too_many_items", f"{len(body.items)} items exceed the limit of "
                       f"{limit} per request; split the batch")


def _check_testcase_size(request: Request, settings: Settings, body: TestcaseRequest) -> None:
    _check_size(request, settings, body)
    cases = sum(len(item.cases) for item in body.items)
    limit = settings.max_testcases
    if cases > limit:
        raise ApiError(413, "too_many_testcases", f"{cases} test cases exceed the limit of "
                       f"{limit} per request (AZR_VERIFY_MAX_TESTCASES); split the batch")


def build_router() -> APIRouter:
    router = APIRouter()

    @router.post("/v1/check", response_model=CheckResponse, responses=_ERRORS,
                 tags=[Tag.CHECK], operation_id="check",
                 summary="Check a batch of triples and wait for the verdicts")
    async def check(request: Request, body: CheckBody, key_name: KeyName, mode: ModeDep,
                    settings: SettingsDep) -> Response:
        _check_size(request, settings, body)
        results = await mode.check(body.items, body.policy, key_name)
        return AsciiJSONResponse({"results": [r.model_dump(mode="json") for r in results]})

    @router.post("/v1/testcases", response_model=TestcaseResponse, responses=_ERRORS,
                 tags=[Tag.TESTCASES], operation_id="checkTestcases",
                 summary="Judge programs on stdin/stdout test cases and wait for the verdicts",
                 description="Each program runs as `python program.py` once per case, in a "
                             "fresh sandboxed process fed the case's input on stdin; its stdout "
                             "is compared with the case's output (`compare`: exact, lines or "
                             "tokens). A result per program and per case, in order. Cases are "
                             "cached by content; `max_testcases` bounds the cases of a "
                             "request.")
    async def testcases(request: Request, body: TestcaseBody, key_name: KeyName, mode: ModeDep,
                        settings: SettingsDep) -> Response:
        _check_testcase_size(request, settings, body)
        results = await mode.check_testcases(body.items, body.policy, key_name)
        return AsciiJSONResponse({"results": [r.model_dump(mode="json") for r in results]})

    @router.post("/run_code", response_model=RunCodeResponse, responses=_ERRORS,
                 tags=[Tag.SANDBOX_FUSION], operation_id="runCode",
                 summary="SandboxFusion's run_code: run one Python program on stdin",
                 description="SandboxFusion's request and response, for Python only. The "
                             "program runs once (never from the cache) in the same hardened "
                             "sandbox as every item, under the server's `run_code_policy`. "
                             "A language other than python, `files` or `fetch_files` is "
                             "answered with status SandboxError and a message, as "
                             "SandboxFusion answers what it cannot run.")
    async def run_code(request: Request, body: RunCodeBody, key_name: KeyName, mode: ModeDep,
                       settings: SettingsDep) -> Response:
        request.state.items = 1
        problem = fusion.unsupported(body)
        if problem is not None:
            return AsciiJSONResponse(fusion.sandbox_error(problem).model_dump(mode="json"))
        memory = body.memory_limit_MB if body.memory_limit_MB > 0 else None
        result = await mode.run_code(
            body.code, body.stdin or "", body.run_timeout, memory,
            PolicyName(settings.run_code_policy), key_name)
        return AsciiJSONResponse(fusion.response_for(result).model_dump(mode="json"))

    @router.post("/v1/jobs", response_model=JobCreated, status_code=202, responses=_ERRORS,
                 tags=[Tag.JOBS], operation_id="submitJob",
                 summary="Submit a batch; poll GET /v1/jobs/{job_id} for progress and results")
    async def submit(request: Request, body: CheckBody, key_name: KeyName, mode: ModeDep,
                     settings: SettingsDep) -> Response:
        _check_size(request, settings, body)
        job_id = await mode.submit(body.items, body.policy, key_name)
        created = JobCreated(job_id=job_id, status=JobState.QUEUED)
        return AsciiJSONResponse(created.model_dump(mode="json"), status_code=202)

    @router.get("/v1/jobs/{job_id}", response_model=JobStatusResponse,
                tags=[Tag.JOBS], operation_id="getJob",
                responses={404: {"model": ErrorResponse, "description": "Unknown job"},
                           401: _ERRORS[401]},
                summary="A job's status, progress and (once finished) results")
    async def job(job_id: str, key_name: KeyName, mode: ModeDep) -> Response:
        status = await mode.job(job_id, key_name)
        return AsciiJSONResponse(status.model_dump(mode="json"))

    @router.get("/v1/audit", response_model=AuditResponse, tags=[Tag.AUDIT],
                operation_id="listAuditRecords", responses={401: _ERRORS[401],
                                                            422: _ERRORS[422]},
                summary="Rejected items, a page at a time",
                description="Rejected items (every verdict but accepted and wrong_output), "
                            "newest first unless order=asc. An API key reads only its own "
                            "records; an admin key (AZR_VERIFY_ADMIN_KEYS), or any caller when "
                            "the service has no keys, reads all of them. Pages continue with "
                            "`cursor`.")
    async def audit(key_name: KeyName, filters: AuditFiltersDep, keys: ApiKeysDep,
                    store: AuditStoreDep,
                    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
                    order: Annotated[AuditOrder, Query(description="desc: newest first; "
                                                       "asc: oldest first")] = AuditOrder.DESC,
                    cursor: Annotated[str | None, Query(
                        pattern=CURSOR_PATTERN, max_length=64,
                        description="`next_cursor` of the previous page.")] = None) -> Response:
        query = audit_query(keys, key_name, filters)
        page = await read_page(store, query, limit, cursor, oldest_first=order is
                               AuditOrder.ASC)
        return AsciiJSONResponse({"records": [r.model_dump(mode="json") for r in page.records],
                                  "next_cursor": page.next_cursor})

    @router.get("/v1/audit/export", tags=[Tag.AUDIT], operation_id="exportAuditRecords",
                response_class=Response,
                responses={200: {"description": "Every matching record, oldest first",
                                 "content": {"application/x-ndjson": {}, "text/csv": {}}},
                           401: _ERRORS[401], 422: _ERRORS[422]},
                summary="Every matching record as JSONL or CSV (streamed)")
    async def audit_export(key_name: KeyName, filters: AuditFiltersDep, keys: ApiKeysDep,
                           store: AuditStoreDep,
                           format: Annotated[Literal["jsonl", "csv"], Query()] = "jsonl"
                           ) -> Response:
        return export_response(store, audit_query(keys, key_name, filters), format)

    @router.get("/v1/info", response_model=InfoResponse, tags=[Tag.SERVICE],
                operation_id="getInfo", responses={401: _ERRORS[401]},
                summary="Version, backend, limits")
    async def info(key_name: KeyName, mode: ModeDep, s: SettingsDep) -> InfoResponse:
        return InfoResponse(
            version=__version__, mode=mode.mode, backend=s.sandbox.value,
            policies=[p.value for p in PolicyName],
            limits={"max_items": s.max_items, "max_body_bytes": s.max_body_bytes,
                    "max_queue_depth": s.max_queue_depth,
                    "default_timeout_s": s.default_timeout_s, "max_timeout_s": s.max_timeout_s,
                    "default_memory_mb": s.default_memory_mb, "max_memory_mb": s.max_memory_mb,
                    "output_limit_chars": s.output_limit_chars,
                    "default_determinism_runs": s.default_determinism_runs,
                    "max_determinism_runs": s.determinism_seeds,
                    "chunk_size": s.chunk_size, "max_testcases": s.max_testcases,
                    "script_output_limit_bytes": s.script_output_limit_bytes,
                    "testcase_excerpt_chars": s.testcase_excerpt_chars,
                    "run_code_policy": s.run_code_policy},
            executors=await mode.executors())

    @router.get("/healthz", response_model=HealthResponse, tags=[Tag.SERVICE],
                operation_id="getLiveness", summary="Liveness")
    async def healthz() -> HealthResponse:
        return HealthResponse(status="ok")

    @router.get("/readyz", response_model=HealthResponse, tags=[Tag.SERVICE],
                operation_id="getReadiness",
                responses={503: {"model": ErrorResponse, "description": "Not ready"}},
                summary="Readiness: sandbox pool up; Redis reachable in distributed mode")
    async def readyz(mode: ModeDep) -> Response:
        checks = await mode.readiness()
        failing = sorted(name for name, check in checks.items() if not check.get("ok", False))
        if failing:
            return error_response(503, "not_ready", f"not ready: {', '.join(failing)}",
                                  details=[{"check": name, **check}
                                           for name, check in checks.items()])
        return AsciiJSONResponse({"status": "ready", "checks": checks})

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response,
                tags=[Tag.SERVICE], operation_id="getMetrics",
                responses={200: {"content": {"text/plain": {}}, "description": "Prometheus "
                                 "text format"}})
    async def metrics(registry: MetricsDep) -> Response:
        body = await run_in_threadpool(registry.render)
        return Response(body, media_type=PROMETHEUS_CONTENT_TYPE)

    return router
