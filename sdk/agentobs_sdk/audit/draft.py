"""Records encoded before the writer's lock: everything but the chain fields.

Most of an append's CPU goes into turning a record into canonical JSON (chain.py). The fields a
caller gives are known before the record's place in the chain is, so the appending thread encodes
them outside the lock (in group mode, while another thread's fsync runs); under the lock only
`seq`, `ts`, `prev` and `hash` are filled in and the MAC is taken. Canonical JSON sorts keys, so
the chain fields fall between runs of caller fields at fixed places; a draft keeps those runs as
bytes. The result is byte for byte `chain.encode(chain.seal(...))` (the tests hold it to that), so
readers and `verify` see no difference.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from .chain import ALG_HMAC

# Filled in under the lock; every other field sorts before, between or after them.
CHAIN_FIELDS = ("hash", "prev", "seq", "ts")
_CHAIN_SLOTS = {"hash": "%s", "prev": "%s", "seq": "%d", "ts": "%s"}
_encode_str: Callable[[str], str] = json.encoder.encode_basestring
_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _value(value: Any) -> str:
    if value is None:
        return "null"
    if type(value) is str:
        text: str = _encode_str(value)
    else:
        text = _encoder.encode(value)  # chain.canonical's settings
    return text.replace("%", "%%")  # the draft is a %-template for the chain fields


@functools.lru_cache(maxsize=64)
def _templates(names: tuple[str, ...]) -> tuple[str, str]:
    """(hashed form, line) of a record whose body has fields `names`, as str.format templates
    ({i}: the i-th field's JSON) that leave %-conversions for the chain fields."""
    clash = [k for k in CHAIN_FIELDS if k in names]
    if clash:
        raise ValueError(f"an audit record body cannot set {clash}")
    slots = {name: f"{{{i}}}" for i, name in enumerate(names)} | _CHAIN_SLOTS

    def form(skip: str | None) -> str:
        items = [f"{_encode_str(k)}:".replace("%", "%%").replace("{", "{{").replace("}", "}}") + slots[k]
                 for k in sorted(slots) if k != skip]
        return "{{" + ",".join(items) + "}}"

    return form("hash"), form(None) + "\n"


class Draft:
    """A record body in canonical JSON, with slots for the chain fields."""

    __slots__ = ("_hashed", "_line")

    def __init__(self, body: Mapping[str, Any], *, keyed: bool) -> None:
        if keyed:
            body = {**body, "alg": ALG_HMAC}
        hashed, line = _templates(tuple(body))
        values = [_value(v) for v in body.values()]
        self._hashed = hashed.format(*values).encode("utf-8")
        self._line = line.format(*values).encode("utf-8")

    def seal(self, seq: int, ts: str, prev: str, digest: Callable[[bytes], str]) -> tuple[bytes, str]:
        """(the record's line, its hash) at `seq` after `prev`; `digest` is chain.digester(key)."""
        prev_json, ts_json = _encode_str(prev).encode("utf-8"), _encode_str(ts).encode("utf-8")
        digest_of = digest(self._hashed % (prev_json, seq, ts_json))
        return self._line % (_encode_str(digest_of).encode("utf-8"), prev_json, seq, ts_json), digest_of
