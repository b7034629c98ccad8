"""A thread-safe LRU bounded by the bytes its entries hold, not by how many there are.

An entry-count bound lets memory grow with what clients send (4,096 memoised 12 MB programs
are 48 GB); a byte bound does not. Every entry is charged its `size` (what the caller
estimates its key and value keep alive) plus a fixed overhead for the bookkeeping, and the
least recently used entries are dropped until the total fits `max_bytes`. An entry larger than
`max_bytes` on its own is not stored.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# What one entry costs beyond its own key and value: the OrderedDict node and hash-table slot,
# the (value, size) tuple, the int. Measured with tracemalloc on CPython 3.11: ~190 bytes.
ENTRY_OVERHEAD_BYTES = 200


class ByteLRU(Generic[K, V]):
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        """What the entries are charged, in total."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: K, value: V, size: int) -> None:
        charged = size + ENTRY_OVERHEAD_BYTES
        if charged > self.max_bytes:
            return
        with self._lock:
            previous = self._entries.pop(key, None)
            if previous is not None:
                self._bytes -= previous[1]
            self._entries[key] = (value, charged)
            self._bytes += charged
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
