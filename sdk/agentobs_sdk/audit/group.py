"""Group commit: many threads' appends made durable by one write and one fsync.

A thread that finds no commit in progress becomes the leader, takes everything queued (its own
items included), runs the commit function outside the queue lock, and hands each waiter its
results; threads that queued meanwhile form the next batch. No timer and no background thread:
a lone writer pays one fsync per append, and batching grows by itself with contention.

Before it takes the queue, a leader waits (at most `GATHER_SECONDS`) for the threads it knows
are about to queue: those preparing a record right now, and those the previous commit just
released, which are on their way out and often straight back in. Without that wait the thread
that led the last commit returns first, finds nobody leading and commits its next record alone,
and the batches alternate between one record and all the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

GATHER_SECONDS = 0.001  # how long a leader waits for announced records; far below one fsync


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
        lock = threading.Lock()
        self._followers = threading.Condition(lock)  # waiters for their batch, or to lead
        self._gather = threading.Condition(lock)  # a leader waiting for announced records
        self._queue: list[_Waiter[T, R]] = []
        self._leader = False
        self._preparing = 0  # threads inside submit() still preparing their items
        self._finishing = 0  # threads released by the last commit that have not left submit()

    def submit(self, prepare: Callable[[], list[T]]) -> list[R]:
        """Prepare items (a leader waits for them) and block until they are committed; returns
        their results or raises the batch's error."""
        with self._followers:
            self._preparing += 1
        try:
            items = prepare()
        except BaseException:
            with self._followers:
                self._preparing -= 1
                self._gather.notify()
            raise
        waiter: _Waiter[T, R] = _Waiter(items)
        with self._followers:
            self._preparing -= 1
            self._queue.append(waiter)
            self._gather.notify()
            led = False
            while not waiter.done:
                if self._leader:
                    self._followers.wait()
                    continue
                led = True
                self._lead()
            if not led:
                self._finishing -= 1
                self._gather.notify()
        if waiter.error is not None:
            raise waiter.error
        return waiter.results

    def _lead(self) -> None:
        """Commit the queue as one batch (called and returns with the lock held)."""
        self._leader = True
        deadline = time.monotonic() + GATHER_SECONDS
        while self._preparing or self._finishing:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._gather.wait(remaining):
                break
        batch, self._queue = self._queue, []
        self._followers.release()
        try:
            self._run(batch)
        finally:
            self._followers.acquire()
            for w in batch:
                w.done = True
            self._finishing += len(batch) - 1  # all but the leader's own
            self._leader = False
            self._followers.notify_all()

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
