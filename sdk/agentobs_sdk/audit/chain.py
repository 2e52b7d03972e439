"""The record format and hash chain of the audit trail.

A record is one JSON object per line. Its `hash` is SHA-256 over the canonical JSON (sorted keys,
no whitespace, UTF-8) of every other field, `prev` included, so each record commits to the whole
history before it; a keyed trail's records say `"alg": "hmac-sha256"` and their `hash` is
HMAC-SHA256 with the audit key over the same bytes (`alg` included, so it cannot be stripped to
downgrade a record). The first record of a trail links to `GENESIS`. Writers and the verifier both
use these functions; nothing else defines what a valid record is.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any
from uuid import UUID

GENESIS = "0" * 64
REQUIRED = ("seq", "ts", "action", "prev", "hash")
ALG_HMAC = "hmac-sha256"
RETENTION_ACTION = "audit.retention"
_SHA256_BLOCK = 64
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


class AuditError(Exception):
    """The trail cannot be written or read as asked (not an integrity finding; see verify)."""


def canonical(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def record_hash(record: Mapping[str, Any], key: bytes | None = None) -> str:
    """SHA-256 hex (HMAC-SHA256 with `key`) of the canonical form of `record` without `hash`."""
    body = {k: v for k, v in record.items() if k != "hash"}
    if key is None:
        return hashlib.sha256(canonical(body)).hexdigest()
    return hmac.new(key, canonical(body), hashlib.sha256).hexdigest()


def digester(key: bytes | None) -> Callable[[bytes], str]:
    """`record_hash` over bytes that are already canonical (a writer's hot path)."""
    if key is None:
        sha256 = hashlib.sha256
        return lambda data: sha256(data).hexdigest()
    return hmac_sha256(key)


def hmac_sha256(key: bytes, prefix: bytes = b"") -> Callable[[bytes], str]:
    """HMAC-SHA256 hex of `prefix + data` under `key`, as `hmac.new` computes it (RFC 2104).

    A writer takes one or two MACs per append. `hmac.HMAC.copy()` is Python code that builds a
    new object each time; copying the two SHA-256 states keyed once here (and fed `prefix`) costs
    about half as much.
    """
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_SHA256_BLOCK, b"\0")
    inner = hashlib.sha256(key.translate(_IPAD))
    inner.update(prefix)
    outer = hashlib.sha256(key.translate(_OPAD))
    inner_copy, outer_copy = inner.copy, outer.copy

    def mac(data: bytes) -> str:
        h = inner_copy()
        h.update(data)
        o = outer_copy()
        o.update(h.digest())
        return o.hexdigest()

    return mac


def seal(body: dict[str, Any], *, seq: int, prev: str, key: bytes | None = None) -> dict[str, Any]:
    """Place `body` in the chain after `prev` and add its hash (a MAC when keyed)."""
    record = dict(body)
    record["seq"] = seq
    record["prev"] = prev
    if key is not None:
        record["alg"] = ALG_HMAC
    record["hash"] = record_hash(record, key)
    return record


def encode(record: Mapping[str, Any]) -> bytes:
    # json escapes control characters, so a record can never contain a raw newline.
    return canonical(record) + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """Parse one line into a record, or raise ValueError saying what is wrong with it."""
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise ValueError(f"missing fields {missing}")
    if not isinstance(obj["seq"], int) or isinstance(obj["seq"], bool) or obj["seq"] < 1:
        raise ValueError(f"bad seq {obj['seq']!r}")
    if not isinstance(obj["hash"], str) or not isinstance(obj["prev"], str):
        raise ValueError("hash/prev are not strings")
    return obj


_second_prefix: tuple[int, str] = (-1, "")


def now_ts(epoch: float) -> str:
    """`epoch` as RFC 3339 UTC with microseconds, exactly as datetime formats it.

    Appends take one timestamp each under the writer's lock: the date and time of day are
    formatted once per second, the microseconds (rounded half-even, as datetime does) per call.
    """
    global _second_prefix
    second = int(epoch)  # truncates, like math.modf; the difference is exact in binary floating point
    micros = round((epoch - second) * 1e6)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    if micros < 0 or second < 0:  # before 1970: not worth a fast path
        return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    cached = _second_prefix
    if cached[0] != second:
        cached = (second, datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")[:-6])
        _second_prefix = cached
    return f"{cached[1]}.{micros:06d}Z"


def parse_ts(value: str) -> datetime:
    """RFC 3339 / ISO 8601 timestamp; naive values are taken as UTC."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def normalise_details(details: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`details` as plain JSON values: what is hashed must be exactly what is read back later.

    Common values JSON has no type for are stored in their natural text, as a reader or a `jq`
    filter would look them up: UUID, Decimal and paths as `str()`, datetime, date and time as ISO
    8601, an Enum as its value (then normalised too); anything else as its repr. Non-finite
    floats are refused because a reader could not reproduce them. The result holds only dicts
    with str keys, lists, str, int, finite float, bool and None, so its canonical JSON reads back
    as an equal value. (Records written before UUIDs and the like got their text form hold their
    repr; they are bytes like any other and verify as written.)
    """
    if details is None:
        return None
    if type(details) is dict:  # the common case, a flat dict of str keys and plain values: one pass
        for k, v in details.items():
            if type(k) is not str or type(v) not in _FLAT:
                break
        else:
            return dict(details)
    if not isinstance(details, Mapping):
        raise ValueError("audit details must be a mapping")
    result: dict[str, Any] = _plain(details)
    return result


_FLAT = frozenset({str, int, bool, type(None)})  # floats need the finiteness check
# Stored as str(): the text their own constructors parse back (UUID(s), Decimal(s), Path(s)).
_AS_STR = (UUID, Decimal, PurePath)


def _plain(value: Any, depth: int = 0) -> Any:
    if type(value) in _FLAT:
        return value
    if isinstance(value, Enum):  # before str/int: a StrEnum or IntEnum member is its value
        return _plain(value.value, depth + 1)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"audit details must be finite JSON: {value!r} is not")
    if isinstance(value, bool | int | float | str):
        return value
    if depth > 32:
        raise ValueError("audit details nest too deeply (or refer to themselves)")
    if isinstance(value, Mapping):
        return {k if type(k) is str else _key(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, _AS_STR):
        return str(value)
    return repr(value)


def _key(key: Any) -> str:
    """A details key that is not a str: its natural text as for values; str() (UUID, Decimal,
    path, number, tuple) otherwise, as before."""
    if isinstance(key, Enum):
        key = key.value
    if isinstance(key, datetime | date | time):
        return key.isoformat()
    return str(key)


def field_text(name: str, value: Any) -> str:
    """A record's `agent`, `user`, `result` or `resource` given as something other than a str.

    Queries (`query(user=...)`, `agentobs-audit query --user 123`) compare these as strings, so a
    numeric user id stored as the JSON number 123 would never be found: numbers (not bools),
    UUIDs, Decimals and Enums of those are stored as their text. Anything else (a bool, a dict, an
    object whose repr is all it has) is most likely a bug at the call site, and a record that
    cannot be looked up is worse than an error there: TypeError."""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"audit record field {name!r} must be finite, not {value!r}")
    if isinstance(value, int | float | UUID | Decimal) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"audit record field {name!r} must be a str (a number or UUID is stored as its text), "
                    f"not {type(value).__name__}")
