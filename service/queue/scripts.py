"""Lua scripts that make the multi-key updates of the queue atomic.

Atomicity is what makes admission race-free across several API processes, and what makes a
chunk's completion idempotent: a chunk run twice (its first worker was presumed dead) counts,
audits and notifies once.
"""

from __future__ import annotations

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

# KEYS: pending counter, inflight hash. ARGV: items, job ids...
# Gives back what ADMIT took when enqueueing failed half-way.
RELEASE = """
local left = redis.call('DECRBY', KEYS[1], ARGV[1])
if left < 0 then redis.call('SET', KEYS[1], 0) end
for i = 2, #ARGV do redis.call('HDEL', KEYS[2], ARGV[i]) end
return left
"""

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
