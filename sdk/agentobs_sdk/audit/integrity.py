"""What a writer checks before it extends a trail: the whole chain at open, the tail it links to.

A writer that appended after a damaged record would bury the damage under fresh, valid-looking
history; one without the key extending a keyed trail would downgrade it. Both are refused with an
AuditError that says to run `agentobs-audit verify`.
"""

from __future__ import annotations

from typing import Any

from .chain import ALG_HMAC, AuditError, record_hash
from .verify import verify


def check_tail_record(directory: str, record: dict[str, Any], key: bytes | None) -> None:
    """The record a writer is about to link to must be one a holder of the key wrote."""
    keyed = record.get("alg") == ALG_HMAC
    if keyed and key is None:
        raise AuditError(f"audit trail in {directory} is keyed; refusing to extend it without "
                         "its key (set AGENTOBS_AUDIT_KEY_FILE)")
    if not keyed and key is not None:
        raise AuditError(f"the last record of the audit trail in {directory} is not keyed: "
                         "refusing to extend it; run `agentobs-audit verify`")
    if record_hash(record, key) != record["hash"]:
        raise AuditError(f"the last record of the audit trail in {directory} (seq {record['seq']}) "
                         "does not match its hash: refusing to extend it; run `agentobs-audit verify`")


def refuse_unless_verified(directory: str, key: bytes | None) -> None:
    """Verify the whole trail (the caller holds the directory lock); AuditError on any error."""
    report = verify(directory, key=key, _locked=True)
    if not report.ok:
        first = report.errors[0].describe()
        raise AuditError(f"audit trail in {directory} fails verification ({len(report.errors)} "
                         f"problem(s), first: {first}): refusing to append; run `agentobs-audit verify`")
