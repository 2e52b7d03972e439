"""What a writer checks before it extends a trail: the whole chain at open, the tail it links to.

A writer that appended after a damaged record would bury the damage under fresh, valid-looking
history; one without the key extending a keyed trail would downgrade it. Both are refused with an
AuditError that says to run `agentobs-audit verify`. A key given for a trail that was unkeyed from
its start is refused too, with an error that says to use a new directory (nothing is damaged).
"""

from __future__ import annotations

import os
from typing import Any, Literal

from . import store
from .chain import ALG_HMAC, AuditError, decode, record_hash
from .keys import PREVIOUS_KEY_NAME, key_id
from .verify import verify


def check_tail_record(directory: str, record: dict[str, Any], key: bytes | None,
                      previous_key: bytes | None = None) -> bool:
    """The record a writer is about to link to must be one a holder of the key wrote; True when
    it was the holder of `previous_key` (the writer is to rotate the key, rekey.py)."""
    keyed = record.get("alg") == ALG_HMAC
    if keyed and key is None:
        raise AuditError(f"audit trail in {directory} is keyed; refusing to extend it without "
                         "its key (set AGENTOBS_AUDIT_KEY_FILE)")
    if not keyed and key is not None:
        if not _starts_keyed(directory):
            # Not damage: an unkeyed trail given a key. `verify` finds nothing wrong with it, so
            # the way out is a new directory, not a verification.
            raise AuditError(
                f"the audit trail in {directory} is unkeyed and a key was given: refusing to extend "
                "it. A trail is keyed or not from its first record, so this one cannot become keyed: "
                "set AGENTOBS_AUDIT_DIR to a new directory for a keyed trail (or unset "
                "AGENTOBS_AUDIT_KEY_FILE to extend this one unkeyed). Had it been keyed, it was "
                "rewritten without the key, which only its chain heads shipped out of the pod show "
                "(`agentobs-audit verify --anchor`)")
        raise AuditError(f"the last record of the audit trail in {directory} is not keyed although "
                         "earlier ones are: refusing to extend it; run `agentobs-audit verify`")
    if record_hash(record, key) != record["hash"]:
        if previous_key is not None and record_hash(record, previous_key) == record["hash"]:
            return True
        if key is not None:
            _refuse_other_key(directory, key)
        raise AuditError(f"the last record of the audit trail in {directory} (seq {record['seq']}) "
                         "does not match its hash: refusing to extend it; run `agentobs-audit verify`")
    return False


def _refuse_other_key(directory: str, key: bytes) -> None:
    """A MAC that does not match because the key is not the trail's is not damage: say which.

    Without this, a writer given another key (a regenerated Secret, a key file of another
    resource) reported the trail's last record as not matching its hash, sending the user after
    tampering that never happened. HEAD names the key id the trail was written with."""
    try:
        head = store.read_head(directory)
    except ValueError:
        return  # unreadable HEAD: the generic refusal, and `verify` names it
    if head is not None and head.kid is not None and head.kid != key_id(key):
        raise AuditError(
            f"the audit key given (id {key_id(key)}) is not the key the trail in {directory} was "
            f"written with (id {head.kid}): refusing to extend it. To rotate the trail to this key, "
            f"put the trail's key in the file {PREVIOUS_KEY_NAME} beside AGENTOBS_AUDIT_KEY_FILE (the "
            f"audit-key Secret's {PREVIOUS_KEY_NAME} entry): the writer then records the rotation. Or "
            "point AGENTOBS_AUDIT_KEY_FILE at the trail's key, or AGENTOBS_AUDIT_DIR at a new directory; "
            "`agentobs-audit verify --key-file` with the trail's key checks its records")


def refuse_unless_verified(directory: str, key: bytes | None, previous_key: bytes | None = None) -> None:
    """Verify the whole trail (the caller holds the directory lock); AuditError on any error."""
    report = verify(directory, key=key, keys=[previous_key] if previous_key is not None else [], _locked=True)
    if not report.ok:
        first = report.errors[0].describe()
        raise AuditError(f"audit trail in {directory} fails verification ({len(report.errors)} "
                         f"problem(s), first: {first}): refusing to append; run `agentobs-audit verify`")


def _starts_keyed(directory: str) -> bool:
    """Whether the oldest record present carries a MAC (a keyed trail stays keyed)."""
    segments = store.list_segments(directory)
    if not segments:
        return False
    line = store.read_first_line(os.path.join(directory, segments[0][1]))
    try:
        return line is not None and decode(line.rstrip(b"\n")).get("alg") == ALG_HMAC
    except ValueError:
        return True  # unreadable: treat as possible damage, which `verify` will name


def head_action(directory: str, last_seq: int, *, new: bool) -> Literal["sync", "write"] | None:
    """What a writer opening the trail does with HEAD: refuse (AuditError) when the trail lost
    records HEAD says were durable, or lost HEAD; "sync": write it and make it durable (a new
    trail); "write": bring it up to the chain's last record; None: leave it.

    HEAD is written and synced before TRAIL and the first record: in a trail with TRAIL or records
    a missing (or unreadable) HEAD was removed, most likely with the newest records. Recreating it
    from what is left would launder exactly that into a trail that verifies clean; refusing keeps
    the evidence for `verify`.
    """
    try:
        head = store.read_head(directory)
    except ValueError:
        head = None
    has_records = last_seq > 0 or bool(store.list_segments(directory))
    if head is not None and head.seq > last_seq:
        raise AuditError(
            f"audit trail in {directory} ends at seq {last_seq} but HEAD says seq "
            f"{head.seq} was durable: records were removed; run `agentobs-audit verify`"
        )
    if head is None and (has_records or not new):
        what = f"has records up to seq {last_seq}" if has_records else "exists (TRAIL) without records"
        raise AuditError(
            f"audit trail in {directory} {what} but its HEAD is missing or unreadable, so "
            "removal of records cannot be ruled out: refusing to append; run `agentobs-audit "
            "verify` (with --anchor) and keep the trail as evidence; point AGENTOBS_AUDIT_DIR "
            "at a new directory to go on")
    if head is None or (new and not has_records):
        # A new trail (also one whose creation a crash interrupted before TRAIL): HEAD made for
        # this trail id and durable before TRAIL and any record exist.
        return "sync"
    return "write" if head.seq < last_seq else None
