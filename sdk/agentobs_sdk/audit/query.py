"""Reading records back: iterate a trail in chain order and filter it.

Filters match exactly on agent, agent_id, action, user and result (a number stored by an older
writer matches its text), and on the record timestamp
with `since <= ts < until`; a time is a datetime, an ISO 8601 string or an age before now
(`90s`, `15m`, `2h`, `7d`, `1w`), the same forms `agentobs-audit query --since` takes. `agent`
matches either name a record carries: the agent (the `agent_run` name) or the agent instance id
(AGENTOBS_AGENT_ID, one per pod). Lines that are not valid records (a torn tail, tampering) are
skipped here; `verify()` is the place that reports them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from . import store
from .chain import AuditError, decode, parse_ts

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def iter_records(directory: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every readable record of the trail, oldest segment first, in file order."""
    path = os.fspath(directory)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no audit directory at {path}")
    segments = store.list_segments(path)
    if not segments and store.read_trail_id(path) is None:
        # A typo'd or parent directory (`/var/lib/agentobs` for `.../audit`): "no record matched"
        # would read as an answer. Segments without TRAIL are still read (verify says what is
        # wrong with them).
        raise AuditError(f"{path} is not an audit trail (it has no {store.TRAIL_NAME} file)")
    for _, name in segments:
        for _, raw, complete in store.iter_lines(os.path.join(path, name)):
            if not complete:
                continue
            try:
                yield decode(raw)
            except ValueError:
                continue


def parse_when(value: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 time, or an age before `now` (`15m`, `2h`, `7d`); ValueError names both forms.

    Shared by `query()` and the CLI, so `since="2h"` means the same in Python as `--since 2h`.
    """
    m = _AGE.match(value.strip())
    if m:
        now = now or datetime.now(UTC)
        return now - timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    try:
        return parse_ts(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is neither an ISO 8601 time nor an age like 15m, 2h, 7d") from None


def _as_datetime(value: datetime | str | None, now: datetime) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_when(value, now)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _matches(stored: Any, wanted: str) -> bool:
    # Records written before numbers were stored as text (chain.field_text) may hold user 123 as
    # a JSON number; `--user 123` finds them too.
    return stored == wanted or (isinstance(stored, int | float) and not isinstance(stored, bool)
                                and str(stored) == wanted)


def query(
    directory: str | os.PathLike[str],
    *,
    agent: str | None = None,
    agent_id: str | None = None,
    action: str | None = None,
    user: str | None = None,
    result: str | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Records matching every given filter, in chain order (at most `limit` of them: the oldest).

    ValueError when `since` is not before `until` (a window nothing can match)."""
    now = datetime.now(UTC)  # one "now" for both ends, so since="2h", until="1h" is one hour wide
    start, end = _as_datetime(since, now), _as_datetime(until, now)
    if start is not None and end is not None and start >= end:
        # Nothing can match; saying so beats an empty answer that reads as "no such records".
        raise ValueError(f"the time window is empty: since ({start.isoformat()}) is not before until "
                         f"({end.isoformat()}); an age counts back from now, so --since 3h --until 2h "
                         "is the hour that ended two hours ago")
    wanted = {k: v for k, v in (("agent_id", agent_id), ("action", action), ("user", user),
                                ("result", result)) if v is not None}
    found: list[dict[str, Any]] = []
    if limit is not None and limit <= 0:
        return found
    for rec in iter_records(directory):
        if any(not _matches(rec.get(k), v) for k, v in wanted.items()):
            continue
        if agent is not None and agent not in (rec.get("agent"), rec.get("agent_id")):
            continue
        if start is not None or end is not None:
            try:
                ts = parse_ts(str(rec["ts"]))
            except ValueError:
                continue
            if (start is not None and ts < start) or (end is not None and ts >= end):
                continue
        found.append(rec)
        if limit is not None and len(found) >= limit:
            break
    return found
