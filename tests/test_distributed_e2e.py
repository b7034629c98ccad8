"""Distributed mode end to end: a real redis-server, two real `azr-verify worker` processes and
the real API on uvicorn. The module shares one cluster; the disruptive tests (SIGKILL a worker,
a poison chunk, restart Redis) run last and leave the cluster whole again.

Nothing here samples a moving state and hopes: a test that needs work to be in flight freezes
the workers (SIGSTOP) so that the state it looks at cannot change, and counters that workers
update just after answering a chunk are read once they have settled.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine
from azr_verify.service.models import CheckItem, PolicyName
from azr_verify.service.queue.batches import BatchSubmitter, chunk_job_id, new_batch_id
from azr_verify.service.queue.keys import Keys

from .guards import assert_executed, fresh, token
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
CHUNK = 8
RETRIES = 3
SLOW = "def f(x):\n    s = 0\n    for i in range(x):\n        s += i\n    return s"


def slow_items(count: int, size: int) -> list[dict[str, Any]]:
    """`count` accepted items, one fresh program: their sums of range(size + k)."""
    program = fresh(SLOW)
    return [{"id": k, "program": program, "input": str(size + k),
             "output": str((size + k) * (size + k - 1) // 2)} for k in range(count)]


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
        for worker in self.workers:
            worker.thaw()
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

    def queue(self) -> Queue:
        return Queue(self.settings.queue_name, connection=self.redis_client(),
                     serializer=JSONSerializer)

    @property
    def keys(self) -> Keys:
        return Keys.from_settings(self.settings)

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Every worker stopped (SIGSTOP) inside the block, thawed after it."""
        for worker in self.workers:
            worker.freeze()
        try:
            yield
        finally:
            for worker in self.workers:
                worker.thaw()

    def submit_while_frozen(self, c: httpx.Client, make_items: Callable[[], list[dict[str, Any]]]
                            ) -> tuple[list[dict[str, Any]], str]:
        """POSTs a job while every worker is frozen in its wait on the queue, so that each has
        received exactly one chunk (checked: the queue is short by one chunk per worker).
        A worker caught between two waits spoils an attempt; its job is let finish and the
        next attempt sends fresh items. Returns with the workers frozen (inside `frozen()`)
        or thawed (outside it), as the caller had them."""
        queue = self.queue()
        for _attempt in range(5):
            items = make_items()
            was_frozen = [worker.frozen for worker in self.workers]
            for worker in self.workers:
                worker.freeze()
            created = c.post("/v1/jobs", json={"items": items})
            assert created.status_code == 202, created.text
            job_id: str = created.json()["job_id"]
            chunks = -(-len(items) // CHUNK)
            if queue.count == chunks - len(self.workers):
                for worker, frozen in zip(self.workers, was_frozen, strict=True):
                    if not frozen:
                        worker.thaw()
                return items, job_id
            for worker in self.workers:
                worker.thaw()
            wait_until(lambda j=job_id: c.get(f"/v1/jobs/{j}").json()["status"] == "finished",
                       120, "a spoilt attempt's job")
            wait_until(self.all_idle, 60, "the workers to go back to waiting")
        pytest.fail("the workers were never all waiting on the queue at once")

    def all_idle(self) -> bool:
        states = [r.get_state() for w in self.workers for r in self.rq_workers(w.pid)]
        return bool(states) and all(state == "idle" for state in states)

    def rq_workers(self, pid: int) -> list[Worker]:
        """RQ's registrations of one worker process (one per reconnection)."""
        return [w for w in Worker.all(queue=self.queue()) if w.pid == pid]

    def jobs_done(self, key: str) -> dict[int, int]:
        """Per worker process: its RQ `successful_job_count` or `failed_job_count`."""
        return {w.pid: sum(getattr(r, key) for r in self.rq_workers(w.pid))
                for w in self.workers}

    def metrics(self) -> str:
        with self.client() as c:
            return c.get("/metrics").text

    def settled(self, read: Callable[[str], float], expected: float, what: str) -> None:
        """Workers bump counters just after answering a chunk: wait until `read` reaches
        `expected`, then require exactly that (a duplicate count would overshoot)."""
        wait_until(lambda: read(self.metrics()) >= expected, 60, what)
        assert read(self.metrics()) == expected, what

    def freeze_one_holding_a_chunk(self) -> tuple[WorkerProcess, str]:
        """A worker frozen while it runs a chunk nobody has answered yet, and that chunk's
        job id. Found by looking at busy workers; decided only once frozen (a frozen worker
        cannot finish its chunk between the check and what the test does next)."""
        conn = self.redis_client()
        queue = self.queue()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # Only live processes: a killed worker's registration outlives it for a while.
            ours = {w.pid: w for w in self.workers if w.alive()}
            busy = [w.pid for w in Worker.all(queue=queue)
                    if w.pid in ours and w.get_state() == "busy" and w.get_current_job_id()]
            for pid in busy:
                worker = ours[pid]
                worker.freeze()
                held = next((w.get_current_job_id() for w in self.rq_workers(pid)
                             if w.get_current_job_id()), None)
                if held is not None:
                    batch_id, index = held.rsplit("-", 1)
                    job = Job.fetch(held, connection=conn, serializer=JSONSerializer)
                    if job.get_status() == JobStatus.STARTED and not conn.exists(
                            self.keys.chunk_result(batch_id, int(index))):
                        return worker, held
                worker.thaw()
            time.sleep(0.01)
        raise TimeoutError("no worker was seen holding an unanswered chunk")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_redis()
    require_bwrap()
    root = tmp_path_factory.mktemp("cluster")
    server = RedisServer(root / "redis")
    server.start()
    settings = Settings(
        workers=2, data_dir=root / "data", redis_url=server.url, api_keys={"ci": KEY},
        chunk_size=CHUNK, queue_name=f"test-{uuid.uuid4().hex[:8]}", worker_heartbeat_s=1,
        reap_interval_s=0.5, redis_timeout_s=5.0, check_timeout_s=120, job_retries=RETRIES)
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


def mixed_batch(tag: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Every kind of verdict, with programs unique to `tag` (so nothing is cached), and the
    verdict each item must get."""
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
        # Comparisons (no program): decided by the worker's engine without running anything.
        {"id": "same", "input": "{'a': {1, 2}, 'b': nan}", "output": "{'b': nan, 'a': {2, 1}}"},
        {"id": "differs", "input": "[1]", "output": "(1,)"},
    ]
    verdicts = {f"{tag}-ok-{i}": "accepted" for i in range(20)} | {
        "wrong": "wrong_output", "raise": "runtime_error", "unsafe": "unsafe",
        "syntax": "syntax_error", "nondet": "nondeterministic", "gen": "not_literal",
        "loop": "timeout", "huge": "output_limit", "dict": "accepted", "same": "accepted",
        "differs": "wrong_output"}
    return items, verdicts


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


@pytest.mark.sandbox
def test_results_identical_to_embedded_mode(cluster: Cluster, embedded: ApiServer) -> None:
    batch, expected = mixed_batch(token())
    with cluster.client() as c:
        distributed = c.post("/v1/check", json={"items": batch})
    with embedded.client() as c:
        local = c.post("/v1/check", json={"items": batch})
    assert distributed.status_code == local.status_code == 200, distributed.text
    got, want = distributed.json()["results"], local.json()["results"]
    assert len(got) == len(batch) > cluster.settings.chunk_size * 3  # several chunks
    assert_executed(got)
    assert_executed(want)
    assert comparable(got) == comparable(want)
    assert {r["id"]: r["verdict"] for r in got} == expected


def test_both_workers_take_chunks(cluster: Cluster) -> None:
    """Each waiting worker takes a chunk as soon as the batch is queued: with both frozen at
    that moment, each has received one (the queue is two short), so each runs at least one,
    which RQ's own per-worker job counters confirm."""
    before = cluster.jobs_done("successful_job_count")
    with cluster.client() as c:
        items, job_id = cluster.submit_while_frozen(c, lambda: slow_items(48, 300_000))
        wait_until(lambda: c.get(f"/v1/jobs/{job_id}").json()["status"] == "finished", 120,
                   "the job")
        results = c.get(f"/v1/jobs/{job_id}").json()["results"]
    assert [r["verdict"] for r in results] == ["accepted"] * len(items)
    assert_executed(results)
    chunks = len(items) // CHUNK

    def ran() -> dict[int, int]:
        after = cluster.jobs_done("successful_job_count")
        return {pid: after[pid] - before.get(pid, 0) for pid in after}

    # At least: under heavy load a busy worker's chunk may be presumed dead and re-run.
    wait_until(lambda: sum(ran().values()) >= chunks, 60, "RQ to count the chunks")
    assert all(count > 0 for count in ran().values()), ran()


def test_jobs_report_progress_then_results(cluster: Cluster) -> None:
    """Frozen workers each hold one chunk they received from the queue; thawing one of them
    lets it answer its chunk and the last queued one, while the other still holds its own: the
    job then sits at 16 of 24 items, running, for as long as the test looks at it."""
    bodies: list[dict[str, Any]] = []
    with cluster.client() as c:

        def status(job_id: str) -> dict[str, Any]:
            bodies.append(c.get(f"/v1/jobs/{job_id}").json())
            return bodies[-1]

        with cluster.frozen():
            items, job_id = cluster.submit_while_frozen(c, lambda: slow_items(24, 400_000))
            queued = status(job_id)
            assert queued["status"] == "queued"
            assert queued["progress"] == {"done": 0, "total": 24}
            assert queued["results"] is None
            first, _still_frozen = cluster.workers
            first.thaw()
            wait_until(lambda: status(job_id)["progress"]["done"] == 16, 60,
                       "the thawed worker to answer two chunks")
            middle = status(job_id)
            assert middle["status"] == "running"
            assert middle["progress"] == {"done": 16, "total": 24}
            assert middle["results"] is None
        # Thawed (the other worker too): the job completes.
        wait_until(lambda: status(job_id)["status"] in ("finished", "failed"), 90, "the job")
    final = bodies[-1]
    assert final["status"] == "finished"
    assert final["progress"] == {"done": 24, "total": 24}
    assert [r["id"] for r in final["results"]] == list(range(24))
    assert [r["output"] for r in final["results"]] == [i["output"] for i in items]
    assert all(r["verdict"] == "accepted" for r in final["results"])
    assert_executed(final["results"])
    dones = [b["progress"]["done"] for b in bodies]
    assert dones == sorted(dones), "progress never goes backwards"
    assert all(b["results"] is None for b in bodies[:-1])


def test_hostile_items_do_not_affect_the_others(cluster: Cluster) -> None:
    tag = token()
    good = [{"id": f"good-{i}", "program": f"def f(x):\n    return x + {i}  # {tag}",
             "input": "1", "output": str(1 + i)} for i in range(24)]
    hostile = [
        {"id": "bomb", "program": fresh("def f(x):\n    kept = []\n    while True:\n"
                                        "        kept.append(bytearray(2**20))"),
         "memory_mb": 64,
         "input": "0"},
        {"id": "fork", "program": fresh("import os\ndef f(x):\n    while True:\n        os.fork()"),
         "input": "0"},
        {"id": "kill", "program": fresh("import os\ndef f(x):\n    os.kill(os.getppid(), 9)"),
         "input": "0"},
        {"id": "exit", "program": fresh("import os\ndef f(x):\n    os._exit(0)"), "input": "0"},
    ]
    batch = good[:12] + hostile + good[12:]
    with cluster.client() as c:
        response = c.post("/v1/check", json={"items": batch, "policy": "permissive"})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["id"] for r in results] == [i["id"] for i in batch]
    assert_executed(results)
    by_id = {r["id"]: r for r in results}
    assert all(by_id[g["id"]]["verdict"] == "accepted" for g in good)
    assert by_id["bomb"]["verdict"] == "memory_limit"
    assert by_id["fork"]["verdict"] == "runtime_error"
    # The sandbox's parent is out of reach: the kill is a no-op and f returns None.
    assert (by_id["kill"]["verdict"], by_id["kill"]["output"]) == ("accepted", "None")
    assert (by_id["exit"]["verdict"], by_id["exit"]["error_type"]) == ("runtime_error",
                                                                       "NoResult")
    assert all(w.alive() for w in cluster.workers)


def test_audit_returns_unsafe_and_nondeterministic_with_reasons(cluster: Cluster) -> None:
    since = time.time() - 1
    tag = token()
    batch = [{"id": f"ok-{tag}", "program": fresh("def f(x):\n    return x"), "input": "1"},
             {"id": f"nd-{tag}", "program": fresh(NONDETERMINISTIC), "input": "0",
              "meta": {"step": 7, "role": "proposer", "task": "induction"}},
             {"id": f"unsafe-{tag}", "program": UNSAFE, "input": "0", "meta": {"step": 7}}]
    with cluster.client() as c:
        response = c.post("/v1/check", json={"items": batch})
        assert response.status_code == 200
        assert_executed(response.json()["results"])
        records = c.get("/v1/audit", params={"since": since}).json()["records"]
        only_unsafe = c.get("/v1/audit", params={"since": since, "verdict": "unsafe"}).json()
    mine = {r["item_id"]: r for r in records if str(r["item_id"]).endswith(tag)}
    assert set(mine) == {f"nd-{tag}", f"unsafe-{tag}"}
    nd, unsafe = mine[f"nd-{tag}"], mine[f"unsafe-{tag}"]
    assert nd["verdict"] == "nondeterministic" and "run 1 gave" in nd["error"]
    assert nd["meta"] == {"step": 7, "role": "proposer", "task": "induction"}
    assert nd["api_key_name"] == "ci"
    assert unsafe["verdict"] == "unsafe"
    assert unsafe["violations"] == [{"rule": "import_denied", "name": "os", "line": 1}]
    assert {r["verdict"] for r in only_unsafe["records"]} == {"unsafe"}


def test_audit_export_cli_reads_redis(cluster: Cluster, tmp_path: Path) -> None:
    tag = token()
    with cluster.client() as c:
        response = c.post("/v1/check", json={"items": [
            {"id": f"nd-{tag}", "program": fresh(NONDETERMINISTIC), "input": "0"}]})
    assert response.json()["results"][0]["verdict"] == "nondeterministic"
    out = tmp_path / "audit.jsonl"
    env = settings_env(cluster.settings.model_copy(update={"redis_url": None}))
    done = subprocess.run(
        [sys.executable, "-m", "azr_verify.service.cli", "audit", "export", "--redis-url",
         cluster.redis.url, "--verdict", "nondeterministic", "-o", str(out)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {line["verdict"] for line in lines} == {"nondeterministic"}
    assert f"nd-{tag}" in {line["item_id"] for line in lines}
    assert [line["time"] for line in lines] == sorted(line["time"] for line in lines)


def test_metrics_after_a_batch(cluster: Cluster) -> None:
    cluster.ensure_workers(2)  # both reporting (a frozen worker's gauges expire)
    before = cluster.metrics()
    batch = [{"id": i, "program": fresh(f"def f(x):\n    return x - {i}"), "input": "10"}
             for i in range(20)]
    batch.append({"id": "u", "program": UNSAFE, "input": "0"})
    with cluster.client() as c:
        response = c.post("/v1/check", json={"items": batch})
    assert response.status_code == 200
    assert_executed(response.json()["results"])

    def delta(name: str, **labels: str) -> Callable[[str], float]:
        return lambda text: metric(text, name, **labels) - metric(before, name, **labels)

    cluster.settled(delta("azr_verify_items_total", verdict="accepted"), 20, "accepted items")
    cluster.settled(delta("azr_verify_items_total", verdict="unsafe"), 1, "unsafe items")
    cluster.settled(delta("azr_verify_execution_seconds_count"), 20, "timed executions")
    cluster.settled(delta("azr_verify_cache_misses_total"), 20, "cache misses")
    cluster.settled(delta("azr_verify_cache_hits_total"), 0, "cache hits")
    after = cluster.metrics()
    assert metric(after, "azr_verify_items_total", verdict="sandbox_error") == \
        metric(before, "azr_verify_items_total", verdict="sandbox_error")
    assert metric(after, "azr_verify_telemetry_up") == 1
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
    """The workers are frozen while the second request comes, so the first batch is surely
    still queued (holding the depth) when admission decides."""
    tight = cluster.settings.model_copy(update={"max_queue_depth": 16,
                                                "overload_retry_after_s": 4})
    items = slow_items(12, 500_000)
    with api_server(tight) as api, api.client(headers=AUTH) as c:
        with cluster.frozen():
            accepted = c.post("/v1/jobs", json={"items": items})
            assert accepted.status_code == 202
            refused = c.post("/v1/jobs", json={"items": items[:8]})
            assert refused.status_code == 429
            assert error_of(refused)["code"] == "overloaded"
            assert refused.headers["retry-after"] == "4"
            assert "azr_verify_queue_depth_items 12.0" in c.get("/metrics").text
        job_id = accepted.json()["job_id"]
        wait_until(lambda: c.get(f"/v1/jobs/{job_id}").json()["status"] == "finished", 90,
                   "the accepted job")
        results = c.get(f"/v1/jobs/{job_id}").json()["results"]
        assert [r["id"] for r in results] == list(range(12))
        assert all(r["verdict"] == "accepted" for r in results)
        assert_executed(results)
        assert "azr_verify_queue_depth_items 0.0" in c.get("/metrics").text
        assert c.post("/v1/jobs", json={"items": items[:8]}).status_code == 202


def test_sigkilled_worker_loses_nothing(cluster: Cluster) -> None:
    items = slow_items(48, 2_000_000)  # a chunk runs long enough to be caught in the act
    before = metric(cluster.metrics(), "azr_verify_items_total", verdict="accepted")
    with cluster.client() as c:
        job_id = c.post("/v1/jobs", json={"items": items}).json()["job_id"]
        # Frozen mid-chunk (checked: the chunk is started and unanswered), then killed: the
        # chunk is abandoned mid-run, not finished just before the kill.
        victim, _held = cluster.freeze_one_holding_a_chunk()
        victim.kill()
        assert not victim.alive()

        wait_until(lambda: c.get(f"/v1/jobs/{job_id}").json()["status"] == "finished", 120,
                   "the batch to finish without the killed worker")
        final = c.get(f"/v1/jobs/{job_id}").json()
    assert final["progress"] == {"done": 48, "total": 48}
    assert [r["id"] for r in final["results"]] == list(range(48))
    assert all(r["verdict"] == "accepted" for r in final["results"]), final["results"]
    assert_executed(final["results"])
    # The re-run chunk is counted once, however many times it ran.
    cluster.settled(lambda text: metric(text, "azr_verify_items_total", verdict="accepted")
                    - before, 48, "accepted items of the batch")
    cluster.ensure_workers(2)


def test_worker_death_during_a_synchronous_check(cluster: Cluster) -> None:
    """/v1/check waits while one of its chunks dies with its worker: the chunk is re-run
    elsewhere and the answer is complete and in order, as if nothing happened."""
    items = slow_items(48, 2_000_000)
    answer: list[httpx.Response] = []

    def check() -> None:
        with cluster.client() as c:
            answer.append(c.post("/v1/check", json={"items": items}))

    caller = threading.Thread(target=check)
    caller.start()
    victim, _held = cluster.freeze_one_holding_a_chunk()
    victim.kill()
    caller.join(180)
    assert not caller.is_alive(), "/v1/check never answered"
    assert answer[0].status_code == 200, answer[0].text
    results = answer[0].json()["results"]
    assert [r["id"] for r in results] == list(range(48))
    assert [r["output"] for r in results] == [i["output"] for i in items]
    assert all(r["verdict"] == "accepted" for r in results)
    assert_executed(results)
    assert metric(cluster.metrics(), "azr_verify_queue_depth_items") == 0
    cluster.ensure_workers(2)


def test_poison_chunk_exhausts_its_retries(cluster: Cluster) -> None:
    """A chunk every worker fails on (here: an item the worker's validation refuses, as a
    newer API's payload would be) runs 1 + job_retries times, then answers sandbox_error for
    its own items only; the rest of the batch is unaffected and the metrics count it once."""
    conn = cluster.redis_client()
    keys = cluster.keys
    good = slow_items(3 * CHUNK, 100_000)
    poison = CheckItem.model_construct(id="poison", program=fresh(SLOW), input="1",
                                       entry="not an identifier", output=None,
                                       determinism_runs=None, timeout_s=None, memory_mb=None,
                                       meta=None)
    items = [CheckItem.model_validate(i) for i in good[:CHUNK]]
    items += [poison, *(CheckItem.model_validate(i) for i in good[CHUNK + 1:])]
    before_metrics = cluster.metrics()
    before_failed = sum(cluster.jobs_done("failed_job_count").values())
    batch_id = new_batch_id()
    # What admission (the API) does before enqueueing: reserve the depth.
    conn.incrby(keys.pending_items, len(items))
    BatchSubmitter(conn, cluster.settings).submit(batch_id, items, PolicyName.AZR, "ci")
    with cluster.client() as c:
        wait_until(lambda: c.get(f"/v1/jobs/{batch_id}").json()["status"] == "failed", 120,
                   "the poisoned batch to be answered")
        body = c.get(f"/v1/jobs/{batch_id}").json()
    assert body["progress"] == {"done": len(items), "total": len(items)}
    assert body["error"] == "1 chunk(s) failed; their items answer sandbox_error"
    results = body["results"]
    assert [r["id"] for r in results] == [i.id for i in items]
    poisoned = results[CHUNK:2 * CHUNK]
    assert [r["verdict"] for r in poisoned] == ["sandbox_error"] * CHUNK
    assert all(r["error"].startswith("chunk failed after retries: ValidationError")
               for r in poisoned)
    others = results[:CHUNK] + results[2 * CHUNK:]
    assert [r["verdict"] for r in others] == ["accepted"] * (2 * CHUNK)
    assert_executed(others)
    # 1 run + RETRIES re-runs, then RQ gives up on it for good.
    wait_until(lambda: sum(cluster.jobs_done("failed_job_count").values()) - before_failed
               >= 1 + RETRIES, 60, "RQ to count the failed runs")
    assert sum(cluster.jobs_done("failed_job_count").values()) - before_failed == 1 + RETRIES
    job = Job.fetch(chunk_job_id(batch_id, 1), connection=conn, serializer=JSONSerializer)
    assert job.get_status() == JobStatus.FAILED and not job.retries_left
    assert job.id in FailedJobRegistry(cluster.settings.queue_name, connection=conn)

    def delta(verdict: str) -> Callable[[str], float]:
        return lambda text: metric(text, "azr_verify_items_total", verdict=verdict) - \
            metric(before_metrics, "azr_verify_items_total", verdict=verdict)

    cluster.settled(delta("sandbox_error"), CHUNK, "sandbox_error items")
    cluster.settled(delta("accepted"), 2 * CHUNK, "accepted items")
    assert metric(cluster.metrics(), "azr_verify_queue_depth_items") == 0
    assert all(w.alive() for w in cluster.workers)


def test_redis_stop_and_restart(cluster: Cluster) -> None:
    down, _ = mixed_batch(token())
    with cluster.client() as c:
        cluster.redis.stop()
        ready = c.get("/readyz")
        assert ready.status_code == 503
        assert error_of(ready)["code"] == "not_ready"
        for method, path, body in (("POST", "/v1/check", {"items": down[:2]}),
                                   ("POST", "/v1/jobs", {"items": down[:2]}),
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
        up, expected = mixed_batch(token())
        response = c.post("/v1/check", json={"items": up})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert {r["id"]: r["verdict"] for r in results} == expected
        assert_executed(results)
        assert all(w.alive() for w in cluster.workers)
