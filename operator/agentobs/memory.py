"""How the operator process uses glibc's malloc: few arenas, and memory handed back after a burst.

Both matter at a thousand stacks. glibc gives every thread that allocates an arena of its own and
keeps what a pass freed in it; with a thread per watch and per worker that multiplies the resident
memory, while the GIL lets one thread run Python at a time, so a few arenas serve as well
(AGENTOBS_MALLOC_ARENAS, default 2). And a burst of passes (start-up, a relist, many resources
created at once) parses and renders far more than the caches keep: freed, that memory stays
resident unless malloc is asked to return it. `Trimmer` asks (malloc_trim) once the queue has gone
idle after enough passes, at most once a minute; without glibc both are no-ops.
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource
from collections.abc import Callable

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h
TRIM_AFTER_PASSES = 20  # a pass or two is not a burst worth a walk over the heap
TRIM_INTERVAL = 60.0


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return None


def limit_arenas() -> None:
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, int(os.environ.get("AGENTOBS_MALLOC_ARENAS", "2")))


def _resident_kib() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * (resource.getpagesize() // 1024)
    except (OSError, ValueError, IndexError):
        return 0


class Trimmer:
    """Counts passes; `maybe_trim` returns freed memory to the system when a burst is over."""

    def __init__(self, trim: Callable[[], object] | None = None) -> None:
        if trim is None:
            libc = _libc()
            trim = (lambda: libc.malloc_trim(0)) if libc is not None else None
        self._trim = trim
        self.passes = 0
        self._last = float("-inf")

    def passed(self) -> None:
        self.passes += 1

    def due(self, idle: bool, now: float) -> bool:
        return (self._trim is not None and idle and self.passes >= TRIM_AFTER_PASSES
                and now - self._last >= TRIM_INTERVAL)

    def trim(self, now: float) -> int:
        """Hand free memory back; returns the KiB the resident set shrank by (for the log)."""
        assert self._trim is not None
        self.passes, self._last = 0, now
        before = _resident_kib()
        self._trim()
        returned = max(0, before - _resident_kib())
        log.debug("returned %d MiB of freed memory to the system", returned // 1024)
        return returned
