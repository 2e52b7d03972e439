"""`AuditTrail`: the append side of the audit trail (durability, concurrency, rotation, retention).

Integrity: with a key (keys.py) records are MACed and HEAD carries a MAC. A writer verifies the
whole trail when it opens and refuses (AuditError) to extend one that fails verification, or a
keyed trail without its key (given the previous key too, it rotates the trail's key: rekey.py);
when another process extended the chain it checks the new tail's MAC before linking to it.
Timestamps are taken under the lock (never before the previous record's), so sequence and time
order agree. The chain head is announced outside the pod (anchor.py) at open, periodically and at
close. Concurrency: every commit holds an in-process lock and an exclusive flock on DIR/.lock,
then re-reads the chain tail if anyone else (another process, a crash) touched it since this
writer last wrote (segment.py), so threads and processes extend one chain. A record is encoded
before the locks (draft.py); under them it only gets its seq, time, link and MAC. A forked child
gets its own lock descriptor (flock cannot tell apart two processes sharing one open file).

Durability: `append()` returns only after its record is on disk: in `fsync` mode each record gets
its own fdatasync; in `group` mode one of the queued appenders writes the whole queue with one
write and one fdatasync (group.py). HEAD is updated once per commit, after the data is durable.
Segments rotate by size or age (a segment's first record links to the previous one's last);
retention (retention.py) deletes whole old segments, recording the cut in the chain.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, Unpack
from uuid import UUID

from . import store
from .anchor import AnchoredHead, Announcer, stderr_sink
from .chain import ALG_HMAC, AuditError, digester, field_text, normalise_details, now_ts
from .draft import Draft, layout
from .group import GroupCommitter
from .integrity import check_tail_record, head_action, refuse_unless_verified
from .keys import head_signer, key_id
from .rekey import rotation_body
from .retention import expire_segments
from .segment import SegmentEnd

log = logging.getLogger("agentobs_sdk.audit")

Durability = Literal["fsync", "group"]
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_ROTATE_SECONDS = 86400.0
DEFAULT_ANCHOR_SECONDS = 60.0


class AuditFields(TypedDict, total=False):
    """What a caller says in an audit record besides its action (all optional)."""

    agent: str | None  # the agent_run name; default: the trail's default agent
    # A number or UUID is stored as its text, as queries compare (chain.field_text).
    user: str | int | UUID | None
    result: str | None
    resource: str | int | UUID | None
    details: Mapping[str, Any] | None


AUDIT_FIELDS = frozenset(AuditFields.__optional_keys__)
# A record body's fields, in the order `_draft` gives their values (the JSON is sorted anyway).
_BODY_FIELDS = ("action", "agent", "user", "result", "resource", "details")


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
        previous_key: bytes | None = None,
        anchor_sink: Callable[[AnchoredHead], None] | None = stderr_sink,
        anchor_seconds: float | None = DEFAULT_ANCHOR_SECONDS,
    ) -> None:
        if durability not in ("fsync", "group"):
            raise ValueError(f"durability must be 'fsync' or 'group', not {durability!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.durability: Durability = durability
        self.retention_days = retention_days
        self.default_agent = default_agent
        self.agent_id = agent_id if agent_id is not None else default_agent
        self._key = key
        # The key the trail's tail is MACed with when this writer is to rotate to `key` (rekey.py).
        self._rotate_from: bytes | None = None
        self._kid = key_id(key) if key is not None else None
        self._digest = digester(key)
        # Every record of this writer has the same fields: their layout and the constant values.
        fixed = (("agent_id", self.agent_id),) + ((("alg", ALG_HMAC),) if key is not None else ())
        self._layout = layout(_BODY_FIELDS, fixed)
        self._sign_head: Callable[[int, str], str] | None = None
        self._format_head = store.head_formatter(self._kid)
        self._announcer = Announcer(anchor_sink, anchor_seconds)
        self.trail_id = ""
        self._clock = clock
        self._on_durable = on_durable
        self.repairs: list[store.TornTail] = []

        os.makedirs(self.directory, mode=0o750, exist_ok=True)
        self._lock_fd = os.open(os.path.join(self.directory, store.LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o640)
        self._head_fd = os.open(os.path.join(self.directory, store.HEAD_NAME), os.O_RDWR | os.O_CREAT, 0o640)
        self._io = threading.Lock()
        self._group: GroupCommitter[Draft, AuditReceipt] = GroupCommitter(self._commit)
        self._closed = False
        self._end = SegmentEnd(self.directory, self._lock_fd, clock, max_bytes, rotate_seconds)

        try:
            with self._io, store.dir_lock(self._lock_fd):
                existing = store.read_trail_id(self.directory)
                self.trail_id = existing or store.new_trail_id()
                if key is not None:
                    self._sign_head = head_signer(key, self.trail_id)
                previous_key = previous_key if key is not None and previous_key != key else None
                self._scan(previous_key)
                self._check_head(new=existing is None)
                if existing is None:
                    # TRAIL last, once HEAD is durable: a trail with TRAIL has a HEAD, so a
                    # missing HEAD is never a crash at creation but a removal.
                    store.write_trail_id(self.directory, self.trail_id)
                # With the previous key too: the records before a rotation are checked as well.
                refuse_unless_verified(self.directory, self._key, previous_key)
                if self._rotate_from is not None:
                    self._rotate_key(self._rotate_from)
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
        return self._end.last_seq

    def append(self, action: str, **fields: Unpack[AuditFields]) -> AuditReceipt:
        """Add one record; returns once it is durable (per the trail's durability mode)."""
        if self.durability == "fsync":
            return self._commit([self._draft(action, fields)])[0]
        return self._group.submit(lambda: [self._draft(action, fields)])[0]

    def append_many(self, entries: Iterable[Mapping[str, Any]]) -> list[AuditReceipt]:
        """Add several records (each a mapping of `append` keyword arguments) with one fsync."""
        items = list(entries)
        if not items:
            return []
        return self._submit(lambda: [self._draft(e["action"], {k: v for k, v in e.items() if k != "action"})
                                     for e in items])

    def apply_retention(self) -> list[str]:
        """Delete segments older than the retention period now; returns the deleted names."""
        with self._io, store.dir_lock(self._lock_fd):
            self._ensure_open()
            if not self._end.is_current():
                self._scan()
            return self._retention_locked()

    @property
    def keyed(self) -> bool:
        return self._key is not None

    def head(self) -> AnchoredHead:
        """The newest record this writer knows of, as it is anchored outside the pod."""
        return AnchoredHead(self.trail_id, self._end.last_seq, self._end.last_hash, self.agent_id,
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

    def _draft(self, action: str, fields: Mapping[str, Any]) -> Draft:
        if not isinstance(action, str) or not action:
            raise ValueError("an audit record needs a non-empty action")
        if not fields.keys() <= AUDIT_FIELDS:
            unknown = sorted(fields.keys() - AUDIT_FIELDS)
            raise TypeError(f"unknown audit record fields {unknown}; allowed: {sorted(AUDIT_FIELDS)}")
        get = fields.get
        agent, user, result, resource, details = (get("agent"), get("user"), get("result"), get("resource"),
                                                  get("details"))
        # Queries compare these as text; only a value that is not a str (nor None) costs more here.
        if type(agent) is not str and agent is not None:
            agent = field_text("agent", agent)
        if type(user) is not str and user is not None:
            user = field_text("user", user)
        if type(result) is not str and result is not None:
            result = field_text("result", result)
        if type(resource) is not str and resource is not None:
            resource = field_text("resource", resource)
        # No timestamp yet: it is taken under the lock, when the record gets its seq.
        return self._layout.draft((
            action, self.default_agent if agent is None else agent, user, result, resource,
            None if details is None else normalise_details(details),
        ))

    def _submit(self, prepare: Callable[[], list[Draft]]) -> list[AuditReceipt]:
        # Records are encoded by the appending thread, before any lock (draft.py).
        if self.durability == "fsync":
            return self._commit(prepare())
        return self._group.submit(prepare)

    def _commit(self, drafts: list[Draft]) -> list[AuditReceipt]:
        with self._io:
            if self._closed:
                self._ensure_open()
            end = self._end
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # store.dir_lock, without a generator per commit
            try:
                if not end.is_current():
                    self._scan()
                end.rotated = False
                receipts = self._write_records(drafts)
                if end.rotated and self.retention_days is not None:
                    try:
                        self._retention_locked()
                    except OSError as exc:  # the appends are durable; retention retries next time
                        log.error("agentobs audit: retention in %s failed: %s", self.directory, exc)
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        if self._announcer.periodic:
            self._anchor()
        return receipts

    def _write_records(self, drafts: list[Draft]) -> list[AuditReceipt]:
        end, clock, digest = self._end, self._clock, self._digest
        receipts: list[AuditReceipt] = []
        lines: list[bytes] = []
        pending = 0  # bytes in `lines`
        try:
            for draft in drafts:
                now = clock()
                if end.fd is None:
                    end.new_segment()
                elif end.needs_rotation(pending, now):
                    end.write(b"".join(lines))
                    lines.clear()
                    pending = 0
                    end.new_segment()
                # Never before the previous record, even if the wall clock stepped back.
                if now < end.last_ts:
                    now = end.last_ts
                end.last_ts = now
                ts = now_ts(now)
                seq = end.last_seq + 1
                line, hash_ = draft.seal(seq, ts, end.last_hash, digest)
                lines.append(line)
                pending += len(line)
                end.last_seq, end.last_hash = seq, hash_
                receipts.append(AuditReceipt(seq, hash_, end.name, ts))
            # Made now, so that once the data is durable only a pwrite is left to do.
            head = self._head_line()
            end.write(lines[0] if len(lines) == 1 else b"".join(lines))
        except BaseException:
            # Forget the in-memory tail: the next commit re-reads what really reached the disk.
            end.drop()
            raise
        os.pwrite(self._head_fd, head, 0)
        if self._on_durable is not None:
            try:
                self._on_durable(end.last_seq)
            except Exception:  # a metrics hiccup must not turn a durable append into an error
                log.exception("agentobs audit: on_durable callback failed")
        return receipts

    # --- the chain tail and HEAD -------------------------------------------------------------------

    def _scan(self, previous_key: bytes | None = None) -> None:
        """Re-read the chain tail and reopen the newest segment (flock held). `previous_key`, at
        open only: a tail MACed with it is accepted, and the writer is to rotate the key."""
        def check(record: dict[str, Any]) -> None:
            if check_tail_record(self.directory, record, self._key, previous_key):
                self._rotate_from = previous_key

        self.repairs.extend(self._end.scan(check))

    def _rotate_key(self, old: bytes) -> None:
        """Hand the chain to this writer's key: a record MACed with the old key names both ids."""
        digest, self._digest = self._digest, digester(old)
        try:
            self._end.rotated = False
            body = rotation_body(self.agent_id, old, self._key or b"")
            seq = self._write_records([Draft(body, keyed=True)])[0].seq
        finally:
            self._digest = digest
        self._rotate_from = None
        log.info("agentobs audit: the trail in %s now uses audit key id %s (rotated from id %s at seq %d)",
                    self.directory, self._kid, key_id(old), seq)

    def _check_head(self, *, new: bool) -> None:
        """Refuse to write over a trail that lost records or HEAD (integrity.head_action)."""
        action = head_action(self.directory, self._end.last_seq, new=new)
        if action == "sync" or (action == "write" and self._rotate_from is None):  # else the rotation does
            self._write_head()
            if action == "sync":
                os.fsync(self._head_fd)

    def _head_line(self) -> bytes:
        seq, digest = self._end.last_seq, self._end.last_hash
        sign = self._sign_head
        return self._format_head(seq, digest, None if sign is None else sign(seq, digest))

    def _write_head(self) -> None:
        os.pwrite(self._head_fd, self._head_line(), 0)

    def _anchor(self, *, force: bool = False) -> None:
        self._announcer.announce(self.head, force=force)

    # --- retention ---------------------------------------------------------------------------------

    def _retention_locked(self) -> list[str]:
        if self.retention_days is None:
            return []

        def write(body: dict[str, Any]) -> int:
            self._end.rotated = False
            # Which pod cut the trail: `query --agent-id` finds it beside that pod's own records.
            body = {**body, "agent_id": self.agent_id}
            return self._write_records([Draft(body, keyed=self._key is not None)])[0].seq

        return expire_segments(self.directory, self.retention_days, self._clock(), write)

    # --- file descriptors ------------------------------------------------------------------------

    def _after_fork(self) -> None:
        # Locks may have been held by parent threads that do not exist here; the inherited
        # descriptors stay open (closing them is harmless) but the child stops using them.
        self._io = threading.Lock()
        self._group = GroupCommitter(self._commit)
        if self._closed:
            return
        self._end.drop()
        self._lock_fd = os.open(os.path.join(self.directory, store.LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o640)
        self._head_fd = os.open(os.path.join(self.directory, store.HEAD_NAME), os.O_RDWR | os.O_CREAT, 0o640)
        self._end.lock_fd = self._lock_fd

    def _ensure_open(self) -> None:
        if self._closed:
            raise AuditError(f"audit trail {self.directory} is closed")

    def _close_fds(self) -> None:
        self._end.drop()
        for fd in (self._lock_fd, self._head_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def _reopen_in_child(ref: weakref.ReferenceType[AuditTrail]) -> None:
    trail = ref()
    if trail is not None:
        trail._after_fork()
