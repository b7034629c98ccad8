"""Lua scripts that make the multi-key updates of the queue atomic, each followed by its typed
wrapper: named arguments in place of positional KEYS/ARGV lists, and a value or an enum in place
of the script's bare number.

Atomicity is what makes admission race-free across several API processes, and what makes a
chunk's completion idempotent: a chunk run twice (its first worker was presumed dead) counts,
audits and notifies once. Each wrapper registers its script once, on the client it is built
with; the scripts themselves run in Redis exactly as written here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import redis
import redis.asyncio as aioredis

# KEYS: pending counter. ARGV: items, max depth.
# Returns the new depth, or -(current depth) - 1 when the batch does not fit. An idle queue
# always admits, so a batch larger than the depth is not refused forever.
ADMIT = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local items = tonumber(ARGV[1])
if current > 0 and current + items > tonumber(ARGV[2]) then
  return -current - 1
end
return redis.call('INCRBY', KEYS[1], items)
"""


@dataclass(frozen=True)
class Admission:
    """ADMIT's answer: whether the items were admitted, and the depth (the new depth when
    they were, the current one when they were not)."""

    admitted: bool
    depth: int


class AdmitScript:
    """ADMIT, on the API's asyncio client."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._script = client.register_script(ADMIT)

    async def __call__(self, *, pending_items_key: str, items: int, max_depth: int
                       ) -> Admission:
        raw = int(await self._script(keys=[pending_items_key], args=[items, max_depth]))
        return Admission(admitted=True, depth=raw) if raw >= 0 else \
            Admission(admitted=False, depth=-raw - 1)

# KEYS: pending counter, inflight hash. ARGV: items, job ids...
# Gives back what ADMIT took when enqueueing failed half-way.
RELEASE = """
local left = redis.call('DECRBY', KEYS[1], ARGV[1])
if left < 0 then redis.call('SET', KEYS[1], 0) end
for i = 2, #ARGV do redis.call('HDEL', KEYS[2], ARGV[i]) end
return left
"""


class ReleaseScript:
    """RELEASE, on the API's asyncio client."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._script = client.register_script(RELEASE)

    async def __call__(self, *, pending_items_key: str, inflight_key: str, items: int,
                       job_ids: list[str]) -> int:
        """Returns the depth left (below zero when the counter was reset to zero)."""
        return int(await self._script(keys=[pending_items_key, inflight_key],
                                      args=[items, *job_ids]))

# KEYS: result, batch hash, progress hash, notify list, pending counter, inflight hash.
# ARGV: results JSON, ttl, items, chunk index, failed (0/1), RQ job id.
# Returns 1 when this call completed the chunk, 0 when it was already complete, -1 when the
# batch is gone (expired, or Redis lost it).
COMPLETE = """
if redis.call('HDEL', KEYS[6], ARGV[6]) == 1 then
  local left = redis.call('DECRBY', KEYS[5], ARGV[3])
  if left < 0 then redis.call('SET', KEYS[5], 0) end
end
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[2], 'done_chunks', 1)
if ARGV[5] == '1' then redis.call('HINCRBY', KEYS[2], 'failed_chunks', 1) end
redis.call('HSET', KEYS[3], ARGV[4], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[2])
redis.call('RPUSH', KEYS[4], ARGV[4])
redis.call('EXPIRE', KEYS[4], ARGV[2])
return 1
"""


class Completion(IntEnum):
    """COMPLETE's answer (its script's numbers, so a log line or a test reads them alike)."""

    COMPLETED = 1  # this call answered the chunk: count, audit and notify now
    ALREADY_COMPLETE = 0  # an earlier run answered it: do nothing more
    BATCH_GONE = -1  # the batch expired or Redis lost it: nobody waits for the answer


@dataclass(frozen=True)
class ChunkKeys:
    """The keys a chunk's completion touches."""

    result: str
    batch: str
    progress: str
    notify: str
    pending_items: str
    inflight: str


class CompleteScript:
    """COMPLETE, on a worker's (or a failure callback's) client."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(COMPLETE)

    def __call__(self, *, keys: ChunkKeys, results_json: str, ttl_s: int, items: int,
                 index: int, failed: bool, job_id: str) -> Completion:
        raw = self._script(
            keys=[keys.result, keys.batch, keys.progress, keys.notify, keys.pending_items,
                  keys.inflight],
            args=[results_json, ttl_s, items, index, 1 if failed else 0, job_id])
        return Completion(int(raw))

# KEYS: progress hash, result. ARGV: chunk index, items done, ttl.
# Progress only rises, and stops once the chunk has a result: a slower duplicate run must not
# move it backwards.
PROGRESS = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if tonumber(ARGV[2]) > current then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return 1
"""


class ProgressUpdate(IntEnum):
    """PROGRESS's answer."""

    RECORDED = 1  # stored, or an equal or higher count was there already
    CHUNK_ANSWERED = 0  # the chunk has its result: progress no longer moves


class ProgressScript:
    """PROGRESS, on a worker's client."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(PROGRESS)

    def __call__(self, *, progress_key: str, result_key: str, index: int, done: int,
                 ttl_s: int) -> ProgressUpdate:
        return ProgressUpdate(int(self._script(keys=[progress_key, result_key],
                                               args=[index, done, ttl_s])))

# KEYS: pending counter, inflight hash. ARGV: job id, items, job id, items, ...
# Forgets in-flight jobs that no longer exist in RQ (lost with an evicted key, say), so the
# depth counter cannot leak into a permanent 429.
FORGET = """
local forgotten = 0
for i = 1, #ARGV, 2 do
  if redis.call('HDEL', KEYS[2], ARGV[i]) == 1 then
    local left = redis.call('DECRBY', KEYS[1], ARGV[i + 1])
    if left < 0 then redis.call('SET', KEYS[1], 0) end
    forgotten = forgotten + 1
  end
end
return forgotten
"""


class ForgetScript:
    """FORGET, on the reaper's client."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(FORGET)

    def __call__(self, *, pending_items_key: str, inflight_key: str,
                 lost: list[tuple[str, int]]) -> int:
        """Forgets each (job id, items) in `lost` still in flight; returns how many."""
        args = [value for pair in lost for value in pair]
        return int(self._script(keys=[pending_items_key, inflight_key], args=args))

# KEYS: the stream of every audit record, then the stream of the record's API key (if any).
# ARGV: the record's JSON, retention (entries).
# The key's copy gets the same entry id, so a record's id (the console's link, a page cursor)
# is one in both streams, and it keeps only entries the stream of every record still holds.
# A key stream ahead of that id (the main stream was deleted and the clock went back) keeps
# its entries and misses this one rather than failing the write.
AUDIT_ADD = """
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'r', ARGV[1])
if #KEYS > 1 then
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1][1]
  redis.pcall('XADD', KEYS[2], 'MINID', '~', oldest, id, 'r', ARGV[1])
end
return id
"""


class AuditAddScript:
    """AUDIT_ADD, on the client of whoever writes audit records (workers)."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = client.register_script(AUDIT_ADD)

    def __call__(self, *, stream: str, key_stream: str | None, record_json: str,
                 retention: int, pipeline: redis.client.Pipeline) -> None:
        """Queues the write on `pipeline` (its entry id comes back with the pipeline's
        results)."""
        streams = [stream] if key_stream is None else [stream, key_stream]
        self._script(keys=streams, args=[record_json, retention], client=pipeline)
