"""Retention: deleting whole segments older than N days without breaking verifiability.

Only a prefix of segments goes, never the newest; before anything is deleted the chain gets a
record saying what goes and where the chain now starts, and anchor.json repeats it (confirmed by
that record, so a forged anchor.json cannot hide a deletion). A crash between the two steps is
finished by the next pass.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from typing import Any

from . import store
from .chain import RETENTION_ACTION, decode

log = logging.getLogger("agentobs_sdk.audit")


def expire_segments(directory: str, retention_days: float, now: float,
                    write_record: Callable[[dict[str, Any]], int]) -> list[str]:
    """Delete the expired segments (flock held); `write_record` appends a body, returns its seq.

    Repeats while a pass deletes something: the retention record can itself start a new segment
    (the newest one was past its rotation age, as after a restart days later), and the segment it
    left was spared only as the newest. Each pass deletes at least one file, so this ends.
    """
    deleted: list[str] = []
    while doomed := _expire_once(directory, retention_days, now, write_record):
        deleted += doomed
    return deleted


def _expire_once(directory: str, retention_days: float, now: float,
                 write_record: Callable[[dict[str, Any]], int]) -> list[str]:
    segments = store.list_segments(directory)
    anchor = store.read_anchor(directory)
    doomed = store.expired_prefix(directory, segments, anchor, now - retention_days * 86400.0)
    if not doomed:
        return []
    kept = segments[len(doomed)][1]
    line = store.read_first_line(os.path.join(directory, kept))
    if line is None:
        return []
    first = decode(line)
    if anchor is None or anchor.seq != first["seq"]:
        seq = write_record({
            "agent": "agentobs-audit",
            "action": RETENTION_ACTION,
            "user": None,
            "result": "ok",
            "resource": directory,
            "details": {"deleted": doomed, "kept_from_seq": first["seq"],
                        "kept_from_prev": first["prev"], "retention_days": retention_days},
        })
        store.write_anchor(directory, store.Anchor(first["seq"], first["prev"], seq))
    for name in doomed:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, name))
    store.fsync_dir(directory)
    log.info("agentobs audit: retention deleted %d segment(s) from %s", len(doomed), directory)
    return doomed
