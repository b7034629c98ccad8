"""The client against a real HTTP server on loopback.

The service is built in parallel, so these tests run the client against a small starlette app
served by a real uvicorn on 127.0.0.1: real sockets, real 429s with Retry-After, real 413s,
real connection refusals. The stub "executes" programs with a fixed rule (f is the identity)
because what is under test is the client's HTTP behaviour, not verification.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from azr_verify.client import (
    APIError,
    AsyncClient,
    AuthError,
    AzrClientError,
    Client,
    ClientConfig,
    InvalidItemError,
    IOPair,
    JobFailedError,
    JobState,
    JobTimeoutError,
    NotFoundError,
    ProtocolError,
    RateLimitedError,
    RequestTimeoutError,
    SandboxFailure,
    ServerError,
    ServiceUnavailableError,
    TransportError,
    Verdict,
)

uvicorn = pytest.importorskip("uvicorn")
starlette_apps = pytest.importorskip("starlette.applications")
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

FAST = ClientConfig(backoff_initial_s=0.01, backoff_max_s=0.05, poll_interval_s=0.01,
                    poll_interval_max_s=0.02, timeout_s=5.0)


# -- the stub server -----------------------------------------------------------------------


@dataclass
class StubState:
    """What the stub does next, and what it saw."""

    api_key: str | None = None
    max_items: int = 100_000
    # Scripted failures returned before serving normally: (status, headers, body bytes).
    failures: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    check_sizes: list[int] = field(default_factory=list)
    check_times: list[float] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    sandbox_once_seen: set[str] = field(default_factory=set)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    audit_queries: list[dict[str, str]] = field(default_factory=list)
    slow_s: float = 0.0
    bad_body: bool = False


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None
           ) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


def _judge(state: StubState, item: dict[str, Any]) -> dict[str, Any]:
    """Identity semantics with a few magic programs to provoke each verdict."""
    program, inp, out = item["program"], item["input"], item.get("output")
    base: dict[str, Any] = {"id": item.get("id")}
    if "SANDBOX_ALWAYS" in program:
        return {**base, "verdict": "sandbox_error", "error": "zygote died"}
    if "SANDBOX_ONCE" in program and program + inp not in state.sandbox_once_seen:
        state.sandbox_once_seen.add(program + inp)
        return {**base, "verdict": "sandbox_error", "error": "zygote died"}
    if "import os" in program:
        return {**base, "verdict": "unsafe",
                "violations": [{"rule": "import", "name": "os", "line": 1}]}
    if "raise" in program:
        return {**base, "verdict": "runtime_error", "error_type": "ValueError", "error": "x"}
    if out is None or out == inp:
        return {**base, "verdict": "accepted", "output": inp}
    return {**base, "verdict": "wrong_output", "output": inp}


def build_stub(state: StubState) -> Any:
    async def gate(request: Request) -> Response | None:
        state.headers.append(dict(request.headers))
        expected = None if state.api_key is None else f"Bearer {state.api_key}"
        if expected is not None and request.headers.get("authorization") != expected:
            return _error(401, "unauthorized", "missing or wrong API key")
        if state.failures:
            status, headers, body = state.failures.pop(0)
            return Response(body, status_code=status, headers=headers)
        return None

    async def check(request: Request) -> Response:
        denied = await gate(request)
        if denied is not None:
            return denied
        body = json.loads(await request.body())
        items = body["items"]
        if len(items) > state.max_items:
            return _error(413, "too_many_items", f"{len(items)} > {state.max_items}")
        state.check_sizes.append(len(items))
        state.check_times.append(time.monotonic())
        if state.slow_s:
            await asyncio.sleep(state.slow_s)
        if state.bad_body:
            return JSONResponse({"results": "nope"})
        return JSONResponse({"results": [_judge(state, item) for item in items]})

    async def submit(request: Request) -> Response:
        denied = await gate(request)
        if denied is not None:
            return denied
        items = json.loads(await request.body())["items"]
        job_id = f"job-{len(state.jobs) + 1}"
        fail = any("JOB_FAILS" in item["program"] for item in items)
        never = any("JOB_NEVER" in item["program"] for item in items)
        state.jobs[job_id] = {"items": items, "polls": 0, "fail": fail, "never": never}
        return JSONResponse({"job_id": job_id, "status": "queued"}, status_code=202)

    async def job(request: Request) -> Response:
        denied = await gate(request)
        if denied is not None:
            return denied
        job = state.jobs.get(request.path_params["job_id"])
        if job is None:
            return _error(404, "job_not_found", "no such job")
        job["polls"] += 1
        total = len(job["items"])
        if job["never"] or job["polls"] < 3:
            status = "queued" if job["polls"] == 1 else "running"
            return JSONResponse({"job_id": request.path_params["job_id"], "status": status,
                                 "progress": {"done": 0, "total": total}, "results": None})
        if job["fail"]:
            return JSONResponse({"job_id": request.path_params["job_id"], "status": "failed",
                                 "progress": {"done": 0, "total": total}, "results": None,
                                 "error": "worker lost"})
        return JSONResponse({"job_id": request.path_params["job_id"], "status": "finished",
                             "progress": {"done": total, "total": total},
                             "results": [_judge(state, i) for i in job["items"]]})

    async def audit(request: Request) -> Response:
        denied = await gate(request)
        if denied is not None:
            return denied
        state.audit_queries.append(dict(request.query_params))
        records = [
            {"time": 1735689600.5, "program_hash": "ab", "program": "import os",
             "input": "1", "verdict": "unsafe", "api_key_name": None,
             "violations": [{"rule": "import", "name": "os", "line": 1}],
             "meta": {"step": 3}, "future_field": 1},
            {"time": 1735689600.0, "program_hash": "cd", "program": "raise", "input": "1",
             "verdict": "runtime_error", "error": "ValueError: x"},
        ]
        wanted = request.query_params.get("verdict")
        records = [r for r in records if wanted is None or r["verdict"] == wanted]
        return JSONResponse({"records": records[:int(request.query_params.get("limit", 100))]})

    async def info(request: Request) -> Response:
        denied = await gate(request)
        if denied is not None:
            return denied
        return JSONResponse({"version": "0.1.0", "backend": "stub", "policies": ["azr"],
                             "limits": {"max_items": state.max_items}})

    return starlette_apps.Starlette(routes=[
        Route("/v1/check", check, methods=["POST"]),
        Route("/v1/jobs", submit, methods=["POST"]),
        Route("/v1/jobs/{job_id}", job, methods=["GET"]),
        Route("/v1/audit", audit, methods=["GET"]),
        Route("/v1/info", info, methods=["GET"]),
    ])


class LoopbackServer:
    """A real uvicorn server in a thread, on a port the OS picked."""

    def __init__(self, app: Any, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("stub server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def stub() -> Iterator[tuple[str, list[StubState]]]:
    # One server for the module; each test gets a fresh state through the holder.
    holder = [StubState()]
    proxy = _StateProxy(holder)
    with LoopbackServer(build_stub(proxy)) as server:  # type: ignore[arg-type]
        yield server.url, holder


class _StateProxy:
    """Forwards attribute access to the current test's StubState."""

    def __init__(self, holder: list[StubState]) -> None:
        object.__setattr__(self, "_holder", holder)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._holder[0], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._holder[0], name, value)


@pytest.fixture()
def server(stub: tuple[str, list[StubState]]) -> tuple[str, StubState]:
    url, holder = stub
    holder[0] = StubState()
    return url, holder[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def items(n: int) -> list[dict[str, Any]]:
    return [{"id": k, "program": "def f(a): return a", "input": str(k),
             "output": str(k) if k % 3 else "-1"} for k in range(n)]


# -- tests -----------------------------------------------------------------------------------


def test_check_sync_and_async_give_the_same_results(server: tuple[str, StubState]) -> None:
    url, _ = server
    batch = [*items(50), {"program": "import os\ndef f(a): return a", "input": "1"}]
    with Client(url, config=FAST) as client:
        sync_results = client.check(batch)

    async def run() -> list[Any]:
        async with AsyncClient(url, config=FAST) as client:
            return await client.check(batch)

    async_results = asyncio.run(run())
    assert sync_results == async_results
    assert sync_results[1].verdict is Verdict.ACCEPTED and sync_results[1].output == "1"
    assert sync_results[0].verdict is Verdict.WRONG_OUTPUT
    assert sync_results[-1].verdict is Verdict.UNSAFE
    assert sync_results[-1].violations[0].name == "os"


def test_chunking_10000_items_keeps_order(server: tuple[str, StubState]) -> None:
    url, state = server
    batch = items(10_000)
    with Client(url, config=FAST) as client:
        results = client.check(batch)
    assert [r.id for r in results] == list(range(10_000))
    assert [r.output for r in results] == [str(k) for k in range(10_000)]
    assert state.check_sizes == [512] * 19 + [10_000 - 19 * 512]


def test_async_chunks_run_concurrently_and_keep_order(server: tuple[str, StubState]) -> None:
    url, state = server
    state.slow_s = 0.2
    config = FAST.model_copy(update={"chunk_size": 100, "max_concurrency": 4})

    async def run() -> list[Any]:
        async with AsyncClient(url, config=config) as client:
            return await client.check(items(800))

    started = time.monotonic()
    results = asyncio.run(run())
    elapsed = time.monotonic() - started
    assert [r.id for r in results] == list(range(800))
    assert len(state.check_sizes) == 8
    # 8 chunks of 0.2 s, 4 at a time: about 0.4 s, far below the 1.6 s of a serial client.
    assert elapsed < 1.3


def test_413_halves_the_chunk(server: tuple[str, StubState]) -> None:
    url, state = server
    state.max_items = 300
    with Client(url, config=FAST) as client:
        results = client.check(items(1000))
    assert [r.id for r in results] == list(range(1000))
    assert max(state.check_sizes) <= 300
    assert sum(state.check_sizes) == 1000


def test_retries_a_real_429_honouring_retry_after(server: tuple[str, StubState]) -> None:
    url, state = server
    body = json.dumps({"error": {"code": "overloaded", "message": "queue full"}}).encode()
    state.failures = [(429, {"retry-after": "1", "content-type": "application/json"}, body)]
    with Client(url, config=FAST) as client:
        started = time.monotonic()
        results = client.check(items(3))
        elapsed = time.monotonic() - started
    assert [r.id for r in results] == [0, 1, 2]
    assert elapsed >= 1.0  # waited as long as the server asked, not the 10 ms backoff
    assert len(state.headers) == 2  # one refused attempt, one served


def test_retries_503_then_gives_up_with_typed_error(server: tuple[str, StubState]) -> None:
    url, state = server
    body = json.dumps({"error": {"code": "redis_down", "message": "redis unreachable"}})
    state.failures = [(503, {"content-type": "application/json"}, body.encode())] * 10
    config = FAST.model_copy(update={"max_retries": 2})
    with Client(url, config=config) as client, pytest.raises(ServiceUnavailableError) as info:
        client.check(items(1))
    assert info.value.status == 503 and info.value.code == "redis_down"
    assert len(state.headers) == 3


def test_429_exhausted_is_rate_limited_error(server: tuple[str, StubState]) -> None:
    url, state = server
    body = json.dumps({"error": {"code": "overloaded", "message": "full"}}).encode()
    state.failures = [(429, {"retry-after": "0"}, body)] * 5
    config = FAST.model_copy(update={"max_retries": 1})
    with Client(url, config=config) as client, pytest.raises(RateLimitedError) as info:
        client.check(items(1))
    assert info.value.retry_after_s == 0.0
    assert isinstance(info.value, APIError) and isinstance(info.value, AzrClientError)


def test_non_json_error_body_is_mapped(server: tuple[str, StubState]) -> None:
    url, state = server
    state.failures = [(500, {"content-type": "text/html"}, b"<h1>boom</h1>")]
    with Client(url, config=FAST) as client, pytest.raises(ServerError) as info:
        client.check(items(1))
    assert info.value.code == "http_500" and "boom" in info.value.message


def test_malformed_success_body_is_protocol_error(server: tuple[str, StubState]) -> None:
    url, state = server
    state.bad_body = True
    with Client(url, config=FAST) as client, pytest.raises(ProtocolError):
        client.check(items(1))


def test_api_key_is_sent_as_bearer(server: tuple[str, StubState]) -> None:
    url, state = server
    state.api_key = "s3cret"
    with Client(url, api_key="s3cret", config=FAST) as client:
        assert client.info().backend == "stub"
    with Client(url, api_key="wrong", config=FAST) as client, pytest.raises(AuthError) as info:
        client.info()
    assert info.value.status == 401 and info.value.code == "unauthorized"
    assert state.headers[0]["authorization"] == "Bearer s3cret"


def test_connection_refused_is_transport_error_not_httpx() -> None:
    config = FAST.model_copy(update={"max_retries": 2})
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, config=config) as client, pytest.raises(TransportError) as info:
        client.check(items(1))
    assert not isinstance(info.value, httpx.HTTPError)
    assert isinstance(info.value.__cause__, httpx.HTTPError)


def test_connection_errors_are_retried_until_the_server_appears() -> None:
    state = StubState()
    port = free_port()
    config = FAST.model_copy(update={"max_retries": 30, "backoff_initial_s": 0.05,
                                     "backoff_max_s": 0.2})
    results: list[Any] = []

    def call() -> None:
        with Client(f"http://127.0.0.1:{port}", config=config) as client:
            results.extend(client.check(items(2)))

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.4)  # the first attempts hit a closed port
    with LoopbackServer(build_stub(state), port=port):
        caller.join(10)
    assert [r.id for r in results] == [0, 1]


def test_read_timeout_is_request_timeout_error(server: tuple[str, StubState]) -> None:
    url, state = server
    state.slow_s = 1.0
    config = FAST.model_copy(update={"timeout_s": 0.2, "max_retries": 0})
    with Client(url, config=config) as client, pytest.raises(RequestTimeoutError):
        client.check(items(1))


def test_invalid_item_is_rejected_before_sending(server: tuple[str, StubState]) -> None:
    url, state = server
    with Client(url, config=FAST) as client, pytest.raises(InvalidItemError):
        client.check([{"program": "def f(a): return a"}])  # no input
    assert state.headers == []


def test_sandbox_error_items_are_resent_once(server: tuple[str, StubState]) -> None:
    url, state = server
    batch = items(4)
    batch[2] = {"id": 2, "program": "SANDBOX_ONCE\ndef f(a): return a", "input": "2"}
    with Client(url, config=FAST) as client:
        results = client.check(batch)
    assert [r.verdict for r in results] == [Verdict.WRONG_OUTPUT, Verdict.ACCEPTED,
                                            Verdict.ACCEPTED, Verdict.WRONG_OUTPUT]
    assert state.check_sizes == [4, 1]  # only the failed item went back


def test_jobs_submit_poll_wait(server: tuple[str, StubState]) -> None:
    url, _ = server
    with Client(url, config=FAST) as client:
        job_id = client.submit(items(5))
        first = client.job(job_id)
        assert first.status is JobState.QUEUED and first.results is None
        done = client.wait(job_id, timeout=5)
        assert done.status is JobState.FINISHED and done.progress.done == 5
        assert done.results is not None and [r.id for r in done.results] == list(range(5))
        with pytest.raises(NotFoundError):
            client.job("nope")
        failing = client.submit([{"program": "JOB_FAILS", "input": "1"}])
        with pytest.raises(JobFailedError) as failed:
            client.wait(failing, timeout=5)
        assert failed.value.job is not None
        never = client.submit([{"program": "JOB_NEVER", "input": "1"}])
        with pytest.raises(JobTimeoutError):
            client.wait(never, timeout=0.1)


def test_async_jobs_audit_info(server: tuple[str, StubState]) -> None:
    url, state = server

    async def run() -> None:
        async with AsyncClient(url, config=FAST) as client:
            job_id = await client.submit(items(2))
            done = await client.wait(job_id, timeout=5)
            assert done.results is not None and len(done.results) == 2
            records = await client.audit(verdict=Verdict.UNSAFE, since=1.5, limit=10)
            assert len(records) == 1 and records[0].violations[0].rule == "import"
            assert records[0].meta == {"step": 3}
            info = await client.info()
            assert info.version == "0.1.0" and info.policies == ["azr"]

    asyncio.run(run())
    assert state.audit_queries == [{"verdict": "unsafe", "since": "1.5", "limit": "10"}]


def test_audit_sync_keeps_unknown_fields(server: tuple[str, StubState]) -> None:
    url, state = server
    since = datetime(2025, 1, 1, tzinfo=UTC)
    with Client(url, config=FAST) as client:
        records = client.audit(since=since)
    assert [r.verdict for r in records] == [Verdict.UNSAFE, Verdict.RUNTIME_ERROR]
    assert records[0].model_extra == {"future_field": 1}
    assert records[0].time == 1735689600.5
    # The API takes UNIX seconds.
    assert state.audit_queries == [{"since": "1735689600.0"}]


def test_azr_helpers(server: tuple[str, StubState]) -> None:
    url, _ = server
    identity = "def f(a):\n    return a"
    with Client(url, config=FAST) as client:
        outcome = client.validate_proposal(identity, "'Hello World'")
        assert outcome.valid and outcome.gold_output == "'Hello World'"
        rejected = client.validate_proposal("import os\n" + identity, "1")
        assert not rejected.valid and rejected.reason is Verdict.UNSAFE
        assert rejected.detail == "import:os@1"
        induction = client.validate_induction_proposal(
            "raise\n" + identity, ["1", "2"], min_valid=1)
        assert not induction.valid and induction.reason is Verdict.RUNTIME_ERROR
        assert client.check_deduction(identity, "1", "1")
        assert not client.check_deduction(identity, "1", "2")
        assert client.check_abduction(identity, "3", "3")
        assert client.check_induction(identity, [IOPair("1", "1"), IOPair("2", "2")])
        assert not client.check_induction(identity, [IOPair("1", "1"), IOPair("2", "3")])
        with pytest.raises(SandboxFailure) as failure:
            client.check_deduction("SANDBOX_ALWAYS", "1", "1")
        assert failure.value.results[0].verdict is Verdict.SANDBOX_ERROR
        with pytest.raises(SandboxFailure):
            client.validate_proposal("SANDBOX_ALWAYS", "1")


def test_async_azr_helpers_match_sync(server: tuple[str, StubState]) -> None:
    url, _ = server
    identity = "def f(a):\n    return a"

    async def run() -> tuple[bool, bool, bool, str | None]:
        async with AsyncClient(url, config=FAST) as client:
            proposal = await client.validate_proposal(identity, "[1, 2]")
            return (await client.check_deduction(identity, "1", "1"),
                    await client.check_abduction(identity, "1", "2"),
                    await client.check_induction(identity, [IOPair("1", "1")]),
                    proposal.gold_output)

    assert asyncio.run(run()) == (True, False, True, "[1, 2]")


def test_base_url_path_prefix_is_kept() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"version": "x"})

    with Client("http://proxy.example/verify", config=FAST,
                transport=httpx.MockTransport(handler)) as client:
        client.info()
    assert seen == ["/verify/v1/info"]


def test_errors_form_one_tree() -> None:
    for exc in (TransportError, RequestTimeoutError, APIError, RateLimitedError, AuthError,
                ServiceUnavailableError, JobTimeoutError, JobFailedError, SandboxFailure,
                ProtocolError, InvalidItemError):
        assert issubclass(exc, AzrClientError)
