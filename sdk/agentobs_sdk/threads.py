"""Carrying the agent's context into threads.

Spans, the current agent (the `agent` label of the metrics) and the innermost helper all live in
`contextvars`, which asyncio tasks inherit but threads started by a `ThreadPoolExecutor` (or
`threading.Thread`, or `loop.run_in_executor`) do not: work there would start a trace of its own
and report the configured agent id instead of the enclosing `agent_run`. These helpers copy the
caller's context at submit time and run the work inside that copy. `asyncio.to_thread` already
does this by itself.

    with aobs.agent_run("researcher"):
        futures = [aobs.submit(pool, fetch, url) for url in urls]     # or:
        results = list(pool.map(aobs.in_context(fetch), urls))
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def in_context(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` bound to the caller's current context: each call runs in a fresh copy of it.

    A copy per call, because one `Context` cannot be entered by two threads at once, and the
    wrapped function is typically handed to a pool that runs it concurrently.
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return run


def submit(executor: concurrent.futures.Executor, fn: Callable[P, R], /, *args: P.args,
           **kwargs: P.kwargs) -> concurrent.futures.Future[R]:
    """`executor.submit(fn, ...)` with the caller's context (span, agent) carried into the work."""
    return executor.submit(in_context(fn), *args, **kwargs)


class ContextThreadPoolExecutor(concurrent.futures.ThreadPoolExecutor):
    """A ThreadPoolExecutor whose `submit` (and so `map`) carries the submitter's context."""

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[R]:
        return super().submit(in_context(fn), *args, **kwargs)
