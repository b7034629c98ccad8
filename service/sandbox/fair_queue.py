"""Work of several requests, handed out so that none waits behind another's backlog.

Each request (a tenant: one `Engine.check` call, one RQ chunk) has its own FIFO lane. `take`
fills a frame with one item from each lane in turn, carrying on where the previous frame
stopped, so a single-item request that arrives while a 10,000-item batch is queued goes out in
the next frame, not after the batch. With one tenant it is a plain FIFO.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    """Thread-safe; `take` blocks until there is work or the queue is closed."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._lanes: OrderedDict[Hashable, deque[T]] = OrderedDict()
        self._size = 0
        self._closed = False

    def put(self, item: T, tenant: Hashable) -> None:
        with self._ready:
            lane = self._lanes.get(tenant)
            if lane is None:
                lane = self._lanes[tenant] = deque()
            lane.append(item)
            self._size += 1
            self._ready.notify()

    def take(self, limit: int) -> list[T] | None:
        """Up to `limit` items, round robin over the tenants; None once closed and empty."""
        with self._ready:
            while not self._size and not self._closed:
                self._ready.wait()
            if not self._size:
                return None
            return self._take(limit)

    def take_nowait(self, limit: int) -> list[T]:
        """Up to `limit` items, round robin over the tenants; none when there is no work."""
        with self._ready:
            return self._take(limit)

    def _take(self, limit: int) -> list[T]:
        taken: list[T] = []
        while len(taken) < limit and self._size:
            tenant, lane = next(iter(self._lanes.items()))
            taken.append(lane.popleft())
            self._size -= 1
            # The lane goes to the back: the next item comes from the next tenant.
            del self._lanes[tenant]
            if lane:
                self._lanes[tenant] = lane
        return taken

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def drain(self) -> list[T]:
        """Everything still queued (after close: what no worker will take)."""
        with self._ready:
            items = [item for lane in self._lanes.values() for item in lane]
            self._lanes.clear()
            self._size = 0
            return items

    def __len__(self) -> int:
        return self._size
