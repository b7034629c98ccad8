"""The client against the real service: `azr-verify serve` as a subprocess on loopback, with
real sandboxes, real 413s, real 429s with Retry-After, real read timeouts and real connection
refusals.

The server runs with its result cache off (`result_cache_bytes=0`), so every check really
runs in a sandbox. Whatever must be in flight when the client's next request arrives carries a
*hold* item (a loop that only ends at its own timeout): it cannot finish sooner on any machine,
and the server's own request counters confirm afterwards that the refusal really happened.

A small stub (built from the service's own models, so it cannot drift) remains only for what
a real server cannot be made to do: answer with a malformed body, put a proxy's 502/503/500
in front, fail a job or a sandbox on demand, send a field from a future version, and hold
requests open until the client has several in flight.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

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
from azr_verify.service import __version__
from azr_verify.service.api.schemas import InfoResponse, JobCreated
from azr_verify.service.models import CheckItem as ServiceItem
from azr_verify.service.models import CheckResult as ServiceResult
from azr_verify.service.models import JobProgress, JobStatusResponse, PolicyName
from azr_verify.service.models import JobState as ServiceJobState
from azr_verify.service.models import Verdict as ServiceVerdict
from azr_verify.service.stores.audit.records import AuditRecord as ServiceAuditRecord
from azr_verify.service.verify.policy import check_program

from .guards import assert_executed, fresh, token
from .servers import (
    CLIENT_KEY,
    CLIENT_MAX_ITEMS,
    ServeProcess,
    client_service_settings,
    free_port,
    posts_answered,
    require_bwrap,
    serve_process,
    wait_until,
)
from .test_api_embedded import metric

KEY = CLIENT_KEY
MAX_ITEMS = CLIENT_MAX_ITEMS
HOLD_S = 2.0
IDENTITY = "def f(a):\n    return a"
LOOP = "def f(x):\n    while True:\n        pass"
FAST = ClientConfig(api_key=KEY, backoff_initial_s=0.01, backoff_max_s=0.05,
                    poll_interval_s=0.01, poll_interval_max_s=0.05, timeout_s=120.0,
                    chunk_size=100)


# -- the real service ------------------------------------------------------------------------


def items(n: int, program: str | None = None) -> list[dict[str, Any]]:
    """Identity on k: accepted, except every third, whose expected output is wrong."""
    program = program or fresh(IDENTITY)
    return [{"id": k, "program": program, "input": str(k),
             "output": str(k) if k % 3 else "-1"} for k in range(n)]


def assert_identity(results: list[Any], n: int) -> None:
    assert [r.id for r in results] == list(range(n))
    assert [r.output for r in results] == [str(k) for k in range(n)]
    assert [r.verdict for r in results] == [
        Verdict.ACCEPTED if k % 3 else Verdict.WRONG_OUTPUT for k in range(n)]
    assert_executed(results)


def hold_item(tag: str = "hold", seconds: float = HOLD_S) -> dict[str, Any]:
    return {"id": tag, "program": fresh(LOOP), "input": "0", "timeout_s": seconds,
            "determinism_runs": 1}


def requests_seen(server: ServeProcess, status: int, route: str = "/v1/check") -> float:
    return posts_answered(server.url, status, route)


def queue_drained(server: ServeProcess) -> None:
    """Waits until nothing is in flight on the server (an abandoned request included)."""
    wait_until(lambda: metric(httpx.get(f"{server.url}/metrics", timeout=30).text,
                              "azr_verify_queue_depth_items") == 0, 120, "an idle server")


@contextmanager
def holding(server: ServeProcess, seconds: float = HOLD_S) -> Iterator[None]:
    """A job whose hold item keeps one item of depth in flight for at least `seconds`."""
    with Client(server.url, config=FAST) as client:
        job_id = client.submit([hold_item(seconds=seconds)])
        try:
            yield
        finally:
            done = client.wait(job_id, timeout=120)
        assert done.results is not None and done.results[0].verdict is Verdict.TIMEOUT


@pytest.fixture(scope="module")
def service(client_service: ServeProcess) -> ServeProcess:
    return client_service


def test_check_sync_and_async_give_the_same_results(service: ServeProcess) -> None:
    batch = [*items(50), {"program": "import os\ndef f(a): return a", "input": "1"}]
    with Client(service.url, config=FAST) as client:
        sync_results = client.check(batch)

    async def run() -> list[Any]:
        async with AsyncClient(service.url, config=FAST) as client:
            return await client.check(batch)

    async_results = asyncio.run(run())

    def without_timing(results: list[Any]) -> list[dict[str, Any]]:
        return [r.model_dump(exclude={"duration_ms"}) for r in results]

    assert without_timing(sync_results) == without_timing(async_results)
    assert_identity(sync_results[:-1], 50)
    assert_executed(async_results[:-1])
    unsafe = sync_results[-1]
    assert unsafe.verdict is Verdict.UNSAFE
    assert [(v.rule, v.name, v.line) for v in unsafe.violations] == [("import_denied", "os", 1)]


def test_chunking_keeps_order_one_request_per_chunk(service: ServeProcess) -> None:
    before = requests_seen(service, 200)
    with Client(service.url, config=FAST) as client:
        results = client.check(items(600))
    assert_identity(results, 600)
    assert requests_seen(service, 200) - before == 6


def test_413_halves_the_chunk(service: ServeProcess) -> None:
    """512 items > the server's 300: one real 413, then two halves of 256, then the rest."""
    config = FAST.model_copy(update={"chunk_size": 512})
    ok, refused = requests_seen(service, 200), requests_seen(service, 413)
    with Client(service.url, config=config) as client:
        results = client.check(items(600))
    assert_identity(results, 600)
    assert requests_seen(service, 413) - refused == 1
    assert requests_seen(service, 200) - ok == 3


def test_retries_a_real_429_honouring_retry_after(service: ServeProcess) -> None:
    """The server asks for 1 s; the client's own backoff would give up after a few tens of
    milliseconds, long before the hold ends: only by waiting as asked does it get through."""
    config = FAST.model_copy(update={"max_retries": 10, "chunk_size": MAX_ITEMS})
    refused = requests_seen(service, 429)
    with holding(service), Client(service.url, config=config) as client:
        results = client.check(items(MAX_ITEMS))
    assert_identity(results, MAX_ITEMS)
    assert requests_seen(service, 429) - refused >= 1


def test_429_exhausted_is_rate_limited_error(service: ServeProcess) -> None:
    config = FAST.model_copy(update={"max_retries": 1, "chunk_size": MAX_ITEMS})
    refused = requests_seen(service, 429)
    with holding(service, seconds=2 * HOLD_S), Client(service.url, config=config) as client, \
            pytest.raises(RateLimitedError) as info:
        client.check(items(MAX_ITEMS))
    assert info.value.status == 429 and info.value.code == "overloaded"
    assert info.value.retry_after_s == 1.0
    assert isinstance(info.value, APIError) and isinstance(info.value, AzrClientError)
    assert requests_seen(service, 429) - refused == 2  # the attempt and its one retry


def test_api_key_is_sent_as_bearer(service: ServeProcess) -> None:
    with Client(service.url, config=FAST) as client:
        info = client.info()
    assert (info.version, info.mode, info.backend) == (__version__, "embedded", "process")
    wrong = FAST.model_copy(update={"api_key": "wrong"})
    with Client(service.url, config=wrong) as client, pytest.raises(AuthError) as denied:
        client.info()
    assert denied.value.status == 401 and denied.value.code == "unauthorized"
    anonymous = FAST.model_copy(update={"api_key": None})
    with Client(service.url, config=anonymous) as client, pytest.raises(AuthError):
        client.check(items(1))


def test_connection_refused_is_transport_error_not_httpx() -> None:
    config = FAST.model_copy(update={"max_retries": 2})
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, config=config) as client, pytest.raises(TransportError) as info:
        client.check(items(1))
    assert not isinstance(info.value, httpx.HTTPError)
    assert isinstance(info.value.__cause__, httpx.HTTPError)


class CountingTransport(httpx.HTTPTransport):
    """The real transport, plus an event once a connection attempt has been refused."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.ConnectError:
            self.refused.set()
            raise


def test_connection_errors_are_retried_until_the_server_appears(tmp_path: Path) -> None:
    require_bwrap()
    port = free_port()
    transport = CountingTransport()
    config = FAST.model_copy(update={"max_retries": 1000, "backoff_initial_s": 0.05,
                                     "backoff_max_s": 0.2})
    batch = items(2)
    results: list[Any] = []
    failures: list[BaseException] = []

    def call() -> None:
        try:
            with Client(f"http://127.0.0.1:{port}", config=config,
                        transport=transport) as client:
                results.extend(client.check(batch))
        except BaseException as exc:  # reported by the test thread below
            failures.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert transport.refused.wait(60), "the client never tried the closed port"
    settings = client_service_settings(tmp_path / "data", MAX_ITEMS)
    with serve_process(settings, tmp_path / "serve.log", port):
        caller.join(120)
    assert not caller.is_alive() and not failures, failures
    assert [r.id for r in results] == [0, 1]
    assert_executed(results)


def test_read_timeout_is_request_timeout_error(service: ServeProcess) -> None:
    """The hold item makes the answer take longer than the client's 0.5 s on any machine."""
    config = FAST.model_copy(update={"timeout_s": 0.5, "max_retries": 0})
    with Client(service.url, config=config) as client, pytest.raises(RequestTimeoutError):
        client.check([hold_item()])
    queue_drained(service)  # the server finishes the abandoned request on its own


def test_invalid_item_is_rejected_before_sending(service: ServeProcess) -> None:
    sent = [requests_seen(service, status) for status in (200, 422)]
    with Client(service.url, config=FAST) as client, pytest.raises(InvalidItemError):
        client.check([{"program": IDENTITY}])  # no input
    assert [requests_seen(service, status) for status in (200, 422)] == sent


def test_jobs_submit_poll_wait(service: ServeProcess) -> None:
    with Client(service.url, config=FAST) as client:
        job_id = client.submit([*items(5), hold_item()])
        first = client.job(job_id)
        assert first.status in (JobState.QUEUED, JobState.RUNNING) and first.results is None
        assert first.progress.total == 6
        with pytest.raises(JobTimeoutError) as late:
            client.wait(job_id, timeout=0.2)  # the hold item alone takes longer
        assert late.value.job is not None and late.value.job.results is None
        done = client.wait(job_id, timeout=120)
        assert done.status is JobState.FINISHED and done.progress.done == 6
        assert done.results is not None
        assert_identity(done.results[:5], 5)
        assert done.results[5].verdict is Verdict.TIMEOUT
        with pytest.raises(NotFoundError) as missing:
            client.job("0" * 32)
        assert missing.value.code == "job_not_found"


def test_async_jobs_audit_info(service: ServeProcess) -> None:
    tag = token()
    since = time.time() - 1
    unsafe = {"id": f"unsafe-{tag}", "program": "import os\ndef f(a):\n    return a",
              "input": "1", "meta": {"step": 3, "tag": tag}}

    async def run() -> None:
        async with AsyncClient(service.url, config=FAST) as client:
            job_id = await client.submit([*items(2), unsafe])
            done = await client.wait(job_id, timeout=120)
            assert done.results is not None
            assert_identity(done.results[:2], 2)
            assert done.results[2].verdict is Verdict.UNSAFE
            records = await client.audit(verdict=Verdict.UNSAFE, since=since, limit=10)
            mine = [r for r in records if r.item_id == f"unsafe-{tag}"]
            assert len(mine) == 1
            assert [(v.rule, v.name) for v in mine[0].violations] == [("import_denied", "os")]
            assert mine[0].meta == {"step": 3, "tag": tag}
            assert mine[0].api_key_name == "client"
            assert all(r.verdict is Verdict.UNSAFE for r in records)
            info = await client.info()
            assert info.version == __version__
            assert set(info.policies) == {policy.value for policy in PolicyName}
            assert info.limits["max_items"] == MAX_ITEMS

    asyncio.run(run())


def test_azr_helpers(service: ServeProcess) -> None:
    identity = fresh(IDENTITY)
    picky = fresh("def f(a):\n    if a == 2:\n        raise ValueError('two')\n    return a")
    with Client(service.url, config=FAST) as client:
        outcome = client.validate_proposal(identity, "'Hello World'")
        assert outcome.valid and outcome.gold_output == "'Hello World'"
        rejected = client.validate_proposal("import os\n" + identity, "1")
        assert not rejected.valid and rejected.reason is Verdict.UNSAFE
        assert rejected.detail == "import_denied:os@1"
        strict = client.validate_induction_proposal(picky, ["1", "2"])
        assert not strict.valid and strict.reason is Verdict.RUNTIME_ERROR
        assert strict.detail is not None and strict.detail.startswith("ValueError")
        lenient = client.validate_induction_proposal(picky, ["1", "2"], min_valid=1)
        assert lenient.valid and lenient.outputs == ("1", None)
        assert client.check_deduction(identity, "1", "1")
        assert not client.check_deduction(identity, "1", "2")
        assert client.check_abduction(identity, "3", "3")
        assert client.check_induction(identity, [IOPair("1", "1"), IOPair("2", "2")])
        assert not client.check_induction(identity, [IOPair("1", "1"), IOPair("2", "3")])


def test_async_azr_helpers_match_sync(service: ServeProcess) -> None:
    identity = fresh(IDENTITY)

    async def run() -> tuple[bool, bool, bool, str | None]:
        async with AsyncClient(service.url, config=FAST) as client:
            proposal = await client.validate_proposal(identity, "[1, 2]")
            return (await client.check_deduction(identity, "1", "1"),
                    await client.check_abduction(identity, "1", "2"),
                    await client.check_induction(identity, [IOPair("1", "1")]),
                    proposal.gold_output)

    assert asyncio.run(run()) == (True, False, True, "[1, 2]")


# -- the stub: failures a real server cannot be made to produce -------------------------------


@dataclass
class StubState:
    """What the stub does next, and what it saw."""

    # Scripted failures returned before serving normally: (status, headers, body bytes).
    failures: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    check_sizes: list[int] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    sandbox_once_seen: set[str] = field(default_factory=set)
    jobs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    audit_queries: list[dict[str, str]] = field(default_factory=list)
    bad_body: bool = False
    # Concurrency probe: requests held until `gate` of them are in flight at once.
    gate: int = 0
    in_flight: int = 0
    most_in_flight: int = 0


def _result(item: dict[str, Any], verdict: ServiceVerdict, **fields: Any) -> dict[str, Any]:
    """A result as the service serialises it (its own model, so the stub cannot drift)."""
    return ServiceResult(id=item.get("id"), verdict=verdict, **fields).model_dump(mode="json")


def _judge(state: StubState, item: dict[str, Any], policy: str) -> dict[str, Any]:
    """The service's static policy for real; execution faked as the identity, with magic
    programs that make the verifier fail."""
    program, argument = item["program"], item["input"]
    if "SANDBOX_ALWAYS" in program or ("SANDBOX_ONCE" in program
                                       and program + argument not in state.sandbox_once_seen):
        state.sandbox_once_seen.add(program + argument)
        return _result(item, ServiceVerdict.SANDBOX_ERROR, error="zygote died")
    checked = check_program(program, PolicyName(policy), item["entry"])
    if checked.violations:
        return _result(item, ServiceVerdict.UNSAFE, violations=list(checked.violations))
    expected = item.get("output")
    verdict = ServiceVerdict.ACCEPTED if expected in (None, argument) \
        else ServiceVerdict.WRONG_OUTPUT
    return _result(item, verdict, output=argument)


def build_stub(state: StubState) -> Starlette:
    def gate(request: Request) -> Response | None:
        state.headers.append(dict(request.headers))
        if state.failures:
            status, headers, body = state.failures.pop(0)
            return Response(body, status_code=status, headers=headers)
        return None

    async def check(request: Request) -> Response:
        refused = gate(request)
        if refused is not None:
            return refused
        body = json.loads(await request.body())
        batch = [ServiceItem.model_validate(i).model_dump(mode="json") for i in body["items"]]
        state.check_sizes.append(len(batch))
        if state.gate:
            state.in_flight += 1
            state.most_in_flight = max(state.most_in_flight, state.in_flight)
            try:
                async with asyncio.timeout(60):
                    while state.in_flight < state.gate and state.most_in_flight < state.gate:
                        await asyncio.sleep(0.005)
            finally:
                state.in_flight -= 1
        if state.bad_body:
            return JSONResponse({"results": "nope"})
        policy = body.get("policy", PolicyName.AZR.value)
        return JSONResponse({"results": [_judge(state, i, policy) for i in batch]})

    async def submit(request: Request) -> Response:
        refused = gate(request)
        if refused is not None:
            return refused
        job_id = f"job-{len(state.jobs) + 1}"
        state.jobs[job_id] = json.loads(await request.body())["items"]
        return JSONResponse(JobCreated(job_id=job_id, status=ServiceJobState.QUEUED)
                            .model_dump(mode="json"), status_code=202)

    async def job(request: Request) -> Response:
        refused = gate(request)
        if refused is not None:
            return refused
        job_id = request.path_params["job_id"]
        batch = state.jobs[job_id]
        # A job the service failed: its chunk's worker kept dying (see test_distributed_e2e).
        failed = [_result(i, ServiceVerdict.SANDBOX_ERROR, error="chunk failed after retries")
                  for i in batch]
        status = JobStatusResponse(
            job_id=job_id, status=ServiceJobState.FAILED,
            progress=JobProgress(done=len(batch), total=len(batch)),
            results=[ServiceResult.model_validate(r) for r in failed],
            error="1 chunk(s) failed; their items answer sandbox_error")
        return JSONResponse(status.model_dump(mode="json"))

    async def audit(request: Request) -> Response:
        refused = gate(request)
        if refused is not None:
            return refused
        state.audit_queries.append(dict(request.query_params))
        checked = check_program("import os", PolicyName.AZR, "f")
        records = [
            ServiceAuditRecord(time=1735689600.5, program_hash="ab", program="import os",
                               input="1", entry="f", policy="azr",
                               verdict=ServiceVerdict.UNSAFE,
                               violations=list(checked.violations), meta={"step": 3}),
            ServiceAuditRecord(time=1735689600.0, program_hash="cd", program="raise",
                               input="1", entry="f", policy="azr",
                               verdict=ServiceVerdict.RUNTIME_ERROR, error="ValueError: x"),
        ]
        dumped = [r.model_dump(mode="json") for r in records]
        dumped[0]["future_field"] = 1  # what a newer service might add
        return JSONResponse({"records": dumped})

    async def info(request: Request) -> Response:
        refused = gate(request)
        if refused is not None:
            return refused
        return JSONResponse(InfoResponse(version="9.9.9", mode="embedded", backend="stub",
                                         policies=["azr"], limits={}).model_dump(mode="json"))

    return Starlette(routes=[
        Route("/v1/check", check, methods=["POST"]),
        Route("/v1/jobs", submit, methods=["POST"]),
        Route("/v1/jobs/{job_id}", job, methods=["GET"]),
        Route("/v1/audit", audit, methods=["GET"]),
        Route("/v1/info", info, methods=["GET"]),
    ])


class LoopbackServer:
    """A real uvicorn server in a thread, on a port the OS picked."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        wait_until(lambda: self.server.started, 30, "the stub server", interval_s=0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


class _StateProxy:
    """Forwards attribute access to the current test's StubState."""

    def __init__(self, holder: list[StubState]) -> None:
        object.__setattr__(self, "_holder", holder)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._holder[0], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._holder[0], name, value)


@pytest.fixture(scope="module")
def stub_server() -> Iterator[tuple[str, list[StubState]]]:
    # One server for the module; each test gets a fresh state through the holder.
    holder = [StubState()]
    with LoopbackServer(build_stub(_StateProxy(holder))) as server:  # type: ignore[arg-type]
        yield server.url, holder


@pytest.fixture()
def stub(stub_server: tuple[str, list[StubState]]) -> tuple[str, StubState]:
    url, holder = stub_server
    holder[0] = StubState()
    return url, holder[0]


def stub_items(n: int) -> list[dict[str, Any]]:
    return [{"id": k, "program": IDENTITY, "input": str(k), "output": str(k)} for k in range(n)]


def test_async_chunks_run_concurrently_and_keep_order(stub: tuple[str, StubState]) -> None:
    """The stub holds each request until 4 are in flight at once: a client that sent them
    one by one would never get an answer (and time out)."""
    url, state = stub
    state.gate = 4
    config = FAST.model_copy(update={"chunk_size": 100, "max_concurrency": 4,
                                     "max_retries": 0, "timeout_s": 90.0})

    async def run() -> list[Any]:
        async with AsyncClient(url, config=config) as client:
            return await client.check(stub_items(800))

    results = asyncio.run(run())
    assert [r.id for r in results] == list(range(800))
    assert state.check_sizes == [100] * 8
    assert state.most_in_flight == 4  # as many as allowed, never more


def test_retries_a_proxy_502_then_answers(stub: tuple[str, StubState]) -> None:
    url, state = stub
    state.failures = [(502, {"content-type": "text/html"}, b"<h1>Bad Gateway</h1>")] * 2
    with Client(url, config=FAST) as client:
        results = client.check(stub_items(3))
    assert [r.verdict for r in results] == [Verdict.ACCEPTED] * 3
    assert len(state.headers) == 3  # two refused attempts, one served


def test_retries_503_then_gives_up_with_typed_error(stub: tuple[str, StubState]) -> None:
    url, state = stub
    body = json.dumps({"error": {"code": "redis_down", "message": "redis unreachable"}})
    state.failures = [(503, {"content-type": "application/json"}, body.encode())] * 10
    config = FAST.model_copy(update={"max_retries": 2})
    with Client(url, config=config) as client, pytest.raises(ServiceUnavailableError) as info:
        client.check(stub_items(1))
    assert info.value.status == 503 and info.value.code == "redis_down"
    assert len(state.headers) == 3


def test_non_json_error_body_is_mapped(stub: tuple[str, StubState]) -> None:
    url, state = stub
    state.failures = [(500, {"content-type": "text/html"}, b"<h1>boom</h1>")]
    with Client(url, config=FAST) as client, pytest.raises(ServerError) as info:
        client.check(stub_items(1))
    assert info.value.code == "http_500" and "boom" in info.value.message


def test_malformed_success_body_is_protocol_error(stub: tuple[str, StubState]) -> None:
    url, state = stub
    state.bad_body = True
    with Client(url, config=FAST) as client, pytest.raises(ProtocolError):
        client.check(stub_items(1))


def test_sandbox_error_items_are_resent_once(stub: tuple[str, StubState]) -> None:
    url, state = stub
    batch = stub_items(4)
    batch[2] = {"id": 2, "program": "# SANDBOX_ONCE\n" + IDENTITY, "input": "2"}
    with Client(url, config=FAST) as client:
        results = client.check(batch)
    assert [r.verdict for r in results] == [Verdict.ACCEPTED] * 4
    assert state.check_sizes == [4, 1]  # only the failed item went back


def test_sandbox_failure_is_never_a_wrong_answer(stub: tuple[str, StubState]) -> None:
    url, _ = stub
    with Client(url, config=FAST) as client:
        with pytest.raises(SandboxFailure) as failure:
            client.check_deduction("# SANDBOX_ALWAYS\n" + IDENTITY, "1", "1")
        assert [r.verdict for r in failure.value.results] == [Verdict.SANDBOX_ERROR]
        with pytest.raises(SandboxFailure):
            client.validate_proposal("# SANDBOX_ALWAYS\n" + IDENTITY, "1")


def test_failed_job_raises_job_failed_error(stub: tuple[str, StubState]) -> None:
    url, _ = stub
    with Client(url, config=FAST) as client:
        job_id = client.submit(stub_items(2))
        with pytest.raises(JobFailedError) as failed:
            client.wait(job_id, timeout=60)
    job = failed.value.job
    assert job is not None and job.status is JobState.FAILED
    assert job.results is not None
    assert [r.verdict for r in job.results] == [Verdict.SANDBOX_ERROR] * 2


def test_audit_keeps_unknown_fields_and_sends_unix_seconds(
        stub: tuple[str, StubState]) -> None:
    url, state = stub
    with Client(url, config=FAST) as client:
        records = client.audit(since=datetime(2025, 1, 1, tzinfo=UTC))
    assert [r.verdict for r in records] == [Verdict.UNSAFE, Verdict.RUNTIME_ERROR]
    assert records[0].model_extra == {"future_field": 1}
    assert records[0].time == 1735689600.5
    assert [(v.rule, v.name) for v in records[0].violations] == [("import_denied", "os")]

    async def run() -> None:
        async with AsyncClient(url, config=FAST) as client:
            await client.audit(verdict=Verdict.UNSAFE, since=1.5, limit=10)

    asyncio.run(run())
    assert state.audit_queries == [{"since": "1735689600.0"},
                                   {"verdict": "unsafe", "since": "1.5", "limit": "10"}]


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
