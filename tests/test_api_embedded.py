"""The HTTP API in embedded mode, end to end: a real uvicorn on loopback, real sandboxes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine

from .guards import assert_executed, fresh, token
from .servers import REPO, ApiServer, api_server, settings_env, wait_until

# Every check here must reach a sandbox (tests/guards.py); the metrics test asks for its hits.
pytestmark = pytest.mark.sandbox

NONDETERMINISTIC = "def f(x):\n    return list({'a','b','c','d','e','f','g','h','i','j','k','l'})"
UNSAFE = "import os\ndef f(x):\n    return os.getcwd()"
API_KEYS = {"trainer": "k-trainer-123", "auditor": "k-auditor-456"}


def item(i: int, **extra: object) -> dict[str, object]:
    return {"id": i, "program": fresh(f"def f(x):\n    return x * {i} + 1"), "input": str(i),
            "output": str(i * i + 1), **extra}


@pytest.fixture(scope="module")
def server(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("api-data"), api_keys=API_KEYS)
    with api_server(settings, engine) as running:
        yield running


@pytest.fixture
def client(server: ApiServer) -> Iterator[httpx.Client]:
    with server.client(headers={"Authorization": f"Bearer {API_KEYS['trainer']}"}) as c:
        yield c


def test_check_answers_in_order_with_typed_verdicts(client: httpx.Client) -> None:
    items = [item(i) for i in range(20)]
    items += [{"id": "wrong", "program": fresh("def f(x):\n    return x"), "input": "1",
               "output": "2"},
              {"id": "raise", "program": fresh("def f(x):\n    return 1 // x"), "input": "0"},
              {"id": "unsafe", "program": UNSAFE, "input": "1"},
              {"id": "nul", "program": "def f(x):\u0000\n    return 1", "input": "1"},
              {"id": "set", "program": fresh("def f(x):\n    return {2, 1}"), "input": "0",
               "output": "{1, 2}"}]
    response = client.post("/v1/check", json={"items": items, "policy": "azr"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == [i["id"] for i in items]
    verdicts = {r["id"]: r["verdict"] for r in results}
    assert all(verdicts[i] == "accepted" for i in range(20))
    assert verdicts["wrong"] == "wrong_output"
    assert verdicts["raise"] == "runtime_error"
    assert results[21]["error_type"] == "ZeroDivisionError"
    assert verdicts["unsafe"] == "unsafe"
    assert results[22]["violations"][0]["name"] == "os"
    assert verdicts["nul"] == "syntax_error"
    assert verdicts["set"] == "accepted"
    assert_executed(results)


def test_empty_batch(client: httpx.Client) -> None:
    response = client.post("/v1/check", json={"items": []})
    assert response.status_code == 200
    assert response.json() == {"results": []}


def test_hostile_items_do_not_affect_the_others(client: httpx.Client, engine: Engine) -> None:
    hostile = [
        {"id": "loop", "program": fresh("def f(x):\n    while True:\n        pass"), "input": "0",
         "timeout_s": 1.0},
        {"id": "bomb", "program": fresh("def f(x):\n    kept = []\n    while True:\n"
                                        "        kept.append(bytearray(2**20))"),
         "input": "0", "memory_mb": 64},
        {"id": "fork", "program": fresh("import os\ndef f(x):\n    while True:\n        os.fork()"),
         "input": "0"},
        {"id": "kill-zygote",
         "program": fresh("import os\ndef f(x):\n    os.kill(os.getppid(), 9)\n    return 1"),
         "input": "0"},
        {"id": "huge", "program": fresh("def f(x):\n    return 'x' * 10**7"), "input": "0"},
    ]
    good = [item(100 + i) for i in range(30)]
    batch = good[:15] + hostile + good[15:]
    restarts = engine.pool.stats().restarts
    response = client.post("/v1/check", json={"items": batch, "policy": "permissive"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == [i["id"] for i in batch]
    assert_executed(results)
    by_id = {r["id"]: r for r in results}
    assert all(by_id[g["id"]]["verdict"] == "accepted" for g in good), by_id
    assert by_id["loop"]["verdict"] == "timeout"
    assert by_id["bomb"]["verdict"] == "memory_limit"
    assert by_id["fork"]["verdict"] == "runtime_error"
    assert by_id["fork"]["error_type"] in ("BlockingIOError", "PermissionError")
    # The sandbox's parent is out of reach: the kill is a no-op and the program returns.
    assert (by_id["kill-zygote"]["verdict"], by_id["kill-zygote"]["output"]) == ("accepted", "1")
    assert by_id["huge"]["verdict"] == "output_limit"
    assert engine.pool.stats().restarts == restarts, "a hostile item cost a zygote"


def test_jobs_report_progress_then_results(client: httpx.Client) -> None:
    slow = fresh("def f(x):\n    s = 0\n    for i in range(x):\n        s += i\n    return s")
    items = [{"id": i, "program": slow, "input": str(200_000 + i)} for i in range(12)]
    created = client.post("/v1/jobs", json={"items": items})
    assert created.status_code == 202, created.text
    assert created.json()["status"] == "queued"
    job_id = created.json()["job_id"]
    seen: list[dict[str, object]] = []

    def finished() -> bool:
        body = client.get(f"/v1/jobs/{job_id}").json()
        seen.append(body)
        return body["status"] in ("finished", "failed")

    wait_until(finished, 120, "the job to finish", interval_s=0.02)
    final = seen[-1]
    assert final["status"] == "finished"
    assert final["progress"] == {"done": 12, "total": 12}
    results = final["results"]
    assert isinstance(results, list)
    assert [r["id"] for r in results] == list(range(12))
    assert all(r["verdict"] == "accepted" for r in results)
    assert [r["output"] for r in results] == [str((200_000 + i) * (200_000 + i - 1) // 2)
                                              for i in range(12)]
    assert_executed(results)
    assert all(body["results"] is None for body in seen[:-1])
    assert {body["status"] for body in seen} <= {"queued", "running", "finished"}
    dones = [body["progress"]["done"] for body in seen]  # type: ignore[index]
    assert dones == sorted(dones), "progress never goes backwards"


def test_another_keys_job_is_not_visible(server: ApiServer, client: httpx.Client) -> None:
    job_id = client.post("/v1/jobs", json={"items": [item(1)]}).json()["job_id"]
    with server.client(headers={"Authorization": f"Bearer {API_KEYS['auditor']}"}) as other:
        response = other.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"
    # Its owner sees it through (and no job outlives this test into the next one).
    wait_until(lambda: client.get(f"/v1/jobs/{job_id}").json()["status"] == "finished", 120,
               "the owner's job")


def test_audit_returns_rejected_items_with_reasons(client: httpx.Client) -> None:
    since = time.time() - 1
    tag = token()
    nondeterministic = fresh(NONDETERMINISTIC)
    batch = [item(7),
             {"id": f"nd-{tag}", "program": nondeterministic, "input": "0",
              "meta": {"step": 12, "role": "proposer", "task": "deduction"}},
             {"id": f"unsafe-{tag}", "program": UNSAFE, "input": "0", "meta": {"step": 12}}]
    response = client.post("/v1/check", json={"items": batch})
    assert response.status_code == 200
    assert_executed(response.json()["results"])
    records = client.get("/v1/audit", params={"since": since}).json()["records"]
    mine = {r["item_id"]: r for r in records if str(r["item_id"]).endswith(tag)}
    assert set(mine) == {f"nd-{tag}", f"unsafe-{tag}"}
    nd, unsafe = mine[f"nd-{tag}"], mine[f"unsafe-{tag}"]
    assert nd["verdict"] == "nondeterministic"
    assert "run 1 gave" in nd["error"]
    assert nd["meta"] == {"step": 12, "role": "proposer", "task": "deduction"}
    assert nd["api_key_name"] == "trainer"
    assert nd["program"] == nondeterministic and len(nd["program_hash"]) == 64
    assert unsafe["verdict"] == "unsafe"
    assert unsafe["violations"] == [{"rule": "import_denied", "name": "os", "line": 1}]
    assert all(r["verdict"] not in ("accepted", "wrong_output") for r in records)
    only = client.get("/v1/audit", params={"verdict": "unsafe", "since": since}).json()
    assert {r["verdict"] for r in only["records"]} == {"unsafe"}
    limited = client.get("/v1/audit", params={"limit": 1}).json()["records"]
    assert len(limited) == 1


def test_audit_export_cli_writes_jsonl(server: ApiServer, client: httpx.Client,
                                       tmp_path: Path) -> None:
    client.post("/v1/check", json={"items": [{"id": "x", "program": UNSAFE, "input": "0"}]})
    out = tmp_path / "audit.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "azr_verify.service.cli", "audit", "export", "--verdict",
         "unsafe", "-o", str(out)], env=settings_env(server.settings), cwd=REPO,
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines and all(line["verdict"] == "unsafe" for line in lines)
    assert any(line["item_id"] == "x" for line in lines)


def test_info_health_ready_docs(client: httpx.Client) -> None:
    info = client.get("/v1/info").json()
    assert info["mode"] == "embedded"
    assert info["backend"] == "process"
    assert set(info["policies"]) == {"azr", "permissive"}
    assert info["limits"]["max_items"] > 0
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/v1/check", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/audit"} <= set(schema["paths"])


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        metric_name, _, label_text = sample.partition("{")
        got = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if metric_name == name and got == wanted:
            return float(value)
    raise AssertionError(f"no sample {name}{{{wanted}}}")


@pytest.mark.sandbox(cache_hits=10)
def test_metrics_after_a_batch(client: httpx.Client, engine: Engine) -> None:
    before = client.get("/metrics").text
    batch = [item(1000 + i) for i in range(10)]
    batch.append({"id": "u", "program": UNSAFE, "input": "0"})
    response = client.post("/v1/check", json={"items": batch})
    assert response.status_code == 200
    assert_executed(response.json()["results"])
    after = client.get("/metrics").text
    assert metric(after, "azr_verify_items_total", verdict="accepted") - \
        metric(before, "azr_verify_items_total", verdict="accepted") == 10
    assert metric(after, "azr_verify_items_total", verdict="unsafe") - \
        metric(before, "azr_verify_items_total", verdict="unsafe") == 1
    assert metric(after, "azr_verify_executions_total") - \
        metric(before, "azr_verify_executions_total") == 20  # 2 determinism runs each
    assert metric(after, "azr_verify_execution_seconds_count") - \
        metric(before, "azr_verify_execution_seconds_count") == 10
    assert metric(after, "azr_verify_request_seconds_count", method="POST", route="/v1/check",
                  status="200") >= 1
    idle = metric(after, "azr_verify_pool_workers", executor="embedded", state="idle")
    busy = metric(after, "azr_verify_pool_workers", executor="embedded", state="busy")
    assert idle + busy >= 2
    assert metric(after, "azr_verify_queue_depth_items") == 0
    # The counter is the pool's own, and an ordinary batch costs no zygote.
    restarts = metric(after, "azr_verify_sandbox_restarts_total")
    assert restarts == engine.pool.stats().restarts
    assert restarts == metric(before, "azr_verify_sandbox_restarts_total")
    # The same batch again is all cache hits (the marker expects exactly these 10).
    hits = metric(after, "azr_verify_cache_hits_total")
    again = client.post("/v1/check", json={"items": batch})
    assert again.status_code == 200
    assert [r["cached"] for r in again.json()["results"]] == [True] * 10 + [False]
    assert metric(client.get("/metrics").text, "azr_verify_cache_hits_total") - hits == 10
