"""`AuditTrail`: the append side of the audit trail (durability, concurrency, rotation, retention).

Integrity: with a key (keys.py) records are MACed and HEAD carries a MAC. A writer verifies the
whole trail when it opens and refuses (AuditError) to extend one that fails verification, or a
keyed trail without its key; when another process extended the chain it checks the new tail's
MAC before linking to it. Timestamps are taken under the lock (never earlier than the previous
record's), so sequence order and time order agree across threads and processes. The chain head is
announced outside the pod (anchor.py) at open, periodically and at close.

Concurrency: every commit holds an in-process lock and an exclusive flock on DIR/.lock, then
re-reads the chain tail if anyone else (another process, or a crash) touched the newest segment
since this writer last wrote, so threads and processes all extend one chain.

Durability: `append()` returns only after its record is on disk. In `fsync` mode each record
gets its own fdatasync; in `group` mode concurrent appenders queue, one of them writes the whole
queue with a single write and a single fdatasync, and all of them return once that is done.
HEAD is updated after the data is durable, so it never claims a record the disk lacks.

A forked child gets its own lock descriptor, since flock cannot tell apart two processes that
share one open file.

Rotation starts a new segment by size or age; its first record links to the last hash of the
previous one. Retention (retention.py) deletes whole old segments, recording the cut in the chain.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from . import store
from .anchor import AnchoredHead, Announcer, stderr_sink
from .chain import (
    GENESIS,
    AuditError,
    decode,
    encode,
    normalise_details,
    now_ts,
    parse_ts,
    seal,
)
from .group import GroupCommitter
from .integrity import check_tail_record, refuse_unless_verified
from .keys import head_mac, key_id
from .retention import expire_segments
from .tail import locate_tail

log = logging.getLogger("agentobs_sdk.audit")

Durability = Literal["fsync", "group"]
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_ROTATE_SECONDS = 86400.0
DEFAULT_ANCHOR_SECONDS = 60.0


@dataclass(frozen=True)
class AuditReceipt:
    """Proof an append is durable: where the record sits in the chain."""

    seq: int
    hash: str
    file: str
    ts: str


class AuditTrail:
    """Append-only, hash-chained, crash-safe JSONL audit trail in one directory."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        durability: Durability = "group",
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        rotate_seconds: float | None = DEFAULT_ROTATE_SECONDS,
        retention_days: float | None = None,
        default_agent: str | None = None,
        clock: Callable[[], float] = time.time,
        on_durable: Callable[[int], None] | None = None,
        agent_id: str | None = None,
        key: bytes | None = None,
        anchor_sink: Callable[[AnchoredHead], None] | None = stderr_sink,
        anchor_seconds: float | None = DEFAULT_ANCHOR_SECONDS,
    ) -> None:
        if durability not in ("fsync", "group"):
            raise ValueError(f"durability must be 'fsync' or 'group', not {durability!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.durability: Durability = durability
        self.max_bytes = max_bytes
        self.rotate_seconds = rotate_seconds
        self.retention_days = retention_days
        self.default_agent = default_agent
        self.agent_id = agent_id if agent_id is not None else default_agent
        self._key = key
        self._kid = key_id(key) if key is not None else None
        self._announcer = Announcer(anchor_sink, anchor_seconds)
        self.trail_id = ""
        self._clock = clock
        self._on_durable = on_durable
        self.repairs: list[store.TornTail] = []

        os.makedirs(self.directory, mode=0o750, exist_ok=True)
        self._lock_fd = os.open(os.path.join(self.directory, store.LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o640)
        self._head_fd = os.open(os.path.join(self.directory, store.HEAD_NAME), os.O_RDWR | os.O_CREAT, 0o640)
        self._io = threading.Lock()
        self._group: GroupCommitter[dict[str, Any], AuditReceipt] = GroupCommitter(self._commit)
        self._closed = False
        self._rotated = False
        # The newest segment and the chain tail, valid while the flock is held.
        self._fd: int | None = None
        self._name = ""
        self._size = 0
        self._created = 0.0
        self._last_seq = 0
        self._last_hash = GENESIS
        self._last_ts = 0.0

        try:
            with self._io, store.dir_lock(self._lock_fd):
                self.trail_id = store.ensure_trail_id(self.directory)
                self._scan()
                self._check_head()
                self._refuse_unless_verified()
                self._retention_locked()
        except BaseException:
            self._close_fds()
            raise
        self._anchor(force=True)
        # A forked child shares this writer's open lock file, and flock does not exclude two
        # holders of one open file: give the child its own descriptors and locks.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reopen_in_child(ref))

    # --- public API ---------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def append(
        self,
        action: str,
        *,
        agent: str | None = None,
        user: str | None = None,
        result: str | None = None,
        resource: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditReceipt:
        """Add one record; returns once it is durable (per the trail's durability mode)."""
        return self._submit([self._body(action, agent, user, result, resource, details)])[0]

    def append_many(self, entries: Iterable[Mapping[str, Any]]) -> list[AuditReceipt]:
        """Add several records (each a mapping of `append` keyword arguments) with one fsync."""
        bodies = [
            self._body(e["action"], e.get("agent"), e.get("user"), e.get("result"), e.get("resource"),
                       e.get("details"))
            for e in entries
        ]
        return self._submit(bodies) if bodies else []

    def apply_retention(self) -> list[str]:
        """Delete segments older than the retention period now; returns the deleted names."""
        with self._io, store.dir_lock(self._lock_fd):
            self._ensure_open()
            if not self._tail_is_current():
                self._scan()
            return self._retention_locked()

    @property
    def keyed(self) -> bool:
        return self._key is not None

    def head(self) -> AnchoredHead:
        """The newest record this writer knows of, as it is anchored outside the pod."""
        return AnchoredHead(self.trail_id, self._last_seq, self._last_hash, self.agent_id,
                            now_ts(self._clock()))

    def close(self) -> None:
        with self._io:
            if self._closed:
                return
            self._closed = True
            self._close_fds()
        self._anchor(force=True)

    def __enter__(self) -> AuditTrail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- building and committing records -------------------------------------------------------

    def _body(
        self,
        action: str,
        agent: str | None,
        user: str | None,
        result: str | None,
        resource: str | None,
        details: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        if not isinstance(action, str) or not action:
            raise ValueError("an audit record needs a non-empty action")
        # No timestamp yet: it is taken under the lock, when the record gets its seq.
        return {
            "agent": agent if agent is not None else self.default_agent,
            "agent_id": self.agent_id,
            "action": action,
            "user": user,
            "result": result,
            "resource": resource,
            "details": normalise_details(details),
        }

    def _submit(self, bodies: list[dict[str, Any]]) -> list[AuditReceipt]:
        if self.durability == "fsync":
            return self._commit(bodies)
        return self._group.submit(bodies)

    def _commit(self, bodies: list[dict[str, Any]]) -> list[AuditReceipt]:
        with self._io:
            self._ensure_open()
            with store.dir_lock(self._lock_fd):
                if not self._tail_is_current():
                    self._scan()
                self._rotated = False
                receipts = self._write_records(bodies)
                if self._rotated and self.retention_days is not None:
                    try:
                        self._retention_locked()
                    except OSError as exc:  # the appends are durable; retention retries next time
                        log.error("agentobs audit: retention in %s failed: %s", self.directory, exc)
        self._anchor()
        return receipts

    def _write_records(self, bodies: list[dict[str, Any]]) -> list[AuditReceipt]:
        receipts: list[AuditReceipt] = []
        buf = bytearray()
        try:
            for body in bodies:
                if self._fd is None:
                    self._new_segment()
                elif self._needs_rotation(len(buf)):
                    self._flush(buf)
                    buf.clear()
                    self._new_segment()
                # Never before the previous record, even if the wall clock stepped back.
                self._last_ts = max(self._clock(), self._last_ts)
                record = seal({**body, "ts": now_ts(self._last_ts)}, seq=self._last_seq + 1,
                              prev=self._last_hash, key=self._key)
                buf += encode(record)
                self._last_seq, self._last_hash = record["seq"], record["hash"]
                receipts.append(AuditReceipt(record["seq"], record["hash"], self._name, record["ts"]))
            self._flush(buf)
        except BaseException:
            # Forget the in-memory tail: the next commit re-reads what really reached the disk.
            self._drop_segment()
            raise
        self._write_head()
        if self._on_durable is not None:
            try:
                self._on_durable(self._last_seq)
            except Exception:  # a metrics hiccup must not turn a durable append into an error
                log.exception("agentobs audit: on_durable callback failed")
        return receipts

    def _flush(self, buf: bytearray) -> None:
        if not buf or self._fd is None:
            return
        before = self._size
        try:
            view = memoryview(buf)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            store.sync_data(self._fd)
        except BaseException:
            # Never leave a half-written record behind for the next append to follow.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, before)
            raise
        self._size = before + len(buf)

    def _needs_rotation(self, pending: int) -> bool:
        size = self._size + pending
        if size == 0:
            return False
        if self.max_bytes is not None and size >= self.max_bytes:
            return True
        return self.rotate_seconds is not None and self._clock() - self._created >= self.rotate_seconds

    def _new_segment(self) -> None:
        name = store.segment_name(self._last_seq + 1)
        fd = os.open(os.path.join(self.directory, name), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        store.fsync_dir(self.directory)
        self._drop_segment()
        self._fd, self._name = fd, name
        self._size = os.fstat(fd).st_size
        self._created = self._clock()
        self._rotated = True

    # --- reading the tail ------------------------------------------------------------------------

    def _tail_is_current(self) -> bool:
        """True when nobody touched the chain since this writer's last commit (flock held)."""
        if self._fd is None:
            return False
        st = os.fstat(self._fd)
        if st.st_size != self._size or st.st_nlink == 0:
            return False
        nxt = store.segment_name(self._last_seq + 1)
        return nxt == self._name or not os.path.exists(os.path.join(self.directory, nxt))

    def _scan(self) -> None:
        """Re-read the chain tail and reopen the newest segment (flock held)."""
        self._drop_segment()
        tail = locate_tail(self.directory)
        for torn in tail.repairs:
            self.repairs.append(torn)
            log.warning("agentobs audit: %s; earlier records are intact", torn.describe())
        if tail.record is not None:
            self._check_tail_record(tail.record)
            with contextlib.suppress(ValueError, TypeError):
                self._last_ts = max(self._last_ts, parse_ts(str(tail.record["ts"])).timestamp())
        self._last_seq, self._last_hash = tail.seq, tail.hash
        if tail.segment is not None:
            self._fd = os.open(os.path.join(self.directory, tail.segment), os.O_RDWR | os.O_APPEND)
            self._name = tail.segment
            self._size = os.fstat(self._fd).st_size
            self._created = self._segment_created(tail.segment)

    def _segment_created(self, name: str) -> float:
        line = store.read_first_line(os.path.join(self.directory, name))
        if line is not None:
            try:
                return parse_ts(decode(line)["ts"]).timestamp()
            except (ValueError, TypeError):
                pass
        return self._clock()

    def _check_head(self) -> None:
        """Refuse to write over a trail that lost records HEAD says were durable."""
        try:
            head = store.read_head(self.directory)
        except ValueError:
            head = None
        if head is not None and head.seq > self._last_seq:
            raise AuditError(
                f"audit trail in {self.directory} ends at seq {self._last_seq} but HEAD says seq "
                f"{head.seq} was durable: records were removed; run `agentobs-audit verify`"
            )
        if head is None or head.seq < self._last_seq:
            if head is None and self._last_seq > 0:
                log.warning("agentobs audit: HEAD in %s was missing; recreated from the chain tail",
                            self.directory)
            self._write_head()

    # --- integrity ---------------------------------------------------------------------------------

    def _write_head(self) -> None:
        mac = None
        if self._key is not None:
            mac = head_mac(self._key, self.trail_id, self._last_seq, self._last_hash)
        store.write_head(self._head_fd, store.Head(self._last_seq, self._last_hash, mac, self._kid))

    def _check_tail_record(self, record: dict[str, Any]) -> None:
        check_tail_record(self.directory, record, self._key)

    def _refuse_unless_verified(self) -> None:
        refuse_unless_verified(self.directory, self._key)

    def _anchor(self, *, force: bool = False) -> None:
        self._announcer.announce(self.head, force=force)

    # --- retention ---------------------------------------------------------------------------------

    def _retention_locked(self) -> list[str]:
        if self.retention_days is None:
            return []

        def write(body: dict[str, Any]) -> int:
            self._rotated = False
            return self._write_records([body])[0].seq

        return expire_segments(self.directory, self.retention_days, self._clock(), write)

    # --- file descriptors ------------------------------------------------------------------------

    def _after_fork(self) -> None:
        # Locks may have been held by parent threads that do not exist here; the inherited
        # descriptors stay open (closing them is harmless) but the child stops using them.
        self._io = threading.Lock()
        self._group = GroupCommitter(self._commit)
        if self._closed:
            return
        self._drop_segment()
        self._lock_fd = os.open(os.path.join(self.directory, store.LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o640)
        self._head_fd = os.open(os.path.join(self.directory, store.HEAD_NAME), os.O_RDWR | os.O_CREAT, 0o640)

    def _ensure_open(self) -> None:
        if self._closed:
            raise AuditError(f"audit trail {self.directory} is closed")

    def _drop_segment(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._name, self._size = None, "", 0

    def _close_fds(self) -> None:
        self._drop_segment()
        for fd in (self._lock_fd, self._head_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def _reopen_in_child(ref: weakref.ReferenceType[AuditTrail]) -> None:
    trail = ref()
    if trail is not None:
        trail._after_fork()
