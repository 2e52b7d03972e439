"""Audit key rotation: one chain across keys, and checking each record with the key in force.

A writer given its current key and the previous one (keys.previous_key_for) that finds the
trail's last record MACed with the previous key appends an `audit.key_rotation` record naming
both key ids (never key material), MACed with the OLD key: only a holder of the key in force can
hand the chain over. Records after it are MACed with the new key, and HEAD names the new key.

`verify` given several keys walks the chain in order: the key in force starts as the one the
first rotation record hands over from (without rotations, the one HEAD names), each record must be
MACed with the key in force, and a rotation record switches it to the key it names. A rotation
record MACed with any other key, records after it MACed with another key, and a HEAD naming
another key than the last one in force are errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .keys import key_id

ROTATION_ACTION = "audit.key_rotation"


def rotation_body(agent_id: str | None, old: bytes, new: bytes) -> dict[str, Any]:
    """The body of the record that hands the chain from key `old` to key `new`."""
    return {"action": ROTATION_ACTION, "agent_id": agent_id,
            "details": {"from_kid": key_id(old), "to_kid": key_id(new)}}


def rotation_of(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """(from_kid, to_kid) of a rotation record; ("", "") for one that does not name both."""
    if record.get("action") != ROTATION_ACTION:
        return None
    details = record.get("details")
    if not isinstance(details, dict):
        return ("", "")
    old, new = details.get("from_kid"), details.get("to_kid")
    return (old, new) if isinstance(old, str) and isinstance(new, str) else ("", "")


def keyring(keys: Sequence[bytes]) -> dict[str, bytes]:
    """The keys by key id (a key given twice counts once)."""
    for key in keys:
        if not isinstance(key, bytes):
            # A path passed as a key would otherwise fail deep inside hmac.
            raise TypeError(f"a key must be the audit key's bytes, not {type(key).__name__}: read a "
                            "key file with agentobs_sdk.audit.load_key(path)")
    return {key_id(k): k for k in keys}


class KeyedEntry(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def file(self) -> str: ...
    @property
    def line(self) -> int: ...
    @property
    def macs(self) -> frozenset[str] | None: ...  # ids of the given keys its MAC matches; None: unkeyed
    @property
    def rotation(self) -> tuple[str, str] | None: ...


Finding = tuple[str, str, KeyedEntry | None]  # (kind, message, where)


def check_keys(entries: Sequence[KeyedEntry], kids: frozenset[str],
               head_kid: str | None) -> tuple[list[Finding], int, str | None]:
    """Check each keyed record (in chain order) with the key in force at its place.

    Returns the errors, the number of records left unchecked because their key was not given,
    and the id of the key in force at the end of the chain."""
    keyed = [e for e in entries if e.macs is not None]
    first_rotation = next((e.rotation for e in keyed if e.rotation is not None), None)
    in_force = first_rotation[0] if first_rotation is not None else head_kid
    if in_force is None:  # no rotation, and HEAD names no key: HEAD is reported as damaged
        in_force = next((min(e.macs) for e in keyed if e.macs), min(kids) if len(kids) == 1 else None)
    findings: list[Finding] = []
    unchecked = 0
    for e in keyed:
        macs = e.macs or frozenset()
        if in_force is None or in_force not in kids:
            unchecked += 1
        elif in_force not in macs:
            if e.rotation is not None:
                findings.append(("rotation", f"key rotation record is not MACed with the key in force "
                                 f"(id {in_force}): it was forged or modified", e))
            elif macs:
                findings.append(("key", f"record is MACed with key id {sorted(macs)[0]}, not with the key in "
                                 f"force at this point of the chain (id {in_force})", e))
            else:
                findings.append(("edited", "content does not match the record's hash (the record was "
                                 "modified)", e))
        if e.rotation is not None:
            old, new = e.rotation
            if not old or not new:
                findings.append(("rotation", "key rotation record does not name the key ids it rotates "
                                 "from and to", e))
            elif in_force is not None and old != in_force:
                findings.append(("rotation", f"key rotation record rotates from key id {old}, but the key "
                                 f"in force is id {in_force}", e))
            in_force = new or in_force
    if head_kid is not None and in_force is not None and head_kid != in_force:
        findings.append(("head", f"HEAD names key id {head_kid}, but the key in force at the end of the "
                         f"chain is id {in_force} (a key rotation record was removed or added)", None))
    return findings, unchecked, in_force
