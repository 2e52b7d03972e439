"""Records encoded before the writer's lock: everything but the chain fields.

Most of an append's CPU goes into turning a record into canonical JSON (chain.py). The fields a
caller gives are known before the record's place in the chain is, so the appending thread encodes
them outside the lock (in group mode, while another thread's fsync runs); under the lock only
`seq`, `ts`, `prev` and `hash` are filled in and the MAC is taken. Canonical JSON sorts keys, so
a draft is two pieces: the fields that sort before `hash`, as final bytes, and the fields after it
(`prev`, `seq` and `ts` among them) as a %-template. The hashed form is the two joined; the line
has `"hash":...` between them. The result is byte for byte `chain.encode(chain.seal(...))` (the
tests hold it to that), so readers and `verify` see no difference.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .chain import ALG_HMAC

# Filled in under the lock; every other field sorts before, between or after them.
CHAIN_FIELDS = ("hash", "prev", "seq", "ts")
_CHAIN_SLOTS = {"prev": "%s", "seq": "%d", "ts": "%s"}
# Splits the formatted text into its two pieces. JSON escapes every control character in keys and
# values, so the text has no other NUL.
_SPLIT = "\0"
_new = object.__new__  # a Draft without __init__, which takes a body
_encode_str: Callable[[str], str] = json.encoder.encode_basestring
_encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
try:
    # What _encoder.encode runs, made once: encode() builds it anew on every call. Without the
    # circular-reference markers, which bodies (normalised details, bounded in depth) never need.
    from _json import make_encoder as _make_encoder
except ImportError:  # pragma: no cover - a Python without the C accelerator
    _encode_value: Callable[[Any], str] = _encoder.encode
else:
    _c_encoder = _make_encoder(None, _encoder.default, _encode_str, None, ":", ",", True, False, False)

    def _encode_value(value: Any) -> str:
        return "".join(_c_encoder(value, 0))


def _value(value: Any) -> str:
    if value is None:
        return "null"
    if type(value) is str:
        return _encode_str(value)
    return _encode_value(value)  # chain.canonical's settings


class Layout:
    """Where the fields of records with one set of body fields go in their canonical JSON."""

    __slots__ = ("_escape", "_template")

    def __init__(self, names: tuple[str, ...], fixed: tuple[tuple[str, Any], ...] = ()) -> None:
        """`names`: the fields whose values `draft` is given; `fixed`: (name, value) of fields
        every record has with the same value, encoded here once."""
        clash = [k for k in CHAIN_FIELDS if k in names or k in dict(fixed)]
        if clash:
            raise ValueError(f"an audit record body cannot set {clash}")
        slots = {name: f"{{{i}}}" for i, name in enumerate(names)} | _CHAIN_SLOTS
        for name, value in fixed:
            text = _value(value).replace("{", "{{").replace("}", "}}")
            slots[name] = text.replace("%", "%%") if name > "hash" else text

        def item(key: str, percent: bool) -> str:
            text = f"{_encode_str(key)}:"
            if percent:
                text = text.replace("%", "%%")
            return text.replace("{", "{{").replace("}", "}}") + slots[key]

        before = [item(k, False) for k in sorted(slots) if k < "hash"]
        after = [item(k, True) for k in sorted(slots) if k > "hash"]
        # str.format template; the part after _SPLIT becomes the %-template for the chain fields.
        self._template = "{{" + "".join(f"{i}," for i in before) + _SPLIT + ",".join(after) + "}}"
        # Values that land in the %-template must have their % doubled.
        self._escape = tuple(i for i, name in enumerate(names) if name > "hash")

    def draft(self, values: Iterable[Any]) -> Draft:
        """The draft of a record whose body fields, in this layout's order, have `values`."""
        texts = [_encode_str(v) if type(v) is str else _value(v) for v in values]
        for i in self._escape:
            texts[i] = texts[i].replace("%", "%%")
        draft = _new(Draft)
        draft._prefix, _, draft._rest = self._template.format(*texts).encode("utf-8").partition(b"\0")
        return draft


@functools.lru_cache(maxsize=64)
def layout(names: tuple[str, ...], fixed: tuple[tuple[str, Any], ...] = ()) -> Layout:
    return Layout(names, fixed)


class Draft:
    """A record body in canonical JSON, with slots for the chain fields."""

    __slots__ = ("_prefix", "_rest")

    _prefix: bytes  # `{` and the fields before `hash`, each followed by a comma
    _rest: bytes  # %-template of the fields after `hash`, and the closing `}`

    def __init__(self, body: Mapping[str, Any], *, keyed: bool) -> None:
        if keyed:
            body = {**body, "alg": ALG_HMAC}
        made = layout(tuple(body)).draft(body.values())
        self._prefix, self._rest = made._prefix, made._rest

    def seal(self, seq: int, ts: str, prev: str, digest: Callable[[bytes], str]) -> tuple[bytes, str]:
        """(the record's line, its hash) at `seq` after `prev`; `digest` is chain.digester(key)."""
        rest = self._rest % (_encode_str(prev).encode("utf-8"), seq, _encode_str(ts).encode("utf-8"))
        digest_of = digest(self._prefix + rest)
        # A digest is hex: as a JSON string it only needs its quotes.
        return b'%b"hash":"%b",%b\n' % (self._prefix, digest_of.encode("ascii"), rest), digest_of
