"""Distributed mode end to end: a real redis-server, two real `azr-verify worker` processes and
the real API on uvicorn. The module shares one cluster; the disruptive tests (SIGKILL a worker,
restart Redis) run last and leave the cluster whole again."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine

from .servers import (
    REPO,
    ApiServer,
    RedisServer,
    WorkerProcess,
    api_server,
    error_of,
    require_bwrap,
    require_redis,
    settings_env,
    wait_until,
)
from .test_api_embedded import NONDETERMINISTIC, UNSAFE, metric

KEY = "dist-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SLOW = "def f(x):\n    s = 0\n    for i in range(x):\n        s += i\n    return s"


@dataclass
class Cluster:
    redis: RedisServer
    settings: Settings
    api: ApiServer
    workers: list[WorkerProcess]
    logs: Path

    def client(self) -> httpx.Client:
        return self.api.client(headers=AUTH)

    def live_executors(self) -> int:
        with self.client() as c:
            response = c.get("/v1/info")
        return int(response.json()["executors"]["processes"]) if response.is_success else -1

    def ensure_workers(self, count: int = 2) -> None:
        """Replaces dead workers and waits until `count` report to Redis."""
        self.workers = [w for w in self.workers if w.alive()]
        while len(self.workers) < count:
            worker = WorkerProcess(settings_env(self.settings),
                                   self.logs / f"worker-{uuid.uuid4().hex[:6]}.log")
            worker.start()
            self.workers.append(worker)
        wait_until(lambda: self.live_executors() == count, 60, f"{count} live workers",
                   interval_s=0.2)

    def redis_client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_redis()
    require_bwrap()
    root = tmp_path_factory.mktemp("cluster")
    server = RedisServer(root / "redis")
    server.start()
    settings = Settings(
        workers=2, data_dir=root / "data", redis_url=server.url, api_keys={"ci": KEY},
        chunk_size=8, queue_name=f"test-{uuid.uuid4().hex[:8]}", worker_heartbeat_s=1,
        reap_interval_s=0.5, redis_timeout_s=1.0, check_timeout_s=90, job_retries=3)
    cluster = Cluster(server, settings, ApiServer(settings), [], root)
    try:
        cluster.api.start()
        cluster.ensure_workers(2)
        yield cluster
    finally:
        cluster.api.stop()
        for worker in cluster.workers:
            worker.stop()
        server.stop()


@pytest.fixture(scope="module")
def embedded(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("embedded"))
    with api_server(settings, engine) as running:
        yield running


def mixed_batch(tag: str) -> list[dict[str, Any]]:
    """Every kind of verdict, with programs unique to `tag` (so nothing is cached)."""
    items: list[dict[str, Any]] = [
        {"id": f"{tag}-ok-{i}", "program": f"def f(x):\n    return x * {i}  # {tag}",
         "input": str(i), "output": str(i * i)} for i in range(20)]
    items += [
        {"id": "wrong", "program": f"def f(x):\n    return x  # {tag}", "input": "1",
         "output": "2"},
        {"id": "raise", "program": f"def f(x):\n    return 1 // x  # {tag}", "input": "0"},
        {"id": "unsafe", "program": UNSAFE + f"  # {tag}", "input": "0"},
        {"id": "syntax", "program": f"def f(x) return  # {tag}", "input": "0"},
        {"id": "nondet", "program": NONDETERMINISTIC + f"  # {tag}", "input": "0"},
        {"id": "gen", "program": f"def f(x):\n    return (i for i in range(x))  # {tag}",
         "input": "3"},
        {"id": "loop", "program": f"def f(x):\n    while True:\n        pass  # {tag}",
         "input": "0", "timeout_s": 1.0},
        {"id": "huge", "program": f"def f(x):\n    return 'x' * 10**7  # {tag}", "input": "0"},
        {"id": "dict", "program": f"def f(x):\n    return {{'b': 1, 'a': [x, 2.5]}}  # {tag}",
         "input": "(1, 2)", "output": "{'a': [(1, 2), 2.5], 'b': 1}"},
    ]
    return items


def comparable(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results minus what legitimately differs between runs: timing, cache hits, and the
    hash orders quoted in a nondeterministic item's error (they depend on the sandboxes'
    hash secrets, which differ between the two pools)."""
    out = []
    for result in results:
        kept = {k: v for k, v in result.items() if k not in ("duration_ms", "cached")}
        if kept["verdict"] == "nondeterministic":
            kept["error"] = kept["error"].split(" gave ")[0]
        out.append(kept)
    return out


def test_results_identical_to_embedded_mode(cluster: Cluster, embedded: ApiServer) -> None:
    batch = mixed_batch("same")
    with cluster.client() as c:
        distributed = c.post("/v1/check", json={"items": batch})
    with embedded.client() as c:
        local = c.post("/v1/check", json={"items": batch})
    assert distributed.status_code == local.status_code == 200, distributed.text
    got, want = distributed.json()["results"], local.json()["results"]
    assert len(got) == len(batch) > cluster.settings.chunk_size * 3  # several chunks
    assert comparable(got) == comparable(want)
    verdicts = {r["id"]: r["verdict"] for r in got}
    assert verdicts["nondet"] == "nondeterministic"
    assert verdicts["loop"] == "timeout"
    assert verdicts["gen"] == "not_literal"
    assert verdicts["dict"] == "accepted"


def test_both_workers_take_chunks(cluster: Cluster) -> None:
    before = {w.pid: 0 for w in cluster.workers}
    items = [{"id": i, "program": SLOW, "input": str(300_000 + i)} for i in range(48)]
    conn = cluster.redis_client()
    queue = Queue(cluster.settings.queue_name, connection=conn)
    busy: set[int] = set()
    with cluster.client() as c:
        job_id = c.post("/v1/jobs", json={"items": items}).json()["job_id"]

        def done() -> bool:
            busy.update(int(w.pid) for w in Worker.all(connection=conn, queue=queue)
                        if w.get_state() == "busy" and w.pid)
            return c.get(f"/v1/jobs/{job_id}").json()["status"] == "finished"

        wait_until(done, 90, "the job", interval_s=0.02)
    assert busy == set(before), "both workers should have run chunks"


def test_jobs_report_progress_then_results(cluster: Cluster) -> None:
    items = [{"id": i, "program": SLOW, "input": str(400_000 + i)} for i in range(24)]
    bodies: list[dict[str, Any]] = []
    with cluster.client() as c:
        created = c.post("/v1/jobs", json={"items": items})
        assert created.status_code == 202
        assert created.json()["status"] == "queued"
        job_id = created.json()["job_id"]

        def finished() -> bool:
            bodies.append(c.get(f"/v1/jobs/{job_id}").json())
            return bodies[-1]["status"] in ("finished", "failed")

        wait_until(finished, 90, "the job", interval_s=0.02)
    final = bodies[-1]
    assert final["status"] == "finished"
    assert final["progress"] == {"done": 24, "total": 24}
    assert [r["id"] for r in final["results"]] == list(range(24))
    assert all(r["verdict"] == "accepted" for r in final["results"])
    dones = [b["progress"]["done"] for b in bodies]
    assert dones == sorted(dones), "progress never goes backwards"
    assert any(0 < d < 24 for d in dones) or len(bodies) < 3


def test_hostile_items_do_not_affect_the_others(cluster: Cluster) -> None:
    good = [{"id": f"good-{i}", "program": f"def f(x):\n    return x + {i}  # hostile",
             "input": "1", "output": str(1 + i)} for i in range(24)]
    hostile = [
        {"id": "bomb", "program": "def f(x):\n    kept = []\n    while True:\n"
                    "        kept.append(bytearray(2**20))", "input": "0"},
        {"id": "fork", "program": "import os\ndef f(x):\n    while True:\n        os.fork()",
         "input": "0"},
        {"id": "kill", "program": "import os\ndef f(x):\n    os.kill(os.getppid(), 9)",
         "input": "0"},
        {"id": "exit", "program": "import os\ndef f(x):\n    os._exit(0)", "input": "0"},
    ]
    batch = good[:12] + hostile + good[12:]
    with cluster.client() as c:
        response = c.post("/v1/check", json={"items": batch, "policy": "permissive"})
    assert response.status_code == 200, response.text
    by_id = {r["id"]: r for r in response.json()["results"]}
    assert all(by_id[g["id"]]["verdict"] == "accepted" for g in good)
    assert by_id["bomb"]["verdict"] == "memory_limit"
    assert by_id["fork"]["verdict"] == "runtime_error"
    assert all(w.alive() for w in cluster.workers)


def test_audit_returns_unsafe_and_nondeterministic_with_reasons(cluster: Cluster) -> None:
    since = time.time() - 1
    batch = [{"id": "ok", "program": "def f(x):\n    return x", "input": "1"},
             {"id": "nd", "program": NONDETERMINISTIC, "input": "0",
              "meta": {"step": 7, "role": "proposer", "task": "induction"}},
             {"id": "unsafe", "program": UNSAFE, "input": "0", "meta": {"step": 7}}]
    with cluster.client() as c:
        assert c.post("/v1/check", json={"items": batch}).status_code == 200
        records = c.get("/v1/audit", params={"since": since}).json()["records"]
        only_unsafe = c.get("/v1/audit", params={"since": since, "verdict": "unsafe"}).json()
    mine = {r["item_id"]: r for r in records if r["item_id"] in ("nd", "unsafe", "ok")}
    assert set(mine) == {"nd", "unsafe"}
    assert mine["nd"]["verdict"] == "nondeterministic" and "run 1 gave" in mine["nd"]["error"]
    assert mine["nd"]["meta"] == {"step": 7, "role": "proposer", "task": "induction"}
    assert mine["nd"]["api_key_name"] == "ci"
    assert mine["unsafe"]["verdict"] == "unsafe"
    assert mine["unsafe"]["violations"][0]["name"] == "os"
    assert {r["verdict"] for r in only_unsafe["records"]} == {"unsafe"}


def test_audit_export_cli_reads_redis(cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    env = settings_env(cluster.settings.model_copy(update={"redis_url": None}))
    done = subprocess.run(
        [sys.executable, "-m", "azr_verify.service.cli", "audit", "export", "--redis-url",
         cluster.redis.url, "--verdict", "nondeterministic", "-o", str(out)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines and {line["verdict"] for line in lines} == {"nondeterministic"}
    assert [line["time"] for line in lines] == sorted(line["time"] for line in lines)


def test_metrics_after_a_batch(cluster: Cluster) -> None:
    with cluster.client() as c:
        before = c.get("/metrics").text
        batch = [{"id": i, "program": f"def f(x):\n    return x - {i}  # metrics",
                  "input": "10"} for i in range(20)]
        batch.append({"id": "u", "program": UNSAFE + "  # metrics", "input": "0"})
        assert c.post("/v1/check", json={"items": batch}).status_code == 200
        after = c.get("/metrics").text
    assert metric(after, "azr_verify_telemetry_up") == 1
    delta = {v: metric(after, "azr_verify_items_total", verdict=v)
             - metric(before, "azr_verify_items_total", verdict=v)
             for v in ("accepted", "unsafe", "sandbox_error")}
    assert delta == {"accepted": 20, "unsafe": 1, "sandbox_error": 0}
    assert metric(after, "azr_verify_execution_seconds_count") - \
        metric(before, "azr_verify_execution_seconds_count") == 20
    assert metric(after, "azr_verify_cache_misses_total") - \
        metric(before, "azr_verify_cache_misses_total") == 20
    assert metric(after, "azr_verify_executors") == 2
    assert metric(after, "azr_verify_queue_depth_items") == 0
    assert metric(after, "azr_verify_queue_jobs") == 0
    assert metric(after, "azr_verify_request_seconds_count", method="POST",
                  route="/v1/check", status="200") >= 1
    pool_lines = [line for line in after.splitlines()
                  if line.startswith("azr_verify_pool_workers{")]
    executors = {line.split('executor="')[1].split('"')[0] for line in pool_lines}
    assert len(executors) == 2
    assert sum(float(line.rsplit(" ", 1)[1]) for line in pool_lines
               if 'state="idle"' in line or 'state="busy"' in line) >= 4


def test_overload_is_429_and_accepted_work_completes(cluster: Cluster) -> None:
    tight = cluster.settings.model_copy(update={"max_queue_depth": 16,
                                                "overload_retry_after_s": 4})
    items = [{"id": i, "program": SLOW, "input": str(500_000 + i)} for i in range(12)]
    with api_server(tight) as api, api.client(headers=AUTH) as c:
        accepted = c.post("/v1/jobs", json={"items": items})
        assert accepted.status_code == 202
        refused = c.post("/v1/jobs", json={"items": items[:8]})
        assert refused.status_code == 429
        assert error_of(refused)["code"] == "overloaded"
        assert refused.headers["retry-after"] == "4"
        job_id = accepted.json()["job_id"]
        wait_until(lambda: c.get(f"/v1/jobs/{job_id}").json()["status"] == "finished", 90,
                   "the accepted job")
        results = c.get(f"/v1/jobs/{job_id}").json()["results"]
        assert [r["id"] for r in results] == list(range(12))
        assert all(r["verdict"] == "accepted" for r in results)
        assert c.post("/v1/jobs", json={"items": items[:8]}).status_code == 202


def test_sigkilled_worker_loses_nothing(cluster: Cluster) -> None:
    conn = cluster.redis_client()
    queue = Queue(cluster.settings.queue_name, connection=conn)
    # Slow enough that a chunk takes about a second: the kill lands mid-chunk.
    items = [{"id": i, "program": SLOW, "input": str(2_000_000 + i)} for i in range(48)]
    with cluster.client() as c:
        before = metric(c.get("/metrics").text, "azr_verify_items_total", verdict="accepted")
        job_id = c.post("/v1/jobs", json={"items": items}).json()["job_id"]
        victim: list[tuple[int, str]] = []

        def someone_is_busy() -> bool:
            victim[:] = [(int(w.pid), w.get_current_job_id())
                         for w in Worker.all(connection=conn, queue=queue)
                         if w.get_state() == "busy" and w.pid and w.get_current_job_id()]
            return bool(victim)

        wait_until(someone_is_busy, 60, "a worker holding a job", interval_s=0.01)
        pid, held = victim[0]
        killed = next(w for w in cluster.workers if w.pid == pid)
        killed.kill()
        assert not killed.alive()
        # The chunk was abandoned mid-run, not finished just before the kill.
        job = Job.fetch(held, connection=conn, serializer=JSONSerializer)
        assert job.get_status() == JobStatus.STARTED

        wait_until(lambda: c.get(f"/v1/jobs/{job_id}").json()["status"] == "finished", 90,
                   "the batch to finish without the killed worker")
        final = c.get(f"/v1/jobs/{job_id}").json()
        after = metric(c.get("/metrics").text, "azr_verify_items_total", verdict="accepted")
    assert final["progress"] == {"done": 48, "total": 48}
    assert [r["id"] for r in final["results"]] == list(range(48))
    assert all(r["verdict"] == "accepted" for r in final["results"]), final["results"]
    # The re-run chunk is counted once, however many times it ran.
    assert after - before == 48
    cluster.ensure_workers(2)


def test_redis_stop_and_restart(cluster: Cluster) -> None:
    with cluster.client() as c:
        cluster.redis.stop()
        ready = c.get("/readyz")
        assert ready.status_code == 503
        assert error_of(ready)["code"] == "not_ready"
        for method, path, body in (("POST", "/v1/check", {"items": mixed_batch("down")[:2]}),
                                   ("POST", "/v1/jobs", {"items": mixed_batch("down")[:2]}),
                                   ("GET", "/v1/jobs/" + "0" * 32, None),
                                   ("GET", "/v1/audit", None)):
            response = c.request(method, path, json=body)
            assert response.status_code == 503, (path, response.text)
            assert error_of(response)["code"] == "queue_unavailable"
            assert "retry-after" in response.headers
        scraped = c.get("/metrics")
        assert scraped.status_code == 200
        assert metric(scraped.text, "azr_verify_telemetry_up") == 0
        assert c.get("/healthz").status_code == 200

        cluster.redis.start()  # same port; an empty Redis, as after a crash
        wait_until(lambda: c.get("/readyz").status_code == 200, 30, "readiness")
        cluster.ensure_workers(2)
        response = c.post("/v1/check", json={"items": mixed_batch("up")})
        assert response.status_code == 200, response.text
        assert len(response.json()["results"]) == len(mixed_batch("up"))
        assert all(w.alive() for w in cluster.workers)
