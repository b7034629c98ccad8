"""The queue's Redis building blocks against a real redis-server (no workers needed)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
import redis

from azr_verify.service.config import Settings
from azr_verify.service.errors import OverloadedError
from azr_verify.service.models import CheckItem, CheckResult, PolicyName, Verdict
from azr_verify.service.queue import chunks
from azr_verify.service.queue.batches import (
    BatchReader,
    BatchSubmitter,
    ChunkKind,
    ChunkReporter,
    chunk_job_id,
    make_queue,
)
from azr_verify.service.queue.chunks import chunk_failed
from azr_verify.service.queue.connection import async_client, sync_client
from azr_verify.service.queue.keys import Keys
from azr_verify.service.queue.reaper import Reaper
from azr_verify.service.queue.scripts import Completion
from azr_verify.service.stores.audit.query import AuditQuery
from azr_verify.service.stores.audit.records import AuditRecord
from azr_verify.service.stores.audit.redis import RedisAuditStore
from azr_verify.service.stores.cache.entries import CachedRun
from azr_verify.service.stores.cache.redis import RedisCache

from .servers import RedisServer


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-units"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(redis_server: RedisServer) -> Settings:
    # A fresh queue name per test: its keys are disjoint from every other test's.
    return Settings(redis_url=redis_server.url, queue_name=f"u-{uuid.uuid4().hex[:8]}",
                    chunk_size=2, max_queue_depth=10, job_ttl_s=60)


@pytest.fixture
def client(settings: Settings) -> Iterator[redis.Redis]:
    c = sync_client(settings)
    yield c
    c.close()


def items(count: int) -> list[CheckItem]:
    return [CheckItem(id=k, program="def f(x):\n    return x", input=str(k))
            for k in range(count)]


def results_for(batch: list[CheckItem]) -> list[CheckResult]:
    return [CheckResult(id=i.id, verdict=Verdict.ACCEPTED, output=i.input) for i in batch]


def test_duplicate_completion_is_harmless(settings: Settings, client: redis.Redis) -> None:
    keys = Keys.from_settings(settings)
    batch = items(5)
    batch_id = uuid.uuid4().hex
    assert BatchSubmitter(client, settings).submit(batch_id, batch, PolicyName.AZR, None) == 3
    client.set(keys.pending_items, 5)  # what admission reserved
    reporter = ChunkReporter(client, keys)
    first = results_for(batch[:2])
    job_id = chunk_job_id(batch_id, 0)
    assert reporter.complete(batch_id, 0, job_id, first, failed=False, ttl_s=60) \
        is Completion.COMPLETED
    # A second run of the same chunk (its first worker was presumed dead) changes nothing.
    other = [CheckResult(id=r.id, verdict=Verdict.TIMEOUT) for r in first]
    assert reporter.complete(batch_id, 0, job_id, other, failed=False,
                             ttl_s=60) is Completion.ALREADY_COMPLETE
    reporter.progress(batch_id, 0, 1, 60)  # late progress of the duplicate: ignored
    assert int(client.get(keys.pending_items) or 0) == 3
    assert client.llen(keys.notify(batch_id)) == 1

    async def read() -> tuple[object, object]:
        reader = BatchReader(async_client(settings), settings)
        status = await reader.status(batch_id)
        results = await reader.results(batch_id, 3)
        await reader.client.aclose()
        return status, results

    status, results = asyncio.run(read())
    assert status is not None and status.done_chunks == 1 and status.done_items == 2  # type: ignore[attr-defined]
    assert results is None  # two chunks still missing
    reporter.complete(batch_id, 1, chunk_job_id(batch_id, 1), results_for(batch[2:4]), False, 60)
    reporter.complete(batch_id, 2, chunk_job_id(batch_id, 2), results_for(batch[4:]), False, 60)
    status, results = asyncio.run(read())
    assert status.complete  # type: ignore[attr-defined]
    assert [r.verdict for r in results] == [Verdict.ACCEPTED] * 5  # type: ignore[attr-defined]
    assert int(client.get(keys.pending_items) or 0) == 0


def test_admission_refuses_beyond_the_depth(settings: Settings) -> None:
    async def scenario() -> None:
        reader = BatchReader(async_client(settings), settings)
        assert await reader.admit(20) == 20  # an idle queue admits even a large batch
        with pytest.raises(OverloadedError) as refused:
            await reader.admit(1)
        assert refused.value.retry_after_s == settings.overload_retry_after_s
        await reader.release(20, [])
        assert await reader.admit(6) == 6
        assert await reader.admit(4) == 10
        with pytest.raises(OverloadedError):
            await reader.admit(1)
        await reader.client.aclose()

    asyncio.run(scenario())


def test_failed_chunk_is_answered_with_sandbox_error(settings: Settings,
                                                     client: redis.Redis) -> None:
    batch = items(3)
    batch_id = uuid.uuid4().hex
    BatchSubmitter(client, settings).submit(batch_id, batch, PolicyName.AZR, "key")
    job = make_queue(client, settings).fetch_job(chunk_job_id(batch_id, 1))
    assert job is not None
    job.retries_left = 1
    chunk_failed(job, client, RuntimeError, RuntimeError("boom"), None)
    keys = Keys.from_settings(settings)
    assert not client.exists(keys.chunk_result(batch_id, 1))  # it will be retried first
    job.retries_left = 0
    chunk_failed(job, client, RuntimeError, RuntimeError("boom"), None)
    raw = client.get(keys.chunk_result(batch_id, 1))
    assert raw is not None
    assert b"sandbox_error" in raw and b"boom" in raw
    assert client.hget(keys.batch(batch_id), "failed_chunks") == b"1"
    # Counted in the metrics once, however often the callback runs.
    assert client.hget(keys.counters, "items:sandbox_error") == b"1"
    chunk_failed(job, client, RuntimeError, RuntimeError("boom"), None)
    assert client.hget(keys.counters, "items:sandbox_error") == b"1"
    assert client.hget(keys.batch(batch_id), "failed_chunks") == b"1"


@pytest.mark.parametrize("kind,function,on_failure", [
    (ChunkKind.TRIPLES, chunks.run_chunk, chunks.chunk_failed),
    (ChunkKind.TESTCASES, chunks.run_testcase_chunk, chunks.testcase_chunk_failed),
    (ChunkKind.RUN_CODE, chunks.run_code_chunk, chunks.run_code_chunk_failed),
])
def test_chunk_jobs_keep_their_wire_paths(settings: Settings, client: redis.Redis,
                                          kind: ChunkKind, function: object,
                                          on_failure: object) -> None:
    """RQ stores the paths of a job's function and failure callback in Redis, and workers of
    any version import them: they are the paths of queue/jobs.py, as before the code moved to
    queue/chunks.py, and they lead to its functions."""
    batch_id = uuid.uuid4().hex
    BatchSubmitter(client, settings).submit(batch_id, items(1), PolicyName.AZR, None, kind)
    job = make_queue(client, settings).fetch_job(chunk_job_id(batch_id, 0))
    assert job is not None
    name = getattr(function, "__name__", "")
    assert job.func_name == f"azr_verify.service.queue.jobs.{name}"
    assert job.func is function
    assert job.failure_callback is on_failure


def test_ledger_repair_forgets_vanished_jobs(settings: Settings, client: redis.Redis) -> None:
    keys = Keys.from_settings(settings)
    batch_id = uuid.uuid4().hex
    BatchSubmitter(client, settings).submit(batch_id, items(4), PolicyName.AZR, None)
    client.set(keys.pending_items, 4)
    make_queue(client, settings).fetch_job(chunk_job_id(batch_id, 0)).delete()  # type: ignore[union-attr]
    assert Reaper(client, settings).repair_ledger() == 1
    assert int(client.get(keys.pending_items) or 0) == 2


def test_redis_cache_round_trip(settings: Settings, client: redis.Redis) -> None:
    cache = RedisCache(client, Keys.from_settings(settings), ttl_s=60)
    assert cache.get("k") is None
    run = CachedRun(verdict=Verdict.ACCEPTED, output="'\\ud800'", duration_ms=1.5)
    cache.put("k", run)
    assert cache.get("k") == run
    assert 0 < client.ttl(Keys.from_settings(settings).cache("k")) <= 60


def test_redis_cache_misses_when_redis_is_down(settings: Settings) -> None:
    dead = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    cache = RedisCache(sync_client(dead), Keys.from_settings(dead), ttl_s=60)
    assert cache.get("k") is None
    cache.put("k", CachedRun(verdict=Verdict.ACCEPTED))


def test_redis_audit_store_filters_scopes_and_pages(settings: Settings,
                                                    client: redis.Redis) -> None:
    store = RedisAuditStore(client, Keys.from_settings(settings), retention=10_000)
    records = [AuditRecord(time=1000.0 + k, program_hash="h", program=f"p{k}\ud800", input="1",
                           entry="f", policy="azr",
                           verdict=Verdict.UNSAFE if k % 3 else Verdict.TIMEOUT,
                           api_key_name="even" if k % 2 == 0 else "odd")
               for k in range(1200)]
    store.record(records)
    newest = store.page(AuditQuery(), 5)
    assert [r.program for r in newest.records] == [f"p{k}\ud800"
                                                   for k in (1199, 1198, 1197, 1196, 1195)]
    older = store.page(AuditQuery(), 2, cursor=newest.next_cursor)
    assert [r.program for r in older.records] == ["p1194\ud800", "p1193\ud800"]
    timeouts = store.page(AuditQuery(verdict=Verdict.TIMEOUT), 1000)
    assert len(timeouts.records) == 400 and timeouts.next_cursor is None
    assert all(r.verdict is Verdict.TIMEOUT for r in timeouts.records)
    # Unsafe are the k not divisible by 3; k = 1191 and 1194 are not.
    unsafe = AuditQuery(verdict=Verdict.UNSAFE, since=2190.0)
    assert [r.time for r in store.iterate(unsafe)] == [1000.0 + k for k in
                                                       (1192, 1193, 1195, 1196, 1198, 1199)]
    assert sum(1 for _ in store.iterate(AuditQuery())) == 1200
    assert store.get(newest.records[0].id or "", AuditQuery()) == newest.records[0]
    counts = store.counts(AuditQuery(), 1000.0, 600.0, 2)
    assert [sum(b.values()) for b in counts.buckets] == [600, 600] and not counts.truncated
    assert store.page(AuditQuery(text="p1042"), 5).records[0].time == 2042.0
    # Oldest first, continued with the cursor.
    first = store.page(AuditQuery(), 3, oldest_first=True)
    then = store.page(AuditQuery(), 2, cursor=first.next_cursor, oldest_first=True)
    assert [r.time for r in first.records + then.records] == [1000.0 + k for k in range(5)]
    # A key reads its own records only, from its own stream, under the same ids.
    odd = AuditQuery(api_key_name="odd")
    mine = list(store.iterate(odd))
    assert len(mine) == 600 and {r.api_key_name for r in mine} == {"odd"}
    assert [r.time for r in mine[:2]] == [1001.0, 1003.0]
    assert store.get(mine[0].id or "", odd) == store.get(mine[0].id or "", AuditQuery())
    assert store.get(mine[0].id or "", AuditQuery(api_key_name="even")) is None
    assert store.page(AuditQuery(api_key_name="nobody"), 10).records == []
    assert store.time_bounds(odd) == (1001.0, 2199.0)
    assert sum(sum(b.values()) for b in store.counts(odd, 1000.0, 600.0, 2).buckets) == 600
