"""The work queue: priorities, one entry per key, no two passes of a key at once; the resync period."""

from __future__ import annotations

import asyncio

import pytest

from agentobs.workqueue import Priority, WorkQueue, resync_period


async def _drain(queue: WorkQueue[str]) -> list[str]:
    out = []
    while len(queue):
        key = await asyncio.wait_for(queue.get(), 1)
        out.append(key)
        queue.done(key)
    return out


async def test_new_and_changed_go_before_resyncs_in_arrival_order() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("r1", "r2", "r3"):
        queue.add(key, Priority.RESYNC)
    queue.add("child", Priority.CHILD)
    queue.add("new", Priority.NEW)
    queue.add("r2", Priority.NEW)  # a resync already queued, now with a spec change: it moves up
    assert queue.depth() == {Priority.NEW: 2, Priority.CHILD: 1, Priority.RESYNC: 2}
    assert await _drain(queue) == ["new", "r2", "child", "r1", "r3"]


async def test_a_key_is_queued_once_at_its_most_urgent_priority() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a", Priority.NEW)
    queue.add("a", Priority.RESYNC)
    queue.add("a", Priority.CHILD)
    assert len(queue) == 1
    assert await _drain(queue) == ["a"]


async def test_woken_while_running_runs_again_after_not_alongside() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a", Priority.RESYNC)
    key = await queue.get()
    queue.add("a", Priority.CHILD)
    assert len(queue) == 0, "not handed to a second worker while the first pass runs"
    queue.done(key)
    assert queue.depth()[Priority.CHILD] == 1
    assert await _drain(queue) == ["a"]


async def test_get_waits_for_work_and_discard_forgets() -> None:
    queue: WorkQueue[str] = WorkQueue()
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    queue.add("gone", Priority.NEW)
    queue.discard("gone")
    queue.add("b", Priority.RESYNC)
    assert await asyncio.wait_for(waiter, 1) == "b"


@pytest.mark.parametrize(("resources", "expected"), [(0, 60.0), (120, 60.0), (200, 100.0), (1000, 500.0)])
def test_resync_period_grows_with_resources(resources: int, expected: float) -> None:
    assert resync_period(60.0, resources, 2.0) == expected


def test_resync_rate_zero_keeps_the_base() -> None:
    assert resync_period(30.0, 10_000, 0.0) == 30.0
