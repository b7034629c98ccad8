"""Batches in Redis: how the API splits a request into RQ chunk jobs and reads their answers.

A batch is one /v1/check or /v1/jobs request. It is split into chunks of `chunk_size` items;
each chunk is one RQ job whose arguments carry its items (JSON, never pickle). A worker answers
a chunk by writing its results once (see scripts.COMPLETE); the API blocks on the batch's
notify list and reads the results when every chunk is answered.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis
from pydantic import BaseModel
from rq import Queue, Retry
from rq.callbacks import Callback
from rq.serializers import JSONSerializer

from azr_verify.service.config import Settings
from azr_verify.service.errors import OverloadedError
from azr_verify.service.models import CheckResult, PolicyName
from azr_verify.service.queue import scripts
from azr_verify.service.queue.connection import translate_errors
from azr_verify.service.queue.keys import Keys


def new_batch_id() -> str:
    return uuid.uuid4().hex


def chunk_job_id(batch_id: str, index: int) -> str:
    # RQ job ids allow [A-Za-z0-9_-]; a fixed id per chunk makes a retried chunk the same job.
    return f"{batch_id}-{index}"


def chunk_bounds(total: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk_size, total)) for start in range(0, total, chunk_size)]


class ChunkKind(StrEnum):
    """What a batch's chunks hold: triples (/v1/check, /v1/jobs), test-case programs
    (/v1/testcases) or one script run (/run_code). Each kind has its own RQ job function and
    failure callback (queue/chunks.py) and its own result model."""

    TRIPLES = "triples"
    TESTCASES = "testcases"
    RUN_CODE = "run_code"


# The module whose dotted paths RQ stores with each chunk job, and workers import the job's
# function and failure callback from (queue/jobs.py): part of the wire between the API and the
# workers, so it keeps its name although the code lives in queue/chunks.py.
CHUNK_JOBS_MODULE = "azr_verify.service.queue.jobs"
# The RQ job function and failure callback of each kind, by the paths stored in Redis.
CHUNK_JOBS: dict[ChunkKind, tuple[str, str]] = {
    kind: (f"{CHUNK_JOBS_MODULE}.{function}", f"{CHUNK_JOBS_MODULE}.{on_failure}")
    for kind, function, on_failure in (
        (ChunkKind.TRIPLES, "run_chunk", "chunk_failed"),
        (ChunkKind.TESTCASES, "run_testcase_chunk", "testcase_chunk_failed"),
        (ChunkKind.RUN_CODE, "run_code_chunk", "run_code_chunk_failed"),
    )
}
M = TypeVar("M", bound=BaseModel)


def encode_results(results: Sequence[BaseModel]) -> str:
    # ensure_ascii: ids, outputs and errors may hold lone surrogates.
    return json.dumps([r.model_dump(mode="json") for r in results], ensure_ascii=True,
                      separators=(",", ":"))


def decode_results(raw: bytes | str, model: type[M]) -> list[M]:
    return [model.model_validate(r) for r in json.loads(raw)]


def make_queue(client: redis.Redis, settings: Settings) -> Queue:
    return Queue(settings.queue_name, connection=client, serializer=JSONSerializer,
                 default_timeout=settings.job_timeout_s)


@dataclass(frozen=True)
class BatchStatus:
    total: int
    chunks: int
    done_chunks: int
    failed_chunks: int
    done_items: int
    started: bool
    key_name: str | None
    kind: ChunkKind = ChunkKind.TRIPLES

    @property
    def complete(self) -> bool:
        return self.done_chunks >= self.chunks


class BatchSubmitter:
    """API side, synchronous (RQ's enqueue is): records a batch and enqueues its chunks."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.keys = Keys.from_settings(settings)
        self.queue = make_queue(client, settings)

    def submit(self, batch_id: str, items: Sequence[BaseModel], policy: PolicyName,
               key_name: str | None, kind: ChunkKind = ChunkKind.TRIPLES) -> int:
        """Enqueues every chunk in one transaction; returns the number of chunks."""
        s = self.settings
        function, on_failure = CHUNK_JOBS[kind]
        bounds = chunk_bounds(len(items), s.chunk_size)
        retry = Retry(max=s.job_retries, enqueue_at_front=True) if s.job_retries else None
        datas = []
        inflight: dict[Any, Any] = {}
        for index, (start, stop) in enumerate(bounds):
            job_id = chunk_job_id(batch_id, index)
            inflight[job_id] = stop - start
            payload = [item.model_dump(mode="json", exclude_none=True)
                       for item in items[start:stop]]
            datas.append(Queue.prepare_data(
                function, args=(batch_id, index, policy.value, key_name, payload),
                job_id=job_id, timeout=s.job_timeout_s, result_ttl=0,
                failure_ttl=s.job_ttl_s, retry=retry, meta={"ttl": s.job_ttl_s},
                on_failure=Callback(on_failure), description=f"chunk {index} of {batch_id}"))
        batch: dict[Any, Any] = {"total": len(items), "chunks": len(bounds), "policy": policy.value,
                 "key_name": key_name or "", "created": time.time(),
                 "done_chunks": 0, "failed_chunks": 0, "kind": kind.value}
        with translate_errors("enqueue"), self.client.pipeline() as pipe:
            pipe.hset(self.keys.batch(batch_id), mapping=batch)
            pipe.expire(self.keys.batch(batch_id), s.job_ttl_s)
            if inflight:
                pipe.hset(self.keys.inflight, mapping=inflight)
            self.queue.enqueue_many(datas, pipeline=pipe)
            pipe.execute()
        return len(bounds)


class BatchReader:
    """API side, asynchronous: admission, status, waiting and results."""

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.keys = Keys.from_settings(settings)
        self._admit = scripts.AdmitScript(client)
        self._release = scripts.ReleaseScript(client)

    async def admit(self, items: int) -> int:
        """Reserves queue depth for `items`, or raises OverloadedError."""
        with translate_errors("admission"):
            admission = await self._admit(pending_items_key=self.keys.pending_items,
                                          items=items, max_depth=self.settings.max_queue_depth)
        if not admission.admitted:
            raise OverloadedError(
                f"{admission.depth} items are queued; {items} more would exceed the configured "
                f"depth of {self.settings.max_queue_depth}",
                retry_after_s=self.settings.overload_retry_after_s)
        return admission.depth

    async def release(self, items: int, job_ids: Sequence[str]) -> None:
        with translate_errors("release"):
            await self._release(pending_items_key=self.keys.pending_items,
                                inflight_key=self.keys.inflight, items=items,
                                job_ids=list(job_ids))

    async def depth(self) -> int:
        with translate_errors("queue depth"):
            raw = await self.client.get(self.keys.pending_items)
        return int(raw or 0)

    async def status(self, batch_id: str) -> BatchStatus | None:
        with translate_errors("batch status"):
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hgetall(self.keys.batch(batch_id))
                pipe.hvals(self.keys.progress(batch_id))
                fields, progress = await pipe.execute()
        if not fields:
            return None
        data = {k.decode(): v.decode() for k, v in fields.items()}
        return BatchStatus(
            total=int(data["total"]), chunks=int(data["chunks"]),
            done_chunks=int(data.get("done_chunks", 0)),
            failed_chunks=int(data.get("failed_chunks", 0)),
            done_items=sum(int(v) for v in progress), started=bool(progress),
            key_name=data.get("key_name") or None,
            kind=ChunkKind(data.get("kind") or ChunkKind.TRIPLES))

    async def wait(self, batch_id: str, timeout_s: float) -> None:
        """Returns when a chunk of the batch finishes, or after `timeout_s`."""
        with translate_errors("waiting for results"):
            await self.client.blpop([self.keys.notify(batch_id)], timeout=timeout_s)

    async def results(self, batch_id: str, chunks: int) -> list[CheckResult] | None:
        """Every chunk's results in order, or None when one of them is missing."""
        return await self.results_as(batch_id, chunks, CheckResult)

    async def results_as(self, batch_id: str, chunks: int, model: type[M]) -> list[M] | None:
        """Every chunk's results, read as `model`, in order; None when one is missing."""
        if chunks == 0:
            return []
        with translate_errors("reading results"):
            raws = await self.client.mget([self.keys.chunk_result(batch_id, index)
                                           for index in range(chunks)])
        found = [raw for raw in raws if raw is not None]
        if len(found) < chunks:
            return None
        return [result for raw in found for result in decode_results(raw, model)]

    async def discard(self, batch_id: str, chunks: int) -> None:
        """Frees a batch whose results were delivered."""
        keys = [self.keys.batch(batch_id), self.keys.progress(batch_id),
                self.keys.notify(batch_id)]
        keys += [self.keys.chunk_result(batch_id, index) for index in range(chunks)]
        with translate_errors("discarding a batch"):
            await self.client.delete(*keys)


class ChunkReporter:
    """Worker side (and RQ failure callbacks): progress and the one-time completion."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._complete = scripts.CompleteScript(client)
        self._progress = scripts.ProgressScript(client)

    def progress(self, batch_id: str, index: int, done: int, ttl_s: int) -> None:
        self._progress(progress_key=self.keys.progress(batch_id),
                       result_key=self.keys.chunk_result(batch_id, index), index=index,
                       done=done, ttl_s=ttl_s)

    def complete(self, batch_id: str, index: int, job_id: str,
                 results: Sequence[BaseModel], failed: bool, ttl_s: int) -> scripts.Completion:
        keys = scripts.ChunkKeys(
            result=self.keys.chunk_result(batch_id, index), batch=self.keys.batch(batch_id),
            progress=self.keys.progress(batch_id), notify=self.keys.notify(batch_id),
            pending_items=self.keys.pending_items, inflight=self.keys.inflight)
        return self._complete(keys=keys, results_json=encode_results(results), ttl_s=ttl_s,
                              items=len(results), index=index, failed=failed, job_id=job_id)
