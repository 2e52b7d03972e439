"""Group commit: many threads' appends made durable by one write and one fsync.

A thread that finds no commit in progress becomes the leader, takes everything queued (its own
items included), runs the commit function outside the queue lock, and hands each waiter its
results; threads that queued meanwhile form the next batch. No timer and no background thread:
a lone writer pays one fsync per append, and batching grows by itself with contention.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Waiter(Generic[T, R]):
    __slots__ = ("done", "error", "items", "results")

    def __init__(self, items: list[T]) -> None:
        self.items = items
        self.done = False
        self.results: list[R] = []
        self.error: BaseException | None = None


class GroupCommitter(Generic[T, R]):
    """Runs `commit(batch) -> one result per item` for batches of concurrently submitted items."""

    def __init__(self, commit: Callable[[list[T]], list[R]]) -> None:
        self._commit = commit
        self._cv = threading.Condition()
        self._queue: list[_Waiter[T, R]] = []
        self._leader = False

    def submit(self, items: list[T]) -> list[R]:
        """Block until `items` are committed; returns their results or raises the batch's error."""
        waiter: _Waiter[T, R] = _Waiter(items)
        with self._cv:
            self._queue.append(waiter)
            while not waiter.done:
                if self._leader:
                    self._cv.wait()
                    continue
                self._leader = True
                batch, self._queue = self._queue, []
                self._cv.release()
                try:
                    self._run(batch)
                finally:
                    self._cv.acquire()
                    for w in batch:
                        w.done = True
                    self._leader = False
                    self._cv.notify_all()
        if waiter.error is not None:
            raise waiter.error
        return waiter.results

    def _run(self, batch: list[_Waiter[T, R]]) -> None:
        flat = [item for w in batch for item in w.items]
        try:
            results = self._commit(flat)
        except BaseException as exc:
            for w in batch:
                w.error = exc
        else:
            i = 0
            for w in batch:
                w.results = results[i:i + len(w.items)]
                i += len(w.items)
