"""On-disk layout of an audit directory and the low-level file operations on it.

    DIR/audit-<first seq, 12 digits>.jsonl   segments, in chain order by their first seq
    DIR/HEAD                                 seq + hash of the newest durable record (+ MAC)
    DIR/TRAIL                                the trail's random id, named in anchored heads
    DIR/anchor.json                          where the chain starts after retention deleted files
    DIR/.lock                                flock'd by writers (exclusive) and verify (shared);
                                             its first 8 bytes count the segments writers started
    DIR/quarantine/                          torn tails cut off after a crash, kept as evidence

Naming a segment by its first sequence number lets a writer notice that another process rotated
with one stat() of the name that must follow its own last record, instead of listing the
directory on every append.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

SEGMENT_RE = re.compile(r"^audit-(\d{12})\.jsonl$")
HEAD_NAME = "HEAD"
TRAIL_NAME = "TRAIL"
ANCHOR_NAME = "anchor.json"
LOCK_NAME = ".lock"
QUARANTINE_DIR = "quarantine"
# HEAD is rewritten in place with one pwrite of a fixed size, so it never has stale bytes.
_HEAD_SIZE = 256
_json_str = json.encoder.encode_basestring_ascii
_CHUNK = 65536


def segment_name(first_seq: int) -> str:
    return f"audit-{first_seq:012d}.jsonl"


def list_segments(directory: str) -> list[tuple[int, str]]:
    """(first seq, file name) of every segment, in chain order."""
    found = []
    for name in os.listdir(directory):
        m = SEGMENT_RE.match(name)
        if m:
            found.append((int(m.group(1)), name))
    found.sort()
    return found


def fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# fdatasync still persists the size change an append makes, and skips the inode timestamps. The
# system call itself, not a wrapper: it is on every append's path (macOS has only fsync).
sync_data: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str
    mac: str | None = None  # keyed trails: keys.head_mac over trail, seq, hash
    kid: str | None = None  # keyed trails: keys.key_id of the key


def write_head(fd: int, head: Head) -> None:
    os.pwrite(fd, head_formatter(head.kid)(head.seq, head.hash, head.mac), 0)


def head_formatter(kid: str | None) -> Callable[[int, str, str | None], bytes]:
    """HEAD's bytes for one key id: the JSON json.dumps would give, padded to a fixed size.
    Formatted by hand, apart from the pwrite, so a writer can make HEAD before the record's fsync
    and only write it once the record is durable."""
    kid_json = "null" if kid is None else _json_str(kid)

    def line(seq: int, digest: str, mac: str | None) -> bytes:
        text = f'{{"seq":{seq:d},"hash":{_json_str(digest)}'
        if mac is not None:
            text = f'{text},"mac":{_json_str(mac)},"kid":{kid_json}'
        return f"{text + '}':<{_HEAD_SIZE - 1}}\n".encode()  # ASCII: _json_str escapes the rest

    return line


def new_trail_id() -> str:
    return uuid.uuid4().hex


def write_trail_id(directory: str, trail: str) -> None:
    """Create DIR/TRAIL durably (a new trail's last step: see AuditTrail's HEAD check)."""
    tmp = os.path.join(directory, f".{TRAIL_NAME}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.write(fd, trail.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, os.path.join(directory, TRAIL_NAME))
    fsync_dir(directory)


def read_trail_id(directory: str) -> str | None:
    try:
        with open(os.path.join(directory, TRAIL_NAME), "rb") as fh:
            text = fh.read(256).decode("ascii", "replace").strip()
    except FileNotFoundError:
        return None
    return text or None


def read_head(directory: str) -> Head | None:
    try:
        with open(os.path.join(directory, HEAD_NAME), "rb") as fh:
            raw = fh.read(_HEAD_SIZE * 2)
    except FileNotFoundError:
        return None
    if not raw.strip():  # created, not yet written: same as absent
        return None
    try:
        obj = json.loads(raw)
        mac, kid = obj.get("mac"), obj.get("kid")
        return Head(int(obj["seq"]), str(obj["hash"]), str(mac) if mac else None, str(kid) if kid else None)
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"HEAD is unreadable: {raw[:80]!r}") from None


@dataclass(frozen=True)
class Anchor:
    """The chain start left by retention: the first kept record and the record confirming it."""

    seq: int
    prev: str
    confirmed_by: int

    def to_json(self) -> dict[str, object]:
        return {"seq": self.seq, "prev": self.prev, "confirmed_by": self.confirmed_by}


def read_anchor(directory: str) -> Anchor | None:
    try:
        with open(os.path.join(directory, ANCHOR_NAME), "rb") as fh:
            obj = json.load(fh)
    except FileNotFoundError:
        return None
    try:
        return Anchor(int(obj["seq"]), str(obj["prev"]), int(obj["confirmed_by"]))
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{ANCHOR_NAME} is unreadable") from None


def write_anchor(directory: str, anchor: Anchor) -> None:
    """Replace anchor.json atomically and durably (temp file, fsync, rename, fsync dir)."""
    tmp = os.path.join(directory, f".{ANCHOR_NAME}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.write(fd, json.dumps(anchor.to_json(), sort_keys=True).encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, os.path.join(directory, ANCHOR_NAME))
    fsync_dir(directory)


def expired_prefix(directory: str, segments: list[tuple[int, str]], anchor: Anchor | None,
                   cutoff: float) -> list[str]:
    """Names of the oldest segments retention may delete: last modified before `cutoff`, or
    wholly before the anchor (left by a deletion a crash interrupted).

    Only a prefix goes, and never the newest segment, so what remains is one unbroken chain.
    """
    doomed: list[str] = []
    for (_, name), (next_first, _) in itertools.pairwise(segments):
        below_anchor = anchor is not None and next_first <= anchor.seq
        if below_anchor or os.stat(os.path.join(directory, name)).st_mtime < cutoff:
            doomed.append(name)
        else:
            break
    return doomed


def read_generation(lock_fd: int) -> int:
    """The segment counter in DIR/.lock (0 in a lock file no writer has counted in yet).

    A writer bumps it (flock held) whenever it starts a segment, so another writer learns that
    the chain moved on to a file it does not hold with one pread of an open descriptor, not a
    stat() of a path, per append. Appends to the segment it holds show in that file's size.
    """
    return int.from_bytes(generation_bytes(lock_fd).ljust(8, b"\0"), "little")


def generation_bytes(lock_fd: int) -> bytes:
    """The segment counter as stored: comparing these saves decoding it on every append."""
    return os.pread(lock_fd, 8, 0)


def write_generation(lock_fd: int, value: int) -> bytes:
    """Store the segment counter; returns its bytes as `generation_bytes` will read them."""
    raw = (value % (1 << 64)).to_bytes(8, "little")
    os.pwrite(lock_fd, raw, 0)
    return raw


@contextlib.contextmanager
def dir_lock(lock_fd: int, *, shared: bool = False) -> Iterator[None]:
    fcntl.flock(lock_fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)


def read_first_line(path: str) -> bytes | None:
    """The first complete line of a file, or None when it has none."""
    with open(path, "rb") as fh:
        line = fh.readline()
    return line if line.endswith(b"\n") else None


def tail_state(fd: int) -> tuple[int, bytes | None]:
    """(end of the last complete line, that line) for an open segment.

    The end offset is where a torn tail, if any, starts; the line is None when the file holds
    no complete line.
    """
    size = os.fstat(fd).st_size
    # Find the newline that ends the last complete line (scanning back from the end).
    end = -1
    pos = size
    while pos > 0 and end < 0:
        start = max(0, pos - _CHUNK)
        chunk = os.pread(fd, pos - start, start)
        idx = chunk.rfind(b"\n")
        if idx >= 0:
            end = start + idx + 1
        pos = start
    if end < 0:
        return 0, None
    # Then the newline before it, which starts that line.
    begin = 0
    pos = end - 1
    while pos > 0:
        start = max(0, pos - _CHUNK)
        chunk = os.pread(fd, pos - start, start)
        idx = chunk.rfind(b"\n")
        if idx >= 0:
            begin = start + idx + 1
            break
        pos = start
    return end, os.pread(fd, end - begin, begin)


@dataclass(frozen=True)
class TornTail:
    """Bytes after the last complete line of a segment: a write cut short by a crash."""

    file: str
    offset: int
    length: int
    quarantined_to: str | None = None

    def describe(self) -> str:
        where = f" (moved to {self.quarantined_to})" if self.quarantined_to else ""
        return f"{self.file}: torn last line, {self.length} bytes at offset {self.offset}{where}"


def cut_torn_tail(directory: str, name: str, fd: int) -> TornTail | None:
    """Move an incomplete last line of a segment to quarantine/ and truncate it away.

    Only bytes after the last newline are touched, so every complete record stays.
    """
    size = os.fstat(fd).st_size
    end, _ = tail_state(fd)
    if end == size:
        return None
    torn = os.pread(fd, size - end, end)
    qdir = os.path.join(directory, QUARANTINE_DIR)
    os.makedirs(qdir, exist_ok=True)
    qpath = os.path.join(qdir, f"{name}.{end}.torn")
    qfd = os.open(qpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.write(qfd, torn)
        os.fsync(qfd)
    finally:
        os.close(qfd)
    fsync_dir(qdir)
    # Evidence is durable before the segment loses it.
    os.ftruncate(fd, end)
    os.fsync(fd)
    return TornTail(name, end, len(torn), qpath)


def iter_lines(path: str) -> Iterator[tuple[int, bytes, bool]]:
    """(line number from 1, line bytes without newline, complete?) for every line of a file."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            complete = raw.endswith(b"\n")
            yield lineno, raw[:-1] if complete else raw, complete
