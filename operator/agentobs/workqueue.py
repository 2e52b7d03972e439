"""The queue of resources waiting for a reconcile pass, and how often routine resyncs come.

A bounded pool of workers takes keys from one `WorkQueue`: lowest priority number first (a new
resource or a spec change, then a changed child, then routine resyncs and retries), first come
first served within a priority. A key is queued at most once, at its most urgent priority, and is
never handed to two workers: woken while a pass runs, it is queued again when that pass ends (so
the change is not lost and passes of one resource never overlap).

The resync period grows with the number of resources so routine passes stay within a budget:

    period = max(AGENTOBS_RESYNC_SECONDS, resources / AGENTOBS_RESYNC_RATE)

(defaults 60 s and 2 passes per second: 60 s up to 120 resources, 500 s at 1,000). Resyncs are a
safety net only; watches bring hand edits, deletions and readiness changes at once.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Hashable
from enum import IntEnum
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Priority(IntEnum):
    NEW = 0  # created, or its spec changed
    CHILD = 1  # a child changed or went away
    RESYNC = 2  # routine resync, or a retry after an error


def retry_delay(failures: int, first: float = 10.0, most: float = 300.0) -> float:
    """Seconds before a resource's pass is tried again after `failures` failed in a row: twice as
    long each time, so an API server in trouble (429, 5xx) is not pressed, but retried within
    minutes once it is back. Spread by 10 % so that resources failing together do not retry together."""
    return min(first * 2.0 ** (failures - 1), most) * random.uniform(0.9, 1.1)  # noqa: S311 (spread)


def resync_period(base: float, resources: int, rate: float) -> float:
    """Seconds between routine passes of one resource with `resources` resources in all."""
    return max(base, resources / rate) if rate > 0 else base


class WorkQueue(Generic[K]):
    """A deduplicating priority queue of keys with in-flight tracking (asyncio, one loop)."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, K]] = []
        self._queued: dict[K, tuple[int, int]] = {}  # key -> (priority, sequence) of its live heap entry
        self._running: set[K] = set()
        self._again: dict[K, int] = {}  # woken while running: queue again when done
        self._seq = itertools.count()
        self._ready = asyncio.Event()

    def add(self, key: K, priority: int) -> None:
        if key in self._running:
            self._again[key] = min(priority, self._again.get(key, priority))
            return
        current = self._queued.get(key)
        if current is not None and current[0] <= priority:
            return
        seq = next(self._seq)
        self._queued[key] = (priority, seq)  # an earlier, less urgent entry becomes stale
        heapq.heappush(self._heap, (priority, seq, key))
        self._ready.set()

    def discard(self, key: K) -> None:
        """Forget a key that is gone (its entry in the heap becomes stale)."""
        self._queued.pop(key, None)
        self._again.pop(key, None)

    async def get(self) -> K:
        while True:
            while self._heap:
                priority, seq, key = heapq.heappop(self._heap)
                if self._queued.get(key) == (priority, seq):
                    del self._queued[key]
                    self._running.add(key)
                    return key
            self._ready.clear()
            await self._ready.wait()

    def done(self, key: K) -> None:
        self._running.discard(key)
        if key in self._again:
            self.add(key, self._again.pop(key))

    def depth(self) -> dict[Priority, int]:
        out = dict.fromkeys(Priority, 0)
        for priority, _ in self._queued.values():
            out[Priority(priority)] += 1
        return out

    @property
    def busy(self) -> bool:
        """A key is queued or a pass is running."""
        return bool(self._queued or self._running)

    def __len__(self) -> int:
        return len(self._queued)
