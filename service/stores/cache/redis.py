"""The result cache shared by every worker in distributed mode: Redis strings with a TTL.

The cache is an optimisation: when Redis hiccups a lookup is a miss and a store is skipped,
so a chunk never fails because of its cache.
"""

from __future__ import annotations

import json
import logging

import redis

from azr_verify.service.queue.connection import REDIS_ERRORS
from azr_verify.service.queue.keys import Keys
from azr_verify.service.stores.cache.entries import CachedRun

log = logging.getLogger(__name__)


class RedisCache:
    """Implements the engine's `ResultCache` protocol."""

    def __init__(self, client: redis.Redis, keys: Keys, ttl_s: int) -> None:
        self.client = client
        self.keys = keys
        self.ttl_s = ttl_s

    def get(self, key: str) -> CachedRun | None:
        try:
            raw = self.client.get(self.keys.cache(key))
        except REDIS_ERRORS as exc:
            log.debug("cache lookup skipped", extra={"error": str(exc)})
            return None
        if raw is None:
            return None
        try:
            return CachedRun.from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            # An entry written by another version: treat it as absent; put() replaces it.
            return None

    def put(self, key: str, run: CachedRun) -> None:
        # ensure_ascii: outputs and errors may hold lone surrogates, which only JSON escapes keep.
        payload = json.dumps(run.to_dict(), ensure_ascii=True, separators=(",", ":"))
        try:
            self.client.set(self.keys.cache(key), payload, ex=self.ttl_s)
        except REDIS_ERRORS as exc:
            log.debug("cache store skipped", extra={"error": str(exc)})
