"""`azr-verify worker --burst`: work queued with no worker running is done once one starts."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

from azr_verify.service.config import Settings

from .servers import REPO, RedisServer, api_server, require_bwrap, settings_env


def test_queued_work_waits_for_a_worker_then_completes(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")  # fails, not skips, under AZR_VERIFY_REQUIRE_REDIS
    require_bwrap()
    redis.start()
    try:
        settings = Settings(workers=2, redis_url=redis.url, data_dir=tmp_path / "data",
                            chunk_size=3, queue_name=f"burst-{uuid.uuid4().hex[:6]}")
        items = [{"id": k, "program": f"def f(x):\n    return x + {k}", "input": "1",
                  "output": str(1 + k)} for k in range(10)]
        with api_server(settings) as api, api.client() as client:
            created = client.post("/v1/jobs", json={"items": items})
            assert created.status_code == 202
            job_id = created.json()["job_id"]
            queued = client.get(f"/v1/jobs/{job_id}").json()
            assert queued["status"] == "queued"
            assert queued["progress"] == {"done": 0, "total": 10}
            assert "azr_verify_queue_jobs 4.0" in client.get("/metrics").text

            done = subprocess.run(
                [sys.executable, "-m", "azr_verify.service.cli", "worker", "--burst"],
                env=settings_env(settings), cwd=REPO, capture_output=True, text=True,
                timeout=120)
            assert done.returncode == 0, done.stderr

            final = client.get(f"/v1/jobs/{job_id}").json()
            assert final["status"] == "finished"
            assert [r["verdict"] for r in final["results"]] == ["accepted"] * 10
            metrics = client.get("/metrics").text
            assert "azr_verify_queue_jobs 0.0" in metrics
            assert "azr_verify_queue_depth_items 0.0" in metrics
            # A worker that left cleanly takes its gauges with it.
            assert "azr_verify_executors 0.0" in metrics
    finally:
        redis.stop()
