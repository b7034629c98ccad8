"""Distributed mode with no worker running: jobs wait queued, a synchronous check gets a clear
504 after `check_timeout_s`, and `azr-verify worker --burst` answers everything queued."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from azr_verify.service.config import Settings

from .guards import assert_executed, fresh
from .servers import (
    REPO,
    ApiServer,
    RedisServer,
    api_server,
    error_of,
    require_bwrap,
    settings_env,
)
from .test_api_embedded import metric

CHECK_TIMEOUT_S = 2.0


@dataclass
class Idle:
    """A Redis and an API, and no worker."""

    settings: Settings
    api: ApiServer


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Idle]:
    root = tmp_path_factory.mktemp("burst")
    redis = RedisServer(root / "redis")  # fails, not skips, when redis-server is missing
    require_bwrap()
    redis.start()
    try:
        settings = Settings(workers=2, redis_url=redis.url, data_dir=root / "data",
                            chunk_size=3, queue_name=f"burst-{uuid.uuid4().hex[:6]}",
                            check_timeout_s=CHECK_TIMEOUT_S)
        with api_server(settings) as api:
            yield Idle(settings, api)
    finally:
        redis.stop()


def items(count: int) -> list[dict[str, object]]:
    return [{"id": k, "program": fresh(f"def f(x):\n    return x + {k}"), "input": "1",
             "output": str(1 + k)} for k in range(count)]


def run_burst_worker(settings: Settings) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "azr_verify.service.cli", "worker", "--burst"],
        env=settings_env(settings), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def gauge(client: httpx.Client, name: str) -> float:
    return metric(client.get("/metrics").text, name)


def test_check_without_workers_is_a_504_and_its_work_is_kept(idle: Idle) -> None:
    with idle.api.client() as client:
        assert client.get("/v1/info").json()["executors"]["processes"] == 0
        response = client.post("/v1/check", json={"items": items(4)})
        assert response.status_code == 504, response.text
        error = error_of(response)
        assert error["code"] == "queue_timeout"
        assert "0 of 2 chunks answered" in error["message"]
        assert "are any workers running?" in error["message"]
        # The batch stays queued (and counted against the depth) until a worker answers it.
        assert gauge(client, "azr_verify_queue_depth_items") == 4
        assert gauge(client, "azr_verify_queue_jobs") == 2
        run_burst_worker(idle.settings)
        assert gauge(client, "azr_verify_queue_depth_items") == 0
        assert gauge(client, "azr_verify_queue_jobs") == 0
        # A worker that left cleanly takes its gauges with it.
        assert gauge(client, "azr_verify_executors") == 0


def test_queued_job_waits_for_a_worker_then_completes(idle: Idle) -> None:
    batch = items(10)
    with idle.api.client() as client:
        created = client.post("/v1/jobs", json={"items": batch})
        assert created.status_code == 202
        job_id = created.json()["job_id"]
        queued = client.get(f"/v1/jobs/{job_id}").json()
        assert queued["status"] == "queued"
        assert queued["progress"] == {"done": 0, "total": 10}
        assert queued["results"] is None
        assert gauge(client, "azr_verify_queue_jobs") == 4

        run_burst_worker(idle.settings)

        final = client.get(f"/v1/jobs/{job_id}").json()
        assert final["status"] == "finished"
        assert [r["id"] for r in final["results"]] == list(range(10))
        assert [r["verdict"] for r in final["results"]] == ["accepted"] * 10
        assert_executed(final["results"])
        assert gauge(client, "azr_verify_queue_jobs") == 0
        assert gauge(client, "azr_verify_queue_depth_items") == 0
        assert gauge(client, "azr_verify_executors") == 0
