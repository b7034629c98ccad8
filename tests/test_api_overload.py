"""Backpressure in embedded mode: 429 with Retry-After beyond the depth, nothing lost."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine

from .servers import ApiServer, api_server, error_of, wait_until

DEPTH = 8
SLOW = "def f(x):\n    s = 0\n    for i in range(x):\n        s += i\n    return s"


def slow_items(tag: str, count: int, size: int = 1_500_000) -> list[dict[str, object]]:
    # Distinct inputs: nothing is answered from the cache, so the items really queue up.
    return [{"id": f"{tag}-{k}", "program": SLOW, "input": str(size + k),
             "output": str((size + k) * (size + k - 1) // 2)} for k in range(count)]


@pytest.fixture(scope="module")
def server(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("overload"), max_queue_depth=DEPTH,
                        overload_retry_after_s=3)
    with api_server(settings, engine) as running:
        yield running


def finished_job(client: httpx.Client, job_id: str) -> dict[str, object]:
    bodies: list[dict[str, object]] = []

    def done() -> bool:
        bodies.append(client.get(f"/v1/jobs/{job_id}").json())
        return bodies[-1]["status"] in ("finished", "failed")

    wait_until(done, 120, f"job {job_id}", interval_s=0.05)
    return bodies[-1]


def test_overload_is_429_with_retry_after_and_nothing_accepted_is_lost(
        server: ApiServer) -> None:
    with server.client() as client:
        first = client.post("/v1/jobs", json={"items": slow_items("a", 6)})
        assert first.status_code == 202
        refused = client.post("/v1/jobs", json={"items": slow_items("b", 6)})
        assert refused.status_code == 429
        assert error_of(refused)["code"] == "overloaded"
        assert refused.headers["retry-after"] == "3"
        refused_check = client.post("/v1/check", json={"items": slow_items("c", 4)})
        assert refused_check.status_code == 429
        fits = client.post("/v1/jobs", json={"items": slow_items("d", 2)})
        assert fits.status_code == 202
        depth = client.get("/metrics").text
        assert "azr_verify_queue_depth_items 8.0" in depth

        for created, tag, count in ((first, "a", 6), (fits, "d", 2)):
            body = finished_job(client, created.json()["job_id"])
            assert body["status"] == "finished"
            results = body["results"]
            assert isinstance(results, list) and len(results) == count
            assert [r["id"] for r in results] == [f"{tag}-{k}" for k in range(count)]
            assert all(r["verdict"] == "accepted" for r in results), results
        # Once drained, the refused batch goes through.
        retried = client.post("/v1/check", json={"items": slow_items("b", 6)})
        assert retried.status_code == 200
        assert all(r["verdict"] == "accepted" for r in retried.json()["results"])


def test_concurrent_clients_get_answers_or_429_never_silence(server: ApiServer) -> None:
    def send(k: int) -> tuple[int, list[dict[str, object]] | None, str | None]:
        with server.client() as client:
            response = client.post("/v1/check", json={"items": slow_items(f"p{k}", 3, 600_000)})
        if response.status_code == 200:
            return 200, response.json()["results"], None
        return response.status_code, None, response.headers.get("retry-after")

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(send, range(8)))
    statuses = [status for status, _, _ in outcomes]
    assert set(statuses) <= {200, 429}
    assert statuses.count(200) >= 2
    assert 429 in statuses
    for status, results, retry_after in outcomes:
        if status == 200:
            assert results is not None and len(results) == 3
            assert all(r["verdict"] == "accepted" for r in results)
        else:
            assert retry_after == "3"
