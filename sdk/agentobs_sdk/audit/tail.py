"""Finding where the chain ends, as a writer needs to before it appends.

The tail is the last complete record of the newest segment that has one. On the way there a
torn last line (a crash mid-append) is moved to quarantine/ and cut off, and empty segments a
crash left right after rotation are either reused (when correctly named) or removed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from . import store
from .chain import GENESIS, AuditError, decode


@dataclass
class Tail:
    seq: int
    hash: str
    segment: str | None  # the segment to keep appending to; None: start a new one
    repairs: list[store.TornTail] = field(default_factory=list)
    record: dict[str, Any] | None = None  # the last record itself (None: the chain is empty)


def _repaired_last_line(directory: str, name: str, repairs: list[store.TornTail]) -> bytes | None:
    fd = os.open(os.path.join(directory, name), os.O_RDWR | os.O_APPEND)
    try:
        torn = store.cut_torn_tail(directory, name, fd)
        if torn is not None:
            repairs.append(torn)
        return store.tail_state(fd)[1]
    finally:
        os.close(fd)


def locate_tail(directory: str) -> Tail:
    """The chain tail of `directory`, repairing crash leftovers (call with the flock held)."""
    anchor = store.read_anchor(directory)
    tail = Tail(anchor.seq - 1, anchor.prev, None) if anchor else Tail(0, GENESIS, None)
    empties: list[str] = []  # newest segments without a complete record
    for _, name in reversed(store.list_segments(directory)):
        line = _repaired_last_line(directory, name, tail.repairs)
        if line is None:
            empties.append(name)
            continue
        try:
            record = decode(line)
        except ValueError as exc:
            raise AuditError(
                f"cannot extend the chain: the last record of {name} is unreadable ({exc}); "
                "run `agentobs-audit verify`"
            ) from None
        tail.seq, tail.hash, tail.segment, tail.record = record["seq"], record["hash"], name, record
        break
    expected = store.segment_name(tail.seq + 1)
    for name in empties:
        if name == expected:
            tail.segment = name
        else:  # empty and misnamed: nothing to keep, and it would confuse the order
            os.unlink(os.path.join(directory, name))
    return tail
