"""Test cases and /run_code in distributed mode: a real redis-server, a real `azr-verify worker`
and the real API on uvicorn. Batches travel as RQ chunk jobs of their own kinds; results,
audit records and counters come back through Redis (docs/design.md §5, §10)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sandbox_fusion import RunCodeRequest, RunStatus, run_code

from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine

from .guards import assert_executed, fresh, token
from .servers import (
    ApiServer,
    RedisServer,
    WorkerProcess,
    api_server,
    require_bwrap,
    require_redis,
    settings_env,
    wait_until,
)

KEY = "dist-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass
class Stack:
    api: ApiServer
    worker: WorkerProcess

    def client(self) -> httpx.Client:
        return self.api.client(headers=AUTH, timeout=120.0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_redis()
    require_bwrap()
    root = tmp_path_factory.mktemp("testcase-cluster")
    redis_server = RedisServer(root / "redis")
    redis_server.start()
    settings = Settings(workers=2, data_dir=root / "data", redis_url=redis_server.url,
                        api_keys={"ci": KEY}, chunk_size=4,
                        queue_name=f"tc-{uuid.uuid4().hex[:8]}", worker_heartbeat_s=1,
                        reap_interval_s=0.5, check_timeout_s=120)
    worker = WorkerProcess(settings_env(settings), root / "worker.log")
    api = ApiServer(settings)
    try:
        api.start()
        worker.start()
        stack = Stack(api, worker)

        def live() -> bool:
            with stack.client() as c:
                info = c.get("/v1/info")
            return info.is_success and info.json()["executors"]["processes"] == 1

        wait_until(live, 60, "the worker to report")
        yield stack
    finally:
        api.stop()
        worker.stop()
        redis_server.stop()


@pytest.fixture(scope="module")
def embedded(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with api_server(Settings(data_dir=tmp_path_factory.mktemp("tc-embedded")), engine) as api:
        yield api


def mixed_programs(tag: str) -> tuple[list[dict[str, Any]], list[str]]:
    add = fresh(f"a, b = map(int, input().split())\nprint(a + b)  # {tag}")
    items: list[dict[str, Any]] = [
        {"id": f"ok-{k}", "program": add, "cases": [{"input": f"{k} {k}", "output": str(2 * k)}]}
        for k in range(6)]
    items += [
        {"id": "wrong", "program": add, "cases": [{"input": "1 1", "output": "3"}]},
        {"id": "crash", "program": fresh(f"raise ValueError({tag!r})"),
         "cases": [{"input": "", "output": ""}]},
        {"id": "loop", "program": fresh("while True:\n    pass"), "timeout_s": 1.0,
         "cases": [{"input": "", "output": ""}]},
        {"id": "syntax", "program": fresh("print(("), "cases": [{"input": ""}]},
        {"id": "flood", "program": fresh("import sys\nwhile True:\n"
                                         "    sys.stdout.write('x' * 65536)"),
         "cases": [{"input": ""}]},
    ]
    verdicts = ["accepted"] * 6 + ["wrong_output", "runtime_error", "timeout", "syntax_error",
                                   "output_limit"]
    return items, verdicts


def comparable(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def case(c: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in c.items() if k not in ("duration_ms", "cached")}

    return [{**{k: v for k, v in r.items() if k not in ("duration_ms", "cached", "cases")},
             "cases": [case(c) for c in r["cases"]]} for r in results]


def test_testcases_through_rq_chunks_match_embedded_mode(stack: Stack,
                                                         embedded: ApiServer) -> None:
    items, verdicts = mixed_programs(token())
    with stack.client() as c:
        distributed = c.post("/v1/testcases", json={"items": items})
    assert distributed.status_code == 200, distributed.text
    results = distributed.json()["results"]
    assert [r["verdict"] for r in results] == verdicts
    assert_executed(results)
    with embedded.client() as c:
        local = c.post("/v1/testcases", json={"items": items}).json()["results"]
    assert comparable(results) == comparable(local)


def test_run_code_through_rq_and_the_audit_in_redis(stack: Stack) -> None:
    marker = f"dist{token()}"
    url = stack.api.url.replace("http://", f"http://ci:{KEY}@")
    ok = run_code(RunCodeRequest(code=fresh("print(input() * 2)"), language="python",
                                 stdin="ab"), endpoint=url, max_attempts=1)
    assert ok.status is RunStatus.Success and ok.run_result is not None
    assert ok.run_result.stdout == "abab\n"
    failed = run_code(RunCodeRequest(code=fresh(f"raise KeyError({marker!r})"),
                                     language="python"), endpoint=url, max_attempts=1)
    assert failed.status is RunStatus.Failed and failed.run_result is not None
    assert failed.run_result.return_code == 1 and marker in (failed.run_result.stderr or "")
    program = fresh(f"print('{marker}')\nimport sys\nsys.exit(2)")
    with stack.client() as c:
        checked = c.post("/v1/testcases", json={"items": [
            {"id": "audited", "program": program, "cases": [{"input": "in", "output": "x"}],
             "meta": {"step": 7}}]}).json()["results"]
        assert checked[0]["verdict"] == "runtime_error"

        def audited() -> list[dict[str, Any]]:
            records: list[dict[str, Any]] = c.get("/v1/audit",
                                                  params={"q": marker}).json()["records"]
            return records

        wait_until(lambda: len(audited()) == 2, 30, "the worker's audit records")
        kinds = {r["kind"]: r for r in audited()}
        assert set(kinds) == {"run_code", "testcase"}
        testcase = kinds["testcase"]
        assert (testcase["input"], testcase["output"], testcase["meta"]) == \
            ("in", "x", {"step": 7})
        assert testcase["api_key_name"] == "ci"


def test_worker_logs_stay_clean(stack: Stack) -> None:
    log = Path(stack.worker.log_path).read_text()
    assert "Traceback" not in log, log[-3000:]
