"""The end of the chain as one writer holds it: the newest segment, open, and the last record.

Valid only while the writer holds the directory flock. Before each commit the writer asks
`is_current()`; when another process (or a crash) touched the chain since, `scan()` re-reads the
tail from disk. The check costs one fstat (appends by others to the segment held here change its
size) and one pread of the segment counter in DIR/.lock (store.generation_bytes: others starting a
segment bump it), not a path lookup, so an uncontended append pays two cheap system calls for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

from . import store
from .chain import GENESIS, decode, parse_ts
from .tail import locate_tail

log = logging.getLogger("agentobs_sdk.audit")


class SegmentEnd:
    """The newest segment's descriptor, its size and age, and the chain tail (seq, hash, time)."""

    def __init__(self, directory: str, lock_fd: int, clock: Callable[[], float],
                 max_bytes: int | None, rotate_seconds: float | None) -> None:
        self.directory = directory
        self.lock_fd = lock_fd
        self._clock = clock
        self.max_bytes = max_bytes
        self.rotate_seconds = rotate_seconds
        self.fd: int | None = None
        self.name = ""
        self.size = 0
        self.created = 0.0
        self.last_seq = 0
        self.last_hash = GENESIS
        self.last_ts = 0.0
        self.rotated = False  # set when a segment was started, for the writer's retention pass
        self._generation: bytes | None = None  # the segment counter at this writer's last look

    def is_current(self) -> bool:
        """True when nobody touched the chain since this writer's last commit (flock held)."""
        fd = self.fd
        # store.generation_bytes, inlined: this runs on every append.
        if fd is None or os.pread(self.lock_fd, 8, 0) != self._generation:
            return False
        st = os.fstat(fd)
        return st.st_size == self.size and st.st_nlink > 0

    def scan(self, check_record: Callable[[dict[str, Any]], None]) -> list[store.TornTail]:
        """Re-read the chain tail, repairing crash leftovers, and reopen the newest segment.

        `check_record` vets the record the writer will link to (it raises to refuse). Returns
        the torn tails moved to quarantine.
        """
        self.drop()
        self._generation = store.generation_bytes(self.lock_fd)
        tail = locate_tail(self.directory)
        for torn in tail.repairs:
            log.warning("agentobs audit: %s; earlier records are intact", torn.describe())
        if tail.record is not None:
            check_record(tail.record)
            with contextlib.suppress(ValueError, TypeError):
                self.last_ts = max(self.last_ts, parse_ts(str(tail.record["ts"])).timestamp())
        self.last_seq, self.last_hash = tail.seq, tail.hash
        if tail.segment is not None:
            self.fd = os.open(os.path.join(self.directory, tail.segment), os.O_RDWR | os.O_APPEND)
            self.name = tail.segment
            self.size = os.fstat(self.fd).st_size
            self.created = self._segment_created(tail.segment)
        return tail.repairs

    def _segment_created(self, name: str) -> float:
        line = store.read_first_line(os.path.join(self.directory, name))
        if line is not None:
            try:
                return parse_ts(decode(line)["ts"]).timestamp()
            except (ValueError, TypeError):
                pass
        return self._clock()

    def needs_rotation(self, pending: int, now: float) -> bool:
        size = self.size + pending
        if size == 0:
            return False
        if self.max_bytes is not None and size >= self.max_bytes:
            return True
        return self.rotate_seconds is not None and now - self.created >= self.rotate_seconds

    def new_segment(self) -> None:
        # Counted before the file exists: a crash in between costs others one needless scan.
        self._generation = store.write_generation(self.lock_fd, store.read_generation(self.lock_fd) + 1)
        name = store.segment_name(self.last_seq + 1)
        fd = os.open(os.path.join(self.directory, name), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        store.fsync_dir(self.directory)
        self.drop()
        self.fd, self.name = fd, name
        self.size = os.fstat(fd).st_size
        self.created = self._clock()
        self.rotated = True

    def write(self, data: bytes) -> None:
        """Append `data` to the segment and make it durable, or leave the segment as it was."""
        fd = self.fd
        if not data or fd is None:
            return
        before = self.size
        try:
            written = os.write(fd, data)
            if written < len(data):  # rare (a signal, a full disk): write the rest, or fail
                view = memoryview(data)[written:]
                while view:
                    view = view[os.write(fd, view):]
            store.sync_data(fd)
        except BaseException:
            # Never leave a half-written record behind for the next append to follow.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, before)
            raise
        self.size = before + len(data)

    def drop(self) -> None:
        """Forget the open segment (the next commit scans again)."""
        if self.fd is not None:
            os.close(self.fd)
        self.fd, self.name, self.size = None, "", 0
