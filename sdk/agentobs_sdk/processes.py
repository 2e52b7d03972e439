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
  handle is shut down from one of those instead. A worker stopped by `terminate()` (also a
  `Pool` leaving its `with` block) gets SIGTERM, which by default kills it before any Python
  code runs: the SDK gives such a worker a SIGTERM handler that exports the spans (for at most
  `TERM_FLUSH_SECONDS`) and then dies of SIGTERM as before. The handler runs only when the worker
  runs Python code: one inside a long native call (a C extension) dies when that call returns.

Other children that end with `os._exit()` or are killed still lose what was not exported: a bare
`os.fork()`, celery's prefork pool (billiard, its multiprocessing fork, runs none of
multiprocessing's hooks, and celery resets SIGTERM in its workers). sdk/README.md says what to do.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import sys
from types import FrameType

from . import config

log = logging.getLogger("agentobs_sdk")

# How long a terminated multiprocessing worker spends exporting its last spans before it dies:
# short, because Pool.terminate() waits for every worker it signals.
TERM_FLUSH_SECONDS = 2.0


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
    Finalize(handle, _shut_down_at_exit, args=(handle,), exitpriority=0)
    # Only where SIGTERM would kill outright: a handler the application set (or sets later, e.g.
    # in a Pool initializer) wins.
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _flush_then_die)


def _shut_down_at_exit(handle: config.Handle) -> None:
    global _exiting
    _exiting = True
    handle.shutdown()


# Set when the worker is past its target, shutting the handle down: a Pool's terminate() tells
# idle workers to stop and signals them at the same time, so SIGTERM often arrives right then.
_exiting = False


def _flush_then_die(signum: int, frame: FrameType | None) -> None:
    if _exiting:
        # The shutdown this interrupted exports the spans (bounded by the exporter's timeout) and
        # the worker then ends; dying now would cut it short. Another SIGTERM kills at once.
        signal.signal(signum, signal.SIG_DFL)
        return
    handle = config.current_handle()
    if handle is not None:
        # In a thread of its own, waited for with a bound: the interrupted code may hold a lock
        # the flush needs (OpenTelemetry's export lock in a force_flush(), logging's), and a
        # low-level thread takes none of threading's own locks.
        done = _thread.allocate_lock()
        done.acquire()

        def flush() -> None:
            try:
                handle.force_flush(int(TERM_FLUSH_SECONDS * 1000))
            finally:
                done.release()

        _thread.start_new_thread(flush, ())
        done.acquire(timeout=TERM_FLUSH_SECONDS)
    # Die of the signal, as without the SDK: the parent sees the same exit status (-SIGTERM).
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


os.register_at_fork(after_in_child=_after_fork_in_child)
