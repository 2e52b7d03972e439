"""What a writer checks before it extends a trail: the whole chain at open, the tail it links to.

A writer that appended after a damaged record would bury the damage under fresh, valid-looking
history; one without the key extending a keyed trail would downgrade it. Both are refused with an
AuditError that says to run `agentobs-audit verify`. A key given for a trail that was unkeyed from
its start is refused too, with an error that says to use a new directory (nothing is damaged).
"""

from __future__ import annotations

import os
from typing import Any

from . import store
from .chain import ALG_HMAC, AuditError, decode, record_hash
from .keys import key_id
from .verify import verify


def check_tail_record(directory: str, record: dict[str, Any], key: bytes | None) -> None:
    """The record a writer is about to link to must be one a holder of the key wrote."""
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
        if key is not None:
            _refuse_other_key(directory, key)
        raise AuditError(f"the last record of the audit trail in {directory} (seq {record['seq']}) "
                         "does not match its hash: refusing to extend it; run `agentobs-audit verify`")


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
            f"written with (id {head.kid}): refusing to extend it. Point AGENTOBS_AUDIT_KEY_FILE at "
            "that key, or AGENTOBS_AUDIT_DIR at a new directory for a trail with this one; "
            "`agentobs-audit verify --key-file` with the trail's key checks its records")


def refuse_unless_verified(directory: str, key: bytes | None) -> None:
    """Verify the whole trail (the caller holds the directory lock); AuditError on any error."""
    report = verify(directory, key=key, _locked=True)
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
