"""Tamper-evident audit trail: append-only, hash-chained JSONL with rotation and retention.

`AuditTrail` writes (writer.py, with group.py for group commit and tail.py for crash recovery),
`verify()` checks (verify.py), `query()` reads (query.py); the record format and hash chain are
defined in chain.py and the directory layout in store.py.
"""

from .anchor import AnchoredHead, parse_anchor_lines
from .chain import GENESIS, AuditError, record_hash
from .keys import load_key
from .query import iter_records, query
from .store import TornTail
from .verify import Problem, VerifyReport, verify
from .writer import AuditReceipt, AuditTrail, Durability

__all__ = [
    "GENESIS",
    "AnchoredHead",
    "AuditError",
    "AuditReceipt",
    "AuditTrail",
    "Durability",
    "Problem",
    "TornTail",
    "VerifyReport",
    "iter_records",
    "load_key",
    "parse_anchor_lines",
    "query",
    "record_hash",
    "verify",
]
