"""`verify()`: check an audit directory's chain and say exactly what is wrong and where.

Findings name the segment file, the line and the sequence number involved:
- edited: a record's content no longer matches its own hash;
- relinked: a record does not link to the one before it (that one was rewritten with a fresh
  hash, or replaced);
- removed: sequence numbers missing from the chain (a deleted line or file);
- reordered / duplicate: a record appears after a later one, or twice;
- truncated: the chain ends before the record HEAD says was made durable;
- unparseable, anchor, head: lines that are not records, a chain start that retention did not
  record, an unreadable or missing HEAD (missing is an error even with no records left: a writer
  makes HEAD when it opens the trail), or, keyed, one whose MAC is wrong;
- unkeyed / downgrade / key: with a key, a record without a MAC; an unkeyed record after keyed
  ones (checked even without the key); a key that is not the trail's key (HEAD names the trail's
  key id; then that is the only finding about content, not an "edited" per record); with several
  keys, a record or key rotation record not MACed with the key in force there (rekey.py);
- anchored: with anchored heads (anchor.py), an anchored record that is gone or has another hash.
Without the key, keyed records' content cannot be checked: a warning says so.
A torn last line (a crash mid-append) is a warning, not a failure: no acknowledged record is lost
and the next writer moves it to quarantine/.

Verification is read-only; it holds a shared lock only while reading HEAD, which is written after
the data, so concurrent writers can only make the chain longer than HEAD, never shorter.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from . import store
from .anchor import AnchoredHead
from .chain import ALG_HMAC, GENESIS, RETENTION_ACTION, AuditError, decode, record_hash
from .keys import head_mac, key_id
from .rekey import check_keys, keyring, rotation_of

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    kind: str
    message: str
    file: str | None = None
    line: int | None = None
    seq: int | None = None
    severity: Severity = "error"

    def describe(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}" if self.line is not None else self.file
            where += ": "
        seq = f" [seq {self.seq}]" if self.seq is not None else ""
        return f"{self.severity.upper()} {self.kind}: {where}{self.message}{seq}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity, "message": self.message,
                "file": self.file, "line": self.line, "seq": self.seq}


@dataclass
class VerifyReport:
    directory: str
    records: int = 0
    files: list[str] = field(default_factory=list)
    first_seq: int | None = None
    last_seq: int | None = None
    head_seq: int | None = None
    keyed: bool = False  # the trail's records carry MACs
    trail: str | None = None
    anchors_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {"directory": self.directory, "ok": self.ok, "records": self.records,
                "files": self.files, "first_seq": self.first_seq, "last_seq": self.last_seq,
                "head_seq": self.head_seq, "keyed": self.keyed, "trail": self.trail,
                "anchors_checked": self.anchors_checked, "problems": [p.to_dict() for p in self.problems]}


@dataclass(frozen=True)
class _Entry:
    seq: int
    prev: str
    hash: str
    file: str
    line: int
    retention: tuple[object, object] | None  # (kept_from_seq, kept_from_prev) of a retention record
    macs: frozenset[str] | None = None  # keyed: ids of the given keys its MAC matches
    rotation: tuple[str, str] | None = None  # a key rotation record's (from_kid, to_kid)


def _where(e: _Entry) -> str:
    return f"{e.file}:{e.line}"


def verify(directory: str | os.PathLike[str], *, key: bytes | None = None, keys: Sequence[bytes] = (),
           anchors: Iterable[AnchoredHead] | None = None, _locked: bool = False) -> VerifyReport:
    """Verify the chain in `directory`; raises FileNotFoundError when it does not exist and
    AuditError when it is not an audit trail (no TRAIL file).

    `key`: the audit key, to check MACs (a keyed trail verified without it gets a warning).
    `keys`: more keys, for a trail whose key was rotated (rekey.py): each record is checked
    with the key in force at its place in the chain.
    `anchors`: chain heads shipped out of the pod; those of this trail must match the chain.
    """
    if key is not None and not isinstance(key, bytes):
        # A path passed as the key would otherwise fail deep inside hmac.
        raise TypeError(f"key must be the audit key's bytes, not {type(key).__name__}: read a key file "
                        "with agentobs_sdk.audit.load_key(path)")
    path = os.fspath(directory)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no audit directory at {path}")
    trail = store.read_trail_id(path)
    if trail is None:
        # A writer makes TRAIL before anything else: without it this is not a trail (a typo'd
        # path, `.`), and reporting its zero records as intact would pass anything.
        raise AuditError(f"{path} is not an audit trail (it has no {store.TRAIL_NAME} file)")
    report = VerifyReport(directory=path, trail=trail)
    head = _read_head(path, report, locked=_locked)
    try:
        anchor = store.read_anchor(path)
    except ValueError as exc:
        anchor = None
        report.problems.append(Problem("anchor", str(exc), store.ANCHOR_NAME))

    ring = keyring(([key] if key is not None else []) + list(keys))
    wrong_key = False
    if ring and head is not None and head.kid is not None and head.kid not in ring:
        # Every MAC would fail with another key: report the key, not each record as "edited".
        # The chain's order, links and HEAD are still checked, as without a key.
        given = f"the key given (id {key_id(key)}) is" if key is not None and len(ring) == 1 else (
            f"the keys given (ids {', '.join(ring)}) are")
        report.problems.append(Problem(
            "key", f"{given} not this trail's key (id {head.kid}): record contents were not checked",
            store.HEAD_NAME))
        ring, wrong_key = {}, True
    entries = _read_entries(path, report, ring, note_unchecked=not wrong_key)
    report.records = len(entries)
    _check_order(entries, report)
    ordered = sorted({e.seq: e for e in reversed(entries)}.values(), key=lambda e: e.seq)
    if ring:  # records awaiting deletion by retention included
        _check_keys(ordered, ring, head, report)
    ordered = _check_start(ordered, anchor, report)
    _check_links(ordered, report)
    if ordered:
        report.first_seq, report.last_seq = ordered[0].seq, ordered[-1].seq
    _check_head(ordered, head, report)
    _check_head_mac(head, _head_key(head, ring), report)
    if anchors is not None:
        _check_anchors(ordered, list(anchors), report)
    return report


def _read_head(path: str, report: VerifyReport, *, locked: bool) -> store.Head | None:
    lock_path = os.path.join(path, store.LOCK_NAME)
    try:
        # A writer verifying its own directory already holds the exclusive lock.
        lock_fd = -1 if locked else os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        lock_fd = -1
    try:
        if lock_fd >= 0:
            with store.dir_lock(lock_fd, shared=True):
                head = store.read_head(path)
        else:
            head = store.read_head(path)
    except ValueError as exc:
        report.problems.append(Problem("head", str(exc), store.HEAD_NAME))
        return None
    finally:
        if lock_fd >= 0:
            os.close(lock_fd)
    if head is not None:
        report.head_seq = head.seq
    return head


def _read_entries(path: str, report: VerifyReport, ring: dict[str, bytes], *,
                  note_unchecked: bool = True) -> list[_Entry]:
    segments = store.list_segments(path)
    entries: list[_Entry] = []
    unchecked = 0
    for idx, (_, name) in enumerate(segments):
        report.files.append(name)
        newest = idx == len(segments) - 1
        for lineno, raw, complete in store.iter_lines(os.path.join(path, name)):
            if not complete:
                if newest:
                    report.problems.append(Problem(
                        "torn_tail", f"incomplete last line ({len(raw)} bytes) from an interrupted "
                        "append; earlier records are intact", name, lineno, severity="warning"))
                else:
                    report.problems.append(Problem(
                        "unparseable", "unterminated line in the middle of the chain", name, lineno))
                continue
            try:
                rec = decode(raw)
            except ValueError as exc:
                report.problems.append(Problem("unparseable", f"not an audit record: {exc}", name, lineno))
                continue
            alg = rec.get("alg")
            if alg == ALG_HMAC:
                report.keyed = True
            elif alg is not None:
                report.problems.append(Problem("unparseable", f"unknown alg {alg!r}", name, lineno, rec["seq"]))
            elif report.keyed:
                report.problems.append(Problem(
                    "downgrade", "unkeyed record after keyed ones (written without the key, or its MAC "
                    "stripped)", name, lineno, rec["seq"]))
            elif ring:
                report.problems.append(Problem(
                    "unkeyed", "record carries no MAC although a key was given", name, lineno, rec["seq"]))
            macs = None
            if alg == ALG_HMAC:
                # Which key is in force here is known once the chain is in order (_check_keys).
                macs = frozenset(kid for kid, k in ring.items() if record_hash(rec, k) == rec["hash"])
                unchecked += not ring
            elif record_hash(rec) != rec["hash"]:
                report.problems.append(Problem(
                    "edited", "content does not match the record's hash (the record was modified)",
                    name, lineno, rec["seq"]))
            retention = None
            details = rec.get("details")
            if rec.get("action") == RETENTION_ACTION and isinstance(details, dict):
                retention = (details.get("kept_from_seq"), details.get("kept_from_prev"))
            entries.append(_Entry(rec["seq"], rec["prev"], rec["hash"], name, lineno, retention, macs,
                                  rotation_of(rec)))
    if unchecked and note_unchecked:
        report.problems.append(Problem(
            "keyed_unchecked", f"{unchecked} keyed record(s) not checked: give the audit key "
            "(--key-file) to verify their content", severity="warning"))
    return entries


def _check_keys(ordered: list[_Entry], ring: dict[str, bytes], head: store.Head | None,
                report: VerifyReport) -> None:
    findings, unchecked, _ = check_keys(ordered, frozenset(ring), head.kid if head is not None else None)
    for kind, message, e in findings:
        report.problems.append(Problem(kind, message, e.file if e else store.HEAD_NAME, e.line if e else None,
                                       e.seq if e else None))
    if unchecked:
        report.problems.append(Problem(
            "keyed_unchecked", f"{unchecked} keyed record(s) written with a key that was not given were not "
            "checked: give every key the trail was written with (--key-file, repeated)", severity="warning"))


def _head_key(head: store.Head | None, ring: dict[str, bytes]) -> bytes | None:
    if head is None or not ring:
        return None
    # A keyed trail's HEAD names its key; one that does not fails the MAC check with any key.
    return ring.get(head.kid) if head.kid is not None else next(iter(ring.values()))


def _check_order(entries: list[_Entry], report: VerifyReport) -> None:
    seen: dict[int, _Entry] = {}
    highest: _Entry | None = None
    for e in entries:
        if e.seq in seen:
            report.problems.append(Problem(
                "duplicate", f"seq {e.seq} already appeared at {_where(seen[e.seq])}", e.file, e.line, e.seq))
            continue
        seen[e.seq] = e
        if highest is not None and e.seq < highest.seq:
            report.problems.append(Problem(
                "reordered", f"record appears after seq {highest.seq} at {_where(highest)} "
                "(records were moved)", e.file, e.line, e.seq))
        if highest is None or e.seq > highest.seq:
            highest = e


def _check_start(ordered: list[_Entry], anchor: store.Anchor | None, report: VerifyReport) -> list[_Entry]:
    if not ordered:
        return ordered
    first = ordered[0]
    if first.seq == 1 and first.prev == GENESIS:
        return ordered  # the whole history is present: nothing to trust an anchor for
    if anchor is None:
        report.problems.append(Problem(
            "removed", f"chain starts at seq {first.seq}: seq 1..{first.seq - 1} are missing and no "
            "retention anchor explains it", first.file, first.line, first.seq))
        return ordered
    pending = [e for e in ordered if e.seq < anchor.seq]
    if pending:
        report.problems.append(Problem(
            "retention_pending", f"{len(pending)} record(s) before the retention anchor await deletion",
            pending[0].file, severity="warning"))
        ordered = [e for e in ordered if e.seq >= anchor.seq]
        if not ordered:
            return ordered
        first = ordered[0]
    if first.seq != anchor.seq or first.prev != anchor.prev:
        report.problems.append(Problem(
            "anchor", f"chain starts at seq {first.seq} but the retention anchor says seq {anchor.seq}: "
            "records after the retention cut were removed", first.file, first.line, first.seq))
    confirm = next((e for e in ordered if e.seq == anchor.confirmed_by), None)
    if confirm is None or confirm.retention != (anchor.seq, anchor.prev):
        report.problems.append(Problem(
            "anchor", f"{store.ANCHOR_NAME} is not confirmed by a retention record in the chain "
            f"(expected at seq {anchor.confirmed_by}): the start of the chain cannot be trusted",
            store.ANCHOR_NAME))
    return ordered


def _check_links(ordered: list[_Entry], report: VerifyReport) -> None:
    for before, after in itertools.pairwise(ordered):
        if after.seq != before.seq + 1:
            missing = (f"seq {before.seq + 1}" if after.seq == before.seq + 2
                       else f"seq {before.seq + 1}..{after.seq - 1}")
            report.problems.append(Problem(
                "removed", f"{missing} missing between {_where(before)} (seq {before.seq}) and this record",
                after.file, after.line, after.seq))
        elif after.prev != before.hash:
            report.problems.append(Problem(
                "relinked", f"does not link to seq {before.seq} at {_where(before)}: that record was "
                "rewritten (its hash recomputed) or replaced", after.file, after.line, after.seq))


def _check_head(ordered: list[_Entry], head: store.Head | None, report: VerifyReport) -> None:
    if head is None:
        # A writer writes HEAD when it opens the trail, before any record: with TRAIL present,
        # no HEAD means it was removed, with or without the records.
        why = ("so removal of the newest records cannot be ruled out" if ordered else
               "and there are no records: the trail's records and HEAD were removed")
        report.problems.append(Problem("head", f"HEAD is missing, {why}", store.HEAD_NAME))
        return
    last = ordered[-1] if ordered else None
    last_seq = last.seq if last is not None else 0
    if head.seq > last_seq:
        report.problems.append(Problem(
            "truncated", f"chain ends at seq {last_seq} but HEAD says seq {head.seq} was durable: "
            f"seq {last_seq + 1}..{head.seq} were removed from the end",
            last.file if last else store.HEAD_NAME, last.line if last else None, last_seq or None))
        return
    at_head = next((e for e in reversed(ordered) if e.seq == head.seq), None)
    if head.seq > 0 and at_head is not None and at_head.hash != head.hash:
        report.problems.append(Problem(
            "head", f"record seq {head.seq} does not have the hash HEAD recorded for it: the newest "
            "records were rewritten", at_head.file, at_head.line, head.seq))


def _check_head_mac(head: store.Head | None, key: bytes | None, report: VerifyReport) -> None:
    if head is None or key is None or not report.keyed:
        return  # a key that is not the trail's was reported (and dropped) before the records
    if head.mac is None or head.mac != head_mac(key, report.trail or "", head.seq, head.hash):
        report.problems.append(Problem(
            "head", "HEAD's MAC is missing or wrong: HEAD was rewritten by someone without the key",
            store.HEAD_NAME, seq=head.seq))


def _check_anchors(ordered: list[_Entry], anchors: list[AnchoredHead], report: VerifyReport) -> None:
    mine = [a for a in anchors if a.trail == report.trail]
    if not mine:
        report.problems.append(Problem(
            "anchored", f"none of the {len(anchors)} anchored head(s) belongs to trail {report.trail}: "
            "the trail's identity cannot be confirmed", store.TRAIL_NAME))
        return
    by_seq = {e.seq: e for e in ordered}
    first = ordered[0].seq if ordered else 1
    last = ordered[-1].seq if ordered else 0
    for a in sorted(mine, key=lambda h: h.seq):
        if a.seq == 0:
            continue
        report.anchors_checked += 1
        entry = by_seq.get(a.seq)
        if a.seq > last:
            report.problems.append(Problem(
                "anchored", f"a head anchored outside the pod{_at(a)} says seq {a.seq} existed, but the "
                f"chain ends at seq {last}: records were removed from the end", seq=a.seq))
        elif entry is None and a.seq >= first:
            report.problems.append(Problem("anchored", f"anchored seq {a.seq}{_at(a)} is missing", seq=a.seq))
        elif entry is not None and entry.hash != a.hash:
            report.problems.append(Problem(
                "anchored", f"seq {a.seq} does not have the hash anchored outside the pod{_at(a)}: the "
                "history up to it was rewritten", entry.file, entry.line, a.seq))


def _at(head: AnchoredHead) -> str:
    return f" at {head.ts}" if head.ts else ""
