"""Chain heads anchored outside the pod, and reading them back.

A writer announces the head of its chain (trail id, seq, hash) when it opens, at most every
`anchor_interval` seconds while it appends, and when it closes, as one JSON log line on stderr
in the shape of the SDK's JSON logs. The log pipeline ships that line off the node (to
Elasticsearch), out of reach of whoever can later edit the files in the pod. `verify(...,
anchors=...)` then checks a local trail against those copies: every anchored record must still be
there with the same hash, so dropping the newest records and rewriting HEAD, or re-hashing a
rewritten history, is found even without the key.

`parse_anchor_lines` accepts what one gets out of the pipeline: raw log lines (JSON, or text with
the JSON inside), Elasticsearch hits (`_source`), or bare head objects, one per line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("agentobs_sdk.audit")

HEAD_FIELD = "audit_head"
MESSAGE = "agentobs audit chain head"
# The `logger` field of a head line. The stack's Fluentd routes lines of this logger to the audit
# index (kept for the audit retention) and keeps them out of the logs index; under the SDK's own
# logger name the heads would land among ordinary logs, expire with them, and leave the audit
# index, where an auditor looks for them, empty.
LOGGER = "agentobs.audit"


@dataclass(frozen=True)
class AnchoredHead:
    trail: str
    seq: int
    hash: str
    agent_id: str | None = None
    ts: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"trail": self.trail, "seq": self.seq, "hash": self.hash, "agent_id": self.agent_id,
                "ts": self.ts}


def stderr_sink(head: AnchoredHead) -> None:
    """The default sink: one JSON log line on stderr, which the container log shipping carries."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    line = json.dumps({"ts": now, "level": "INFO", "logger": LOGGER, "message": MESSAGE,
                       HEAD_FIELD: head.to_json()}, separators=(",", ":"))
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed stderr must not break an append
        pass


class Announcer:
    """Sends heads to a sink: always when forced (open, close), else at most every `seconds`."""

    def __init__(self, sink: Callable[[AnchoredHead], None] | None, seconds: float | None) -> None:
        self._sink = sink
        self._seconds = seconds
        self._last = 0.0
        # Whether announce() without force can do anything: appends skip the call when not.
        self.periodic = sink is not None and seconds is not None

    def announce(self, head: Callable[[], AnchoredHead], *, force: bool = False) -> None:
        if self._sink is None or (not force and self._seconds is None):
            return
        now = time.monotonic()
        if not force and now - self._last < (self._seconds or 0.0):
            return
        self._last = now
        try:
            self._sink(head())
        except Exception:  # the append is durable; a failing sink must not turn it into an error
            log.exception("agentobs audit: announcing the chain head failed")


def _head_from(obj: Any) -> AnchoredHead | None:
    if not isinstance(obj, Mapping):
        return None
    if HEAD_FIELD in obj:
        return _head_from(obj[HEAD_FIELD])
    if "_source" in obj:
        return _head_from(obj["_source"])
    try:
        seq, digest, trail = obj["seq"], obj["hash"], obj["trail"]
    except KeyError:
        return None
    if not (isinstance(seq, int) and isinstance(digest, str) and isinstance(trail, str)):
        return None
    agent = obj.get("agent_id")
    ts = obj.get("ts")
    return AnchoredHead(trail, seq, digest, agent if isinstance(agent, str) else None,
                        ts if isinstance(ts, str) else None)


def parse_anchor_lines(lines: Iterable[str]) -> list[AnchoredHead]:
    """Every anchored head found in `lines`; lines without one are skipped."""
    heads: list[AnchoredHead] = []
    for line in lines:
        start = line.find("{")
        if start < 0 or (HEAD_FIELD not in line and '"trail"' not in line):
            continue
        try:
            obj = json.loads(line[start:])
        except ValueError:
            continue
        hits = obj.get("hits", {}).get("hits") if isinstance(obj, dict) else None
        for item in hits if isinstance(hits, list) else [obj]:
            head = _head_from(item)
            if head is not None:
                heads.append(head)
    return heads
