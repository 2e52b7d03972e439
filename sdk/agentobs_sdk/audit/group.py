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

Each waiter sleeps on a lock of its own, which the leader releases once its batch is done, so a
commit wakes only the threads it served; a thread that queued during the commit is handed the
lead the same way. The gathering leader is woken once, when the last thread it waits for has
queued, not once per record: every wake-up is a switch of the GIL between threads, and at a few
records per fsync those switches are a large part of the cost of a batch.
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
    __slots__ = ("error", "items", "lead", "results", "wake")

    def __init__(self, items: list[T]) -> None:
        self.items = items
        self.results: list[R] = []
        self.error: BaseException | None = None
        self.lead = False  # set before `wake` is released when this waiter is to lead the next batch
        # Released once, by the leader: when the batch holding these items is done, or to hand over
        # the lead. One lock per waiter, so a commit wakes only its own waiters (a shared
        # Condition's notify_all would wake every thread, and each would contend for the lock).
        self.wake = threading.Lock()
        self.wake.acquire()


class GroupCommitter(Generic[T, R]):
    """Runs `commit(batch) -> one result per item` for batches of concurrently submitted items."""

    def __init__(self, commit: Callable[[list[T]], list[R]]) -> None:
        self._commit = commit
        self._lock = threading.Lock()
        self._gather = threading.Condition(self._lock)  # a leader waiting for announced records
        self._gathering = False  # a leader is waiting on _gather
        self._queue: list[_Waiter[T, R]] = []
        self._leader = False  # a thread is leading: gathering, committing, or handing over the lead
        self._preparing = 0  # threads inside submit() still preparing their items
        self._finishing = 0  # threads released by the last commit that have not left submit()

    def submit(self, prepare: Callable[[], list[T]]) -> list[R]:
        """Prepare items (a leader waits for them) and block until they are committed; returns
        their results or raises the batch's error."""
        with self._lock:
            self._preparing += 1
        try:
            items = prepare()
        except BaseException:
            with self._lock:
                self._preparing -= 1
                self._wake_gatherer()
            raise
        waiter: _Waiter[T, R] = _Waiter(items)
        with self._lock:
            self._preparing -= 1
            self._queue.append(waiter)
            lead = not self._leader
            if lead:
                self._leader = True
            else:
                self._wake_gatherer()
        if not lead:
            waiter.wake.acquire()
            lead = waiter.lead  # handed the lead: these items are still queued
        if lead:
            self._lead(waiter)
        else:
            with self._lock:
                self._finishing -= 1
                self._wake_gatherer()
        if waiter.error is not None:
            raise waiter.error
        return waiter.results

    def _wake_gatherer(self) -> None:
        # Only once what the leader waits for has happened: each needless wake-up costs a thread
        # switch, and they would come once per record.
        if self._gathering and not self._preparing and not self._finishing:
            self._gather.notify()

    def _lead(self, me: _Waiter[T, R]) -> None:
        """Commit the queue (which holds `me`) as one batch, then release its waiters."""
        with self._lock:
            deadline = time.monotonic() + GATHER_SECONDS
            while self._preparing or self._finishing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._gathering = True
                try:
                    self._gather.wait(remaining)
                finally:
                    self._gathering = False
            batch, self._queue = self._queue, []
        following: _Waiter[T, R] | None = None
        try:
            self._run(batch)
        finally:
            with self._lock:
                self._finishing += len(batch) - 1  # all but the leader's own
                if self._queue:  # queued during the commit: the first of them leads next
                    following = self._queue[0]
                    following.lead = True
                else:
                    self._leader = False
            for w in batch:
                if w is not me:
                    w.wake.release()
            if following is not None:
                following.wake.release()

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
