"""Counting an exception once in agentobs_agent_errors_total, however many helpers it crosses.

The innermost helper an exception leaves counts it and marks it; the enclosing ones see the mark.
"""

from __future__ import annotations

import collections

# Exceptions already counted in agentobs_agent_errors_total. An attribute on the exception is the
# normal mark; this bounded set covers the rare exception type that refuses new attributes.
_COUNTED_ATTR = "_agentobs_counted"
_counted_fallback: collections.OrderedDict[int, BaseException] = collections.OrderedDict()
_COUNTED_FALLBACK_MAX = 256


def _seen(exc: BaseException) -> bool:
    return bool(getattr(exc, _COUNTED_ATTR, False)) or id(exc) in _counted_fallback


def _mark_seen(exc: BaseException) -> None:
    try:
        setattr(exc, _COUNTED_ATTR, True)
    except (AttributeError, TypeError):
        # Keeping a reference pins the id, so it cannot be reused by another exception meanwhile.
        _counted_fallback[id(exc)] = exc
        while len(_counted_fallback) > _COUNTED_FALLBACK_MAX:
            _counted_fallback.popitem(last=False)


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


def first_sighting(exc: BaseException) -> bool:
    """True the first time an exception is seen by any helper; marks it seen.

    An exception group (asyncio.TaskGroup, except*) is a new object wrapping failures that the
    helpers inside the tasks already counted where they happened: counting it again would make
    one failed tool two errors. It counts only when some failure in it was not seen yet, and then
    its failures are marked, so unwrapping them later does not count them again."""
    if _seen(exc):
        return False
    _mark_seen(exc)
    if not isinstance(exc, BaseExceptionGroup):
        return True
    unseen = [leaf for leaf in leaves(exc) if not _seen(leaf)]
    for leaf in unseen:
        _mark_seen(leaf)
    return bool(unseen)
