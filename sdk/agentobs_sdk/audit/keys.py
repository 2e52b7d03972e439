"""The audit key: loading it, naming it, and the MACs made with it.

With a key, a record's `hash` is HMAC-SHA256 over its canonical form (chain.py) and HEAD carries
its own MAC, so rewriting records or HEAD needs the key, not just write access to the files. The
key comes from a file (the webhook mounts the per-resource Secret read-only and points
AGENTOBS_AUDIT_KEY_FILE at it). It never appears in records, logs or errors; only its key id (a
hash of it) does, so a verifier can tell "wrong key" from "tampered record".
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable

from .chain import AuditError, hmac_sha256

log = logging.getLogger("agentobs_sdk.audit")

MIN_KEY_BYTES = 16
PREVIOUS_KEY_NAME = "previous-key"


def load_key(path: str) -> bytes:
    """The key in `path` (surrounding whitespace removed); AuditError when missing or too short."""
    try:
        with open(path, "rb") as fh:
            key = fh.read().strip()
    except OSError as exc:
        raise AuditError(f"cannot read the audit key file {path}: {exc.strerror or exc}") from None
    if len(key) < MIN_KEY_BYTES:
        raise AuditError(f"the audit key file {path} holds {len(key)} bytes; at least {MIN_KEY_BYTES} are needed")
    return key


def key_id(key: bytes) -> str:
    """A public name for the key: 16 hex digits of a hash, useless for forging MACs."""
    return hashlib.sha256(b"agentobs-audit-key-id\x00" + key).hexdigest()[:16]


def head_mac(key: bytes, trail: str, seq: int, record_hash: str) -> str:
    """The MAC HEAD carries: binds the trail, the newest durable seq and that record's hash."""
    return head_signer(key, trail)(seq, record_hash)


def head_signer(key: bytes, trail: str) -> Callable[[int, str], str]:
    """`head_mac` for one key and trail; a writer signs HEAD on every commit, so the HMAC is
    keyed and fed the fixed prefix once."""
    mac = hmac_sha256(key, f"agentobs-audit-head\x00{trail}\x00".encode())

    def sign(seq: int, record_hash: str) -> str:
        return mac(f"{seq}\x00{record_hash}".encode())

    return sign


def previous_key_for(path: str | None) -> bytes | None:
    """The previous audit key, for a key rotation (rekey.py): the file `previous-key` beside the key
    file (the audit-key Secret's `previous-key` entry, which the webhook mounts beside `key`)."""
    if not path:
        return None
    previous = os.path.join(os.path.dirname(path), PREVIOUS_KEY_NAME)
    return load_key(previous) if os.path.exists(previous) else None


def key_for(path: str | None, directory: str, variable: str) -> bytes | None:
    """The key in `path`, or None (said loudly) when no path is set or the file is absent (the
    webhook's Secret volume is optional). A key file that exists but is unusable raises."""
    if path and os.path.exists(path):
        return load_key(path)
    why = f"{variable} not set" if not path else (
        f"{path} is absent: the webhook mounts the resource's audit-key Secret only where it exists, "
        "i.e. in the resource's own namespace")
    log.warning("agentobs: the audit trail in %s is UNKEYED (%s): its hash chain shows accidental damage, "
                "but whoever can write the files can rewrite it undetected", directory, why)
    return None
