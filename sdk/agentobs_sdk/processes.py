"""The SDK in processes forked after `configure()`: pre-fork servers (gunicorn's preload mode), a
celery prefork pool, multiprocessing's `fork` start method.

A forked child inherits the configured handle. OpenTelemetry restarts the span export thread in
the child and the audit writer takes its own directory lock (audit/writer.py), so spans and audit
records are kept. Two things are not, and this module handles them at the fork:

- metrics: the /metrics thread stays in the parent, which answers every scrape of the port, so
  the child's figures are never served. The child says so (`Handle.shutdown()` in the child also
  skips the final-scrape wait: see `AgentMetrics.serving`).
- the last spans of a multiprocessing worker: it ends with `os._exit()`, so atexit (where the
  handle's `shutdown()` flushes them) never runs; only multiprocessing's own finalizers do. The
  handle is shut down from one of those instead.
"""

from __future__ import annotations

import logging
import os
import sys

from . import config

log = logging.getLogger("agentobs_sdk")


def _after_fork_in_child() -> None:
    handle = config.current_handle()
    if handle is None:
        return
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        # Not a Finalize now: the worker's bootstrap clears the finalizers it inherited, then
        # runs the after-fork callbacks, which is where this one registers its own.
        mp_util.register_after_fork(handle, _shut_down_at_worker_exit)
    if handle.metrics_port is not None:
        log.warning("agentobs: process %d was forked from a process that had called configure(): "
                    "the metrics it records are not served (scrapes of port %d reach the parent); "
                    "spans, logs and the audit trail are kept. To serve a worker's metrics, call "
                    "configure() in the worker after the fork instead (e.g. gunicorn's post_fork "
                    "hook, without preloading); one process per pod can serve the port",
                    os.getpid(), handle.metrics_port)


def _shut_down_at_worker_exit(handle: config.Handle) -> None:
    from multiprocessing.util import Finalize

    # Run by multiprocessing when the worker's target returns, before its os._exit().
    Finalize(handle, handle.shutdown, exitpriority=0)


os.register_at_fork(after_in_child=_after_fork_in_child)
