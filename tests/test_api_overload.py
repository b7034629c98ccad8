"""Backpressure in embedded mode: 429 with Retry-After beyond the depth, nothing lost.

Admission is decided while earlier work is in flight, so every batch that must be in flight
when the next request arrives carries a *hold* item: a loop that only ends at its own timeout.
However fast the machine, that batch cannot finish sooner, and the test checks afterwards that
it was indeed still running when the refusals came.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from azr_verify.service.config import Settings
from azr_verify.service.engine import Engine

from .guards import assert_executed, fresh, token
from .servers import ApiServer, api_server, error_of, wait_until

pytestmark = pytest.mark.sandbox

DEPTH = 8
HOLD_S = 3.0
SLOW = "def f(x):\n    s = 0\n    for i in range(x):\n        s += i\n    return s"
LOOP = "def f(x):\n    while True:\n        pass"


def slow_items(tag: str, count: int, size: int = 300_000) -> list[dict[str, Any]]:
    program = fresh(SLOW)
    return [{"id": f"{tag}-{k}", "program": program, "input": str(size + k),
             "output": str((size + k) * (size + k - 1) // 2)} for k in range(count)]


def hold_item(tag: str) -> dict[str, Any]:
    """Keeps its batch in flight for at least HOLD_S (one run: the verdict is timeout)."""
    return {"id": f"{tag}-hold", "program": fresh(LOOP), "input": "0", "timeout_s": HOLD_S,
            "determinism_runs": 1}


@pytest.fixture(scope="module")
def server(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("overload"), max_queue_depth=DEPTH,
                        overload_retry_after_s=3)
    with api_server(settings, engine) as running:
        yield running


def job_status(client: httpx.Client, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
    return body


def finished_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    bodies: list[dict[str, Any]] = []

    def done() -> bool:
        bodies.append(job_status(client, job_id))
        return bodies[-1]["status"] in ("finished", "failed")

    wait_until(done, 120, f"job {job_id}", interval_s=0.05)
    return bodies[-1]


def assert_answered(results: list[dict[str, Any]], tag: str, count: int, hold: bool) -> None:
    """`count` slow items accepted in order, then the hold item timed out (when sent)."""
    assert [r["id"] for r in results] == [f"{tag}-{k}" for k in range(count)] + \
        ([f"{tag}-hold"] if hold else [])
    assert [r["verdict"] for r in results] == ["accepted"] * count + (["timeout"] if hold else [])
    assert_executed(results)


def test_overload_is_429_with_retry_after_and_nothing_accepted_is_lost(
        server: ApiServer) -> None:
    with server.client() as client:
        first = client.post("/v1/jobs", json={"items": [*slow_items("a", 5), hold_item("a")]})
        assert first.status_code == 202
        refused = client.post("/v1/jobs", json={"items": slow_items("b", 6)})
        assert refused.status_code == 429
        assert error_of(refused)["code"] == "overloaded"
        assert refused.headers["retry-after"] == "3"
        refused_check = client.post("/v1/check", json={"items": slow_items("c", 4)})
        assert refused_check.status_code == 429
        fits = client.post("/v1/jobs", json={"items": [*slow_items("d", 1), hold_item("d")]})
        assert fits.status_code == 202
        depth = client.get("/metrics").text
        # Both jobs were still in flight (their hold items had not timed out) when the
        # refusals and the depth above were answered.
        for created in (first, fits):
            assert job_status(client, created.json()["job_id"])["status"] != "finished"
        assert "azr_verify_queue_depth_items 8.0" in depth

        for created, tag, count in ((first, "a", 5), (fits, "d", 1)):
            body = finished_job(client, created.json()["job_id"])
            assert body["status"] == "finished"
            assert_answered(body["results"], tag, count, hold=True)
        assert "azr_verify_queue_depth_items 0.0" in client.get("/metrics").text
        # Once drained, the refused batch goes through.
        retried = client.post("/v1/check", json={"items": slow_items("b", 6)})
        assert retried.status_code == 200
        assert_answered(retried.json()["results"], "b", 6, hold=False)


def test_concurrent_clients_get_answers_or_429_never_silence(server: ApiServer) -> None:
    """8 clients at once, 3 items each, depth 8: the first batches admitted hold the depth
    (their hold items), so others are told to come back; every answer is complete."""
    senders = 8
    start = threading.Barrier(senders)
    tag = token()

    def send(k: int) -> tuple[int, list[dict[str, Any]] | None, str | None]:
        items = [*slow_items(f"{tag}-{k}", 2), hold_item(f"{tag}-{k}")]
        with server.client() as client:
            start.wait(60)
            response = client.post("/v1/check", json={"items": items})
        if response.status_code == 200:
            return 200, response.json()["results"], None
        return response.status_code, None, response.headers.get("retry-after")

    with ThreadPoolExecutor(senders) as pool:
        outcomes = list(pool.map(send, range(senders)))
    statuses = [status for status, _, _ in outcomes]
    assert set(statuses) <= {200, 429}, statuses
    assert 200 in statuses and 429 in statuses, statuses
    for k, (status, results, retry_after) in enumerate(outcomes):
        if status == 200:
            assert results is not None
            assert_answered(results, f"{tag}-{k}", 2, hold=True)
        else:
            assert retry_after == "3"
    with server.client() as client:
        assert "azr_verify_queue_depth_items 0.0" in client.get("/metrics").text
