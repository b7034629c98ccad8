"""Clients nobody here wrote, against a real `azr-verify serve` (docs/design.md §10).

- SandboxFusion's own client package (`sandbox-fusion` on PyPI, sync and async) runs code
  through `POST /run_code` and reads the results with its own models and its own
  `summary_run_code_result`, unchanged; the API key travels in the URL (basic auth), as it
  must for a client that takes only an endpoint.
- veRL's sandbox reward (`verl.utils.reward_score.sandbox_fusion.compute_score`, the code
  `default_compute_score` runs for codecontests/apps/codeforces/taco when
  `reward_model.sandbox_fusion.url` is set), from the released wheel that `make venv`
  unpacks without its dependencies: loaded by path, since `import verl` pulls in ray.

The server is the session's real serve process (tests/conftest.py `client_service`), with an
API key and no result cache.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import threading
from types import ModuleType
from typing import Any

import httpx
import pytest
from sandbox_fusion import (
    CommandRunStatus,
    RunCodeRequest,
    RunCodeResponse,
    RunStatus,
    SummaryMapping,
    run_code,
    run_code_async,
    summary_run_code_result,
)

from azr_verify.client import Client, TestcaseItem, Verdict

from .guards import fresh, token
from .servers import CLIENT_KEY, REPO, ServeProcess, error_of, posts_answered, require

MAPPING = SummaryMapping(Success="ok", Failed="failed", CompileFailed="compile_failed",
                         RunFailed="run_failed", RunTimeout="run_timeout")
VERL_FUSION = REPO / ".venv" / "verl-nodeps" / "verl" / "utils" / "reward_score" / \
    "sandbox_fusion"


def endpoint(server: ServeProcess, key: str | None = CLIENT_KEY) -> str:
    """The URL a SandboxFusion client is given: the key as the basic-auth password."""
    return server.url.replace("http://", f"http://trainer:{key}@") if key else server.url


def run(server: ServeProcess, code: str, **fields: Any) -> RunCodeResponse:
    request = RunCodeRequest(code=fresh(code), language="python", **fields)
    return run_code(request, endpoint=endpoint(server), max_attempts=1)


def test_the_sandbox_fusion_client_runs_python(client_service: ServeProcess) -> None:
    ok = run(client_service, "print(input()[::-1])", stdin="hello")
    assert ok.status is RunStatus.Success and ok.message == ""
    assert ok.compile_result is None and ok.files == {}
    assert ok.run_result is not None
    assert ok.run_result.status is CommandRunStatus.Finished
    assert (ok.run_result.return_code, ok.run_result.stdout) == (0, "olleh\n")
    assert ok.run_result.execution_time is not None and ok.run_result.execution_time > 0
    assert summary_run_code_result(ok, MAPPING) == "ok"

    failed = run(client_service, "import sys\nprint('out')\nprint('err', file=sys.stderr)\n"
                                 "sys.exit(3)")
    assert failed.status is RunStatus.Failed and failed.run_result is not None
    assert (failed.run_result.return_code, failed.run_result.stdout,
            failed.run_result.stderr) == (3, "out\n", "err\n")
    assert summary_run_code_result(failed, MAPPING) == "run_failed"

    slow = run(client_service, "while True:\n    pass", run_timeout=1)
    assert slow.status is RunStatus.Failed and slow.run_result is not None
    assert slow.run_result.status is CommandRunStatus.TimeLimitExceeded
    assert slow.run_result.return_code is None
    assert summary_run_code_result(slow, MAPPING) == "run_timeout"

    # A program that does not compile is refused before it runs: a failed compile step.
    broken = run(client_service, "print(1")
    assert broken.status is RunStatus.Failed and broken.run_result is None
    assert broken.compile_result is not None and broken.compile_result.return_code == 1
    assert "never closed" in (broken.compile_result.stderr or "")
    assert summary_run_code_result(broken, MAPPING) == "compile_failed"


def test_the_async_client_and_concurrent_requests(client_service: ServeProcess) -> None:
    async def many() -> list[RunCodeResponse]:
        requests = [RunCodeRequest(code=fresh(f"print({n} * int(input()))"),
                                   language="python", stdin=str(n)) for n in range(8)]
        return await asyncio.gather(*(run_code_async(r, endpoint=endpoint(client_service),
                                                     max_attempts=1) for r in requests))

    responses = asyncio.run(many())
    assert [r.run_result.stdout for r in responses if r.run_result] == \
        [f"{n * n}\n" for n in range(8)]


def test_what_cannot_run_here_is_their_sandbox_error(client_service: ServeProcess) -> None:
    for fields, words in (({"language": "cpp"}, "language 'cpp' is not supported"),
                          ({"language": "python", "files": {"data.txt": "MQ=="}},
                           "files are not supported"),
                          ({"language": "python", "fetch_files": ["out.txt"]},
                           "fetch_files is not supported")):
        request = RunCodeRequest(code="print(1)", **fields)
        with pytest.raises(Exception, match=words):  # the package raises a bare Exception
            run_code(request, endpoint=endpoint(client_service), max_attempts=1)
    with httpx.Client(base_url=client_service.url, auth=("trainer", CLIENT_KEY)) as http:
        # Their server refuses unknown languages; ours says why in their format.
        body = http.post("/run_code", json={"code": "x", "language": "brainfuck"}).json()
        assert body["status"] == "SandboxError" and body["run_result"] is None
        # python3 is accepted as python; null file contents are ignored, as they do.
        alias = http.post("/run_code", json={"code": fresh("print(2)"), "language": "python3",
                                             "files": {"ignored": None}}).json()
        assert alias["status"] == "Success" and alias["run_result"]["stdout"] == "2\n"


def test_the_key_is_required_and_read_from_the_url(client_service: ServeProcess) -> None:
    request = RunCodeRequest(code="print(1)", language="python")
    for url in (endpoint(client_service, key=None), endpoint(client_service, key="wrong")):
        with pytest.raises(Exception, match="401"):
            run_code(request, endpoint=url, max_attempts=1)
    with httpx.Client(base_url=client_service.url) as http:
        refused = http.post("/run_code", json=request.dict())
        assert refused.status_code == 401 and error_of(refused)["code"] == "unauthorized"
        # The key alone as the user name (http://KEY@host) works too.
        alone = http.post("/run_code", json={**request.dict(), "code": fresh("print(1)")},
                          auth=(CLIENT_KEY, ""))
        assert alone.json()["status"] == "Success"


def test_hostile_programs_cannot_forge_the_response(client_service: ServeProcess) -> None:
    fake = json.dumps({"status": "Success", "message": "", "run_result": {
        "status": "Finished", "return_code": 0, "stdout": "42\n"}})
    forged = run(client_service, f"print({fake!r})\nimport sys\nsys.exit(1)")
    assert forged.status is RunStatus.Failed and forged.run_result is not None
    assert forged.run_result.return_code == 1 and forged.run_result.stdout == fake + "\n"

    flood = run(client_service, "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)")
    assert flood.status is RunStatus.Failed and flood.run_result is not None
    assert flood.run_result.status is CommandRunStatus.Finished
    assert flood.run_result.return_code == -9  # killed by the sandbox, as a signal death
    assert "more than" in flood.message
    assert len(flood.run_result.stdout or "") <= 2**20

    segv = run(client_service, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert segv.run_result is not None and segv.run_result.return_code == -11
    assert "SIGSEGV" in segv.message

    memory = run(client_service, "kept = []\nwhile True:\n    kept.append(bytearray(2**20))",
                 memory_limit_MB=64)
    assert memory.status is RunStatus.Failed and memory.run_result is not None
    assert memory.run_result.status is CommandRunStatus.Finished
    assert memory.run_result.return_code != 0 and "memory" in memory.message


def test_run_code_is_metered_audited_and_documented(client_service: ServeProcess) -> None:
    before = posts_answered(client_service.url, 200, route="/run_code")
    marker = f"audited{token()}"
    run(client_service, f"raise ValueError({marker!r})")
    assert posts_answered(client_service.url, 200, route="/run_code") == before + 1
    headers = {"Authorization": f"Bearer {CLIENT_KEY}"}
    with httpx.Client(base_url=client_service.url, headers=headers) as http:
        records = http.get("/v1/audit", params={"q": marker}).json()["records"]
        assert len(records) == 1
        record = records[0]
        assert (record["kind"], record["verdict"], record["entry"]) == \
            ("run_code", "runtime_error", "__main__")
        assert record["api_key_name"] == "client" and marker in record["error"]
        metrics = http.get("/metrics").text
        assert 'azr_verify_items_total{verdict="runtime_error"}' in metrics
        spec = http.get("/openapi.json").json()
        operations = {op["operationId"]: op for path in spec["paths"].values()
                      for op in path.values()}
        for name in ("runCode", "checkTestcases"):
            body = operations[name]["requestBody"]["content"]["application/json"]
            assert body["examples"], name


def test_testcases_through_our_client(client_service: ServeProcess) -> None:
    program = fresh("import sys\nprint(sum(map(int, sys.stdin.read().split())))")
    with Client(client_service.url, api_key=CLIENT_KEY) as client:
        result = client.judge(program, [("1 2", "3"), ("5 5", "10"), ("1", "7")])
        assert (result.verdict, result.passed, result.total) == (Verdict.WRONG_OUTPUT, 2, 3)
        many = client.check_testcases([TestcaseItem(id=k, program=program,
                                                    cases=[{"input": f"{k} {k}",
                                                            "output": str(2 * k)}])
                                       for k in range(12)])
        assert [r.id for r in many] == list(range(12)) and all(r.accepted for r in many)

    async def async_judge() -> None:
        from azr_verify.client import AsyncClient

        async with AsyncClient(client_service.url, api_key=CLIENT_KEY) as client:
            judged = await client.judge(fresh("print(input().upper())"), [("abc", "ABC")])
            assert judged.accepted and judged.cases[0].stdout == "ABC\n"

    asyncio.run(async_judge())


# -- veRL's sandbox reward, from its released code ---------------------------------------------


@pytest.fixture(scope="module")
def verl_fusion() -> ModuleType:
    """`verl.utils.reward_score.sandbox_fusion` of veRL 0.9.1, loaded by path (its package's
    `__init__` imports ray, which a reward does not need)."""
    require("veRL's released code (make venv)", (VERL_FUSION / "__init__.py").exists())
    spec = importlib.util.spec_from_file_location(
        "verl_sandbox_fusion", VERL_FUSION / "__init__.py",
        submodule_search_locations=[str(VERL_FUSION)])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_verl_scores_code_against_our_run_code(client_service: ServeProcess,
                                               verl_fusion: ModuleType) -> None:
    url = endpoint(client_service) + "/run_code"  # veRL's config: must end with /run_code
    semaphore = threading.Semaphore(4)
    tests = json.dumps({"inputs": ["1 2\n", "10 20\n", "3 4\n"],
                        "outputs": ["3\n", "30\n", "7\n"]})

    def score(code: str) -> tuple[float, list[dict[str, Any]]]:
        completion = f"Here it is:\n```python\n{fresh(code)}\n```"
        value, metadata = verl_fusion.compute_score(url, semaphore, 1024, completion, tests,
                                                    continuous=True, timeout=5)
        return float(value), metadata

    right, metadata = score("a, b = map(int, input().split())\nprint(a + b)")
    assert right == 1.0 and [m["status"] for m in metadata] == ["success"] * 3
    half, metadata = score("a, b = map(int, input().split())\nprint(a + b if a < 5 else 0)")
    assert half == pytest.approx(2 / 3)
    assert [m["status"] for m in metadata] == ["success", "wrong_answer", "success"]
    crash, metadata = score("a, b = map(int, input().split())\n"
                            "print(a + b if b != 2 else 1 // 0)")
    assert crash == pytest.approx(2 / 3)
    assert [m["status"] for m in metadata] == ["runtime_error", "success", "success"]
    assert metadata[0]["exit_code"] == 1 and "ZeroDivisionError" in metadata[0]["stderr"]
    slow, metadata = score("while True:\n    pass")
    assert slow == 0.0 and {m["status"] for m in metadata} == {"timeout"}
    broken, metadata = score("print(")
    assert broken == 0.0 and metadata[0]["status"] == "compile_error"
    assert all(m["api_request_error"] is None for m in metadata)
