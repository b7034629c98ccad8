"""The result cache of embedded mode, and of each worker's own engine: an LRU in memory."""

from __future__ import annotations

from azr_verify.service.lru import ByteLRU
from azr_verify.service.stores.cache.entries import CachedRun


class MemoryCache:
    """A thread-safe LRU bounded by the bytes its entries keep alive (docs/design.md §9.6)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: ByteLRU[str, CachedRun] = ByteLRU(max_bytes)

    def get(self, key: str) -> CachedRun | None:
        return self._entries.get(key)

    def put(self, key: str, run: CachedRun) -> None:
        self._entries.put(key, run, cached_run_size(key, run))

    @property
    def bytes(self) -> int:
        return self._entries.bytes

    def __len__(self) -> int:
        return len(self._entries)


# Object headers of a CachedRun and its strings, beyond their characters.
_RUN_BYTES = 250


def cached_run_size(key: str, run: CachedRun) -> int:
    return _RUN_BYTES + len(key) + sum(len(text) for text in (run.output, run.error_type,
                                                               run.error, run.stderr) if text)
