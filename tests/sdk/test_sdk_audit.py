"""Audit trail: chain, tamper detection (edit, delete, reorder, truncate), torn tails, rotation,
retention, query and the command line."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from agentobs_sdk import cli
from agentobs_sdk.audit import GENESIS, AuditError, AuditTrail, Problem, query, record_hash, verify
from agentobs_sdk.audit.chain import canonical


class Clock:
    """A controllable time source, so rotation and retention never wait on the wall clock."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def fill(directory: Path, n: int, **kwargs: Any) -> list[int]:
    with AuditTrail(directory, **kwargs) as trail:
        return [trail.append("tool_call", agent=f"agent-{i % 3}", user=("alice", "bob")[i % 2],
                             result="ok" if i % 4 else "error", resource=f"tool-{i}",
                             details={"i": i}).seq for i in range(n)]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("audit-*.jsonl"))


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def kinds(directory: Path) -> list[str]:
    return [p.kind for p in verify(directory).errors]


def tampered(directory: Path, edit: Callable[[list[bytes]], object]) -> list[Problem]:
    """Write 8 records, apply `edit` to the segment's lines in place, return verify's errors."""
    fill(directory, 8)
    seg = segments(directory)[0]
    lines = lines_of(seg)
    edit(lines)
    seg.write_bytes(b"".join(lines))
    return verify(directory).errors


def test_chain_links_every_record(tmp_path: Path) -> None:
    assert fill(tmp_path, 10) == list(range(1, 11))
    records = [json.loads(line) for line in lines_of(segments(tmp_path)[0])]
    assert records[0]["prev"] == GENESIS
    for before, after in itertools.pairwise(records):
        assert after["prev"] == before["hash"]
    for rec in records:
        assert rec["hash"] == record_hash(rec)
        assert set(rec) == {"seq", "ts", "agent", "agent_id", "action", "user", "result", "resource", "details", "prev",
                            "hash"}
    report = verify(tmp_path)
    assert report.ok and report.problems == []
    assert (report.records, report.first_seq, report.last_seq, report.head_seq) == (10, 1, 10, 10)


def test_hash_covers_canonical_json_including_prev() -> None:
    rec = {"seq": 1, "ts": "t", "action": "a", "prev": GENESIS, "details": {"b": 1, "a": "é"}}
    assert canonical(rec) == '{"action":"a","details":{"a":"é","b":1},"prev":"%s","seq":1,"ts":"t"}'.encode() % (
        GENESIS.encode(),)
    assert record_hash(rec) != record_hash({**rec, "prev": "1" * 64})


def test_edit_is_detected_with_file_line_and_seq(tmp_path: Path) -> None:
    def forge(lines: list[bytes]) -> None:
        lines[4] = json.dumps({**json.loads(lines[4]), "result": "ok-forged"}).encode() + b"\n"

    errors = tampered(tmp_path, forge)
    assert [(p.kind, p.file, p.line, p.seq) for p in errors] == [("edited", segments(tmp_path)[0].name, 5, 5)]


def test_edit_with_recomputed_hash_breaks_the_next_link(tmp_path: Path) -> None:
    def forge(lines: list[bytes]) -> None:
        rec = {**json.loads(lines[2]), "user": "mallory"}
        lines[2] = canonical({**rec, "hash": record_hash(rec)}) + b"\n"

    errors = tampered(tmp_path, forge)
    seg = segments(tmp_path)[0]
    assert [(p.kind, p.line, p.seq) for p in errors] == [("relinked", 4, 4)]
    assert "seq 3" in errors[0].message and f"{seg.name}:3" in errors[0].message


def test_deleted_record_is_detected(tmp_path: Path) -> None:
    errors = tampered(tmp_path, lambda lines: lines.pop(3))  # seq 4
    assert [(p.kind, p.line, p.seq) for p in errors] == [("removed", 4, 5)]
    assert "seq 4 missing" in errors[0].message


def test_reordered_records_are_detected(tmp_path: Path) -> None:
    errors = tampered(tmp_path, lambda lines: lines.insert(5, lines.pop(6)))  # seq 6 and 7 swap places
    assert [(p.kind, p.line, p.seq) for p in errors] == [("reordered", 7, 6)]
    assert "after seq 7" in errors[0].message


def test_truncated_tail_is_detected(tmp_path: Path) -> None:
    fill(tmp_path, 8)
    seg = segments(tmp_path)[0]
    seg.write_bytes(b"".join(lines_of(seg)[:5]))  # whole records cut off the end
    errors = verify(tmp_path).errors
    assert [(p.kind, p.seq) for p in errors] == [("truncated", 5)]
    assert "seq 6..8" in errors[0].message
    with pytest.raises(AuditError, match="HEAD"):
        AuditTrail(tmp_path)  # and no writer extends a trail that lost acknowledged records


def test_torn_last_line_is_reported_then_quarantined_without_losing_records(tmp_path: Path) -> None:
    fill(tmp_path, 5)
    seg = segments(tmp_path)[0]
    torn = b'{"action":"tool_call","agent":"agent-0","det'
    with seg.open("ab") as fh:
        fh.write(torn)
    report = verify(tmp_path)
    assert report.ok
    assert [(p.kind, p.severity, p.line) for p in report.problems] == [("torn_tail", "warning", 6)]

    with AuditTrail(tmp_path) as trail:
        assert [r.describe() for r in trail.repairs] == [trail.repairs[0].describe()]
        (repair,) = trail.repairs
        assert repair.length == len(torn)
        assert repair.quarantined_to is not None and Path(repair.quarantined_to).read_bytes() == torn
        assert trail.append("after_crash").seq == 6
    report = verify(tmp_path)
    assert report.ok and report.problems == []
    assert report.records == 6


def test_rotation_by_size_carries_the_chain_across_files(tmp_path: Path) -> None:
    fill(tmp_path, 40, max_bytes=2000)
    files = segments(tmp_path)
    assert len(files) > 3
    prev_last: dict[str, Any] | None = None
    for f in files:
        recs = [json.loads(line) for line in lines_of(f)]
        assert f.name == f"audit-{recs[0]['seq']:012d}.jsonl"
        if prev_last is not None:
            assert recs[0]["prev"] == prev_last["hash"]
        prev_last = recs[-1]
        assert f.stat().st_size < 2000 + 400
    assert verify(tmp_path).ok
    files[1].unlink()  # a whole segment removed from the middle
    errors = verify(tmp_path).errors
    assert [p.kind for p in errors] == ["removed"]
    assert errors[0].file == files[2].name and errors[0].line == 1


def test_rotation_by_time(tmp_path: Path) -> None:
    clock = Clock()
    with AuditTrail(tmp_path, rotate_seconds=3600, clock=clock) as trail:
        trail.append("a")
        trail.append("b")
        clock.now += 3600
        trail.append("c")
        clock.now += 10
        trail.append("d")
    assert [f.name for f in segments(tmp_path)] == ["audit-000000000001.jsonl", "audit-000000000003.jsonl"]
    # a reopened writer takes the segment's age from its first record
    clock.now += 3600
    with AuditTrail(tmp_path, rotate_seconds=3600, clock=clock) as trail:
        assert trail.append("e").file == "audit-000000000005.jsonl"
    assert verify(tmp_path).ok


def _age(path: Path, clock: Clock, days: float) -> None:
    t = clock.now - days * 86400
    os.utime(path, (t, t))


def test_retention_deletes_old_files_and_verify_still_passes(tmp_path: Path) -> None:
    clock = Clock()
    fill(tmp_path, 30, max_bytes=1500, clock=clock)
    files = segments(tmp_path)
    assert len(files) >= 4
    for f in files[:2]:
        _age(f, clock, 10)
    with AuditTrail(tmp_path, retention_days=7, clock=clock, agent_id="researcher-7f9c") as trail:
        assert trail.apply_retention() == []  # already applied when it opened
    remaining = segments(tmp_path)
    assert [f.name for f in remaining] == [f.name for f in files[2:]]
    anchor = json.loads((tmp_path / "anchor.json").read_text())
    first_kept = json.loads(lines_of(remaining[0])[0])
    assert (anchor["seq"], anchor["prev"]) == (first_kept["seq"], first_kept["prev"])
    (cut,) = query(tmp_path, action="audit.retention")
    assert cut["details"]["deleted"] == [f.name for f in files[:2]]
    assert cut["seq"] == anchor["confirmed_by"]
    assert query(tmp_path, agent_id="researcher-7f9c") == [cut], "the pod that cut the trail is on record"
    report = verify(tmp_path)
    assert report.ok, [p.describe() for p in report.problems]
    assert report.first_seq == first_kept["seq"]

    # Deleting one more old file and forging the anchor to match is still caught.
    victim = remaining[0]
    next_first = json.loads(lines_of(remaining[1])[0])
    victim.unlink()
    (tmp_path / "anchor.json").write_text(json.dumps(
        {"seq": next_first["seq"], "prev": next_first["prev"], "confirmed_by": anchor["confirmed_by"]}))
    assert "anchor" in kinds(tmp_path)


def test_retention_never_deletes_the_newest_file(tmp_path: Path) -> None:
    clock = Clock()
    fill(tmp_path, 3, clock=clock)
    (only,) = segments(tmp_path)
    _age(only, clock, 100)
    with AuditTrail(tmp_path, retention_days=1, clock=clock):
        pass
    assert segments(tmp_path) == [only]
    assert verify(tmp_path).ok


def test_removed_first_records_without_anchor_are_detected(tmp_path: Path) -> None:
    fill(tmp_path, 20, max_bytes=1500)
    segments(tmp_path)[0].unlink()
    errors = verify(tmp_path).errors
    assert [p.kind for p in errors] == ["removed"]
    assert "seq 1.." in errors[0].message


def test_query_filters(tmp_path: Path) -> None:
    clock = Clock(1_700_000_000.0)
    with AuditTrail(tmp_path, clock=clock) as trail:
        for i in range(12):
            clock.now = 1_700_000_000.0 + i * 60
            trail.append("tool_call" if i % 2 else "decision", agent=f"agent-{i % 3}",
                         user=("alice", "bob")[i % 2], result="ok" if i % 4 else "error")
    assert len(query(tmp_path)) == 12
    assert {r["agent"] for r in query(tmp_path, agent="agent-1")} == {"agent-1"}
    assert len(query(tmp_path, agent="agent-1")) == 4
    assert [r["seq"] for r in query(tmp_path, action="decision", result="error")] == [1, 5, 9]
    assert len(query(tmp_path, user="bob", action="tool_call")) == 6
    window = query(tmp_path, since="2023-11-14T22:15:00Z", until="2023-11-14T22:18:00Z")
    assert [r["seq"] for r in window] == [3, 4, 5]
    assert len(query(tmp_path, limit=2)) == 2


def test_query_takes_ages_like_the_cli(tmp_path: Path) -> None:
    # The README shows `--since 2h` and then `aobs.query(dir, since=...)`: the same forms work.
    fill(tmp_path, 3)
    assert len(query(tmp_path, since="2h")) == 3
    assert query(tmp_path, until="1h") == []
    assert len(query(tmp_path, since="1w", until="0s", limit=2)) == 2
    with pytest.raises(ValueError, match="neither an ISO 8601 time nor an age"):
        query(tmp_path, since="yesterday")


def test_details_without_a_natural_text_are_stored_as_repr(tmp_path: Path) -> None:
    with AuditTrail(tmp_path) as trail:
        trail.append("x", details={"obj": object(), (1, 2): "tuple key", "n": [1, {"k": b"raw"}]})
        with pytest.raises(ValueError, match="finite"):
            trail.append("y", details={"bad": float("inf")})
        with pytest.raises(ValueError, match="action"):
            trail.append("")
    (rec,) = query(tmp_path)
    assert rec["details"]["obj"].startswith("<object object")
    assert rec["details"]["(1, 2)"] == "tuple key"
    assert verify(tmp_path).ok


def test_cli_verify_and_query_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(tmp_path, 6)
    assert cli.main(["verify", str(tmp_path)]) == 0
    assert "OK: 6 record(s)" in capsys.readouterr().out
    assert cli.main(["query", str(tmp_path), "--user", "alice", "--since", "3650d"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["seq"] for r in out] == [1, 3, 5]
    assert cli.main(["query", str(tmp_path), "--agent", "nobody"]) == 1
    assert cli.main(["query", str(tmp_path), "--since", "2999-01-01T00:00:00Z"]) == 1
    capsys.readouterr()

    seg = segments(tmp_path)[0]
    lines = lines_of(seg)
    del lines[1]
    seg.write_bytes(b"".join(lines))
    assert cli.main(["verify", str(tmp_path), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["problems"][0]["kind"] == "removed"
    assert cli.main(["verify", str(tmp_path / "missing")]) == 2
    with pytest.raises(SystemExit) as bad_time:
        cli.main(["query", str(tmp_path), "--since", "yesterday-ish"])
    assert bad_time.value.code == 2


def test_console_script_is_declared_and_runs(tmp_path: Path) -> None:
    (ep,) = metadata.entry_points(group="console_scripts", name="agentobs-audit")
    assert ep.value == "agentobs_sdk.cli:main"
    fill(tmp_path, 2)
    done = subprocess.run([sys.executable, "-m", "agentobs_sdk.cli", "verify", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout


def test_retention_also_deletes_the_segment_its_own_record_rotated_away_from(tmp_path: Path) -> None:
    """An agent restarted after days: the newest segment is expired too, and the retention record
    starts a new one. That segment was spared only as the newest; it no longer is, so it goes in
    the same pass instead of outliving the retention period until the next rotation."""
    clock = Clock()
    with AuditTrail(tmp_path, clock=clock, anchor_sink=None) as trail:
        trail.append("a")
        clock.now += 2 * 86400
        trail.append("b")  # rotates: a day has passed
    clock.now += 2 * 86400
    old = segments(tmp_path)
    assert len(old) == 2
    for f in old:
        _age(f, clock, 3)
    with AuditTrail(tmp_path, retention_days=1, clock=clock, anchor_sink=None):
        pass
    (kept,) = segments(tmp_path)
    assert kept.name not in {f.name for f in old}
    report = verify(tmp_path)
    assert report.ok, [p.describe() for p in report.problems]
    deleted = [name for cut in query(tmp_path, action="audit.retention") for name in cut["details"]["deleted"]]
    assert deleted == [f.name for f in old]
