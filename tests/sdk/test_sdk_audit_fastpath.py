"""The audit writer's fast path gives the same trail as the reference definitions in chain.py:
records encoded before the lock (draft.py), the cached timestamp format, the segment counter that
replaces a stat() per append, and the group-commit leader that waits for records on their way."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from audit_support import run_threads

from agentobs_sdk.audit import AuditTrail, group, query, store, verify
from agentobs_sdk.audit.chain import digester, encode, normalise_details, now_ts, record_hash, seal
from agentobs_sdk.audit.draft import Draft
from agentobs_sdk.audit.group import GroupCommitter
from agentobs_sdk.audit.keys import head_mac, head_signer

KEY = b"fast-path-test-key-0123456789"
PREV = "ab" * 32
TS = "2026-01-31T12:00:00.123456Z"

BODIES: list[dict[str, Any]] = [
    {"agent": "researcher", "agent_id": "pod-1", "action": "tool_call", "user": "alice", "result": "ok",
     "resource": "search", "details": {"call_id": "c-1", "n": [1, 2.5, None, True]}},
    # what retention writes: no agent_id
    {"agent": "agentobs-audit", "action": "audit.retention", "user": None, "result": "ok",
     "resource": "/var/lib/audit", "details": {"deleted": ["audit-000000000001.jsonl"], "kept_from_seq": 9}},
    # text that is also template syntax, non-ASCII, escapes
    {"agent": "a%d%s{0}}{", "agent_id": None, "action": "x%%y", "user": "é\u2028\"\\\n", "result": None,
     "resource": "{}", "details": {"%s": "{1}", "zz": {"b": 1, "a": [{"y": -0.0, "x": 1e300}]}, "é": "ü"}},
    {"action": "only"},
    {"zeta": 1, "action": "a", "alpha": "first", "idx": 3, "query": "q"},  # fields around every chain field
]


@pytest.mark.parametrize("key", [None, KEY], ids=["unkeyed", "keyed"])
@pytest.mark.parametrize("body", BODIES, ids=[str(i) for i in range(len(BODIES))])
def test_draft_line_is_the_canonical_record(body: dict[str, Any], key: bytes | None) -> None:
    line, digest = Draft(body, keyed=key is not None).seal(42, TS, PREV, digester(key))
    record = seal({**body, "ts": TS}, seq=42, prev=PREV, key=key)
    assert line == encode(record)
    assert digest == record["hash"] == record_hash(record, key)


def test_draft_refuses_chain_fields() -> None:
    with pytest.raises(ValueError, match="seq"):
        Draft({"action": "a", "seq": 1}, keyed=False)


def test_normalised_details_read_back_equal() -> None:
    details = {1: "int key", "n": (1, 2), "when": datetime(2026, 1, 1, tzinfo=UTC), "obj": object()}
    plain = normalise_details(details)
    assert plain is not None
    line, _ = Draft({"action": "a", "details": plain}, keyed=False).seal(1, TS, PREV, digester(None))
    assert query_line_details(line) == plain
    with pytest.raises(ValueError, match="finite"):
        normalise_details({"x": [float("nan")]})
    with pytest.raises(ValueError, match="mapping"):
        normalise_details([1, 2])  # type: ignore[arg-type]


def query_line_details(line: bytes) -> Any:
    return json.loads(line)["details"]


def test_now_ts_matches_datetime() -> None:
    rng = random.Random(15)
    epochs = [rng.uniform(0, 4e9) for _ in range(20000)]
    epochs += [float(s) + frac for s in (0, 1_700_000_000, 4_102_444_799)
               for frac in (0.0, 0.0000005, 0.0000015, 0.4999995, 0.9999994, 0.9999995, 0.9999999)]
    epochs += [time.time() + i * 1e-7 for i in range(2000)]
    for epoch in epochs:
        expected = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        assert now_ts(epoch) == expected, epoch


def test_head_signer_is_head_mac() -> None:
    sign = head_signer(KEY, "trail-1")
    assert sign(7, PREV) == head_mac(KEY, "trail-1", 7, PREV)
    assert sign(7, PREV) != head_mac(KEY, "trail-2", 7, PREV)


def test_writer_follows_a_rotation_made_by_another_writer(tmp_path: Path) -> None:
    """Writer A holds segment 1 open; B starts segment 2 without touching segment 1 (no size
    change there). A must notice from the segment counter and append to segment 2."""
    a = AuditTrail(tmp_path, durability="fsync", anchor_sink=None, key=KEY)
    b = AuditTrail(tmp_path, durability="fsync", anchor_sink=None, key=KEY, max_bytes=1)
    try:
        assert a.append("one").file == "audit-000000000001.jsonl"
        assert b.append("two").file == "audit-000000000002.jsonl"  # B rotates: segment 1 is full
        third = a.append("three")
        assert (third.seq, third.file) == (3, "audit-000000000002.jsonl")
    finally:
        a.close()
        b.close()
    report = verify(tmp_path, key=KEY)
    assert report.ok, [p.describe() for p in report.problems]
    assert [r["action"] for r in query(tmp_path)] == ["one", "two", "three"]


def _wait_until(condition: Any) -> None:
    for _ in range(10000):
        if condition():
            return
        time.sleep(0.001)
    raise AssertionError("condition not reached")


class BlockedPreparer:
    """A committer, and a thread inside submit() whose record is being prepared until `go`."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.committer: GroupCommitter[int, int] = GroupCommitter(lambda items: self.batches.append(items) or items)
        self.go = threading.Event()
        started = threading.Event()

        def prepare() -> list[int]:
            started.set()
            self.go.wait()
            return [2]

        self.thread = threading.Thread(target=self.committer.submit, args=(prepare,))
        self.thread.start()
        started.wait()

    def release(self) -> list[list[int]]:
        self.go.set()
        self.thread.join()
        return self.batches


def test_leader_waits_for_a_record_being_prepared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(group, "GATHER_SECONDS", 60.0)
    blocked = BlockedPreparer()
    leader = threading.Thread(target=blocked.committer.submit, args=(lambda: [1],))
    leader.start()
    _wait_until(lambda: blocked.committer._leader)  # the leader holds its batch open for the preparer
    batches = blocked.release()
    leader.join()
    assert batches == [[1, 2]]


def test_leader_waits_a_bounded_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(group, "GATHER_SECONDS", 0.01)
    blocked = BlockedPreparer()
    assert blocked.committer.submit(lambda: [1]) == [1]  # committed alone once the wait ran out
    assert blocked.release() == [[1], [2]]


def test_failed_preparation_is_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(group, "GATHER_SECONDS", 60.0)
    committer: GroupCommitter[int, int] = GroupCommitter(lambda items: items)

    def broken() -> list[int]:
        raise ValueError("bad record")

    with pytest.raises(ValueError, match="bad record"):
        committer.submit(broken)
    assert committer.submit(lambda: [1]) == [1]  # would wait 60 s if the failure still counted


def test_group_commit_batches_every_waiting_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight threads that append in a loop: the leader gathers the threads released by the last
    commit, so batches hold most of them rather than alternating between one and seven."""
    monkeypatch.setattr(group, "GATHER_SECONDS", 0.05)  # a loaded test machine may be slow to wake them
    sizes: list[int] = []
    trail = AuditTrail(tmp_path, durability="group", anchor_sink=None)
    real = trail._write_records

    def counting(drafts: list[Draft]) -> Any:
        sizes.append(len(drafts))
        return real(drafts)

    trail._write_records = counting  # type: ignore[method-assign]

    def work(_: int) -> None:
        for i in range(30):
            trail.append("write", details={"i": i})

    run_threads(work, 8)
    trail.close()
    assert sum(sizes) == 240 and verify(tmp_path).ok
    # Without the gather the mean is 4: batches of 1 and 7 in turn.
    assert sum(sizes) / len(sizes) >= 6, sizes


@pytest.mark.parametrize("head", [store.Head(0, "0" * 64), store.Head(12, PREV, "cd" * 32, "0123456789abcdef")])
def test_head_is_written_as_json_and_read_back(tmp_path: Path, head: store.Head) -> None:
    path = tmp_path / store.HEAD_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        store.write_head(fd, store.Head(999999, "f" * 64, "e" * 64, "k" * 16))  # longer: must not linger
        store.write_head(fd, head)
    finally:
        os.close(fd)
    obj: dict[str, Any] = {"seq": head.seq, "hash": head.hash}
    if head.mac is not None:
        obj.update(mac=head.mac, kid=head.kid)
    assert path.read_bytes().rstrip() == json.dumps(obj, separators=(",", ":")).encode()
    assert store.read_head(str(tmp_path)) == head


def test_unknown_record_fields_are_refused(tmp_path: Path) -> None:
    with AuditTrail(tmp_path, durability="group", anchor_sink=None) as trail:
        with pytest.raises(TypeError, match="usr"):
            trail.append("login", usr="alice")  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="usr"):
            trail.append_many([{"action": "login", "usr": "alice"}])
        assert trail.append("login", user="alice").seq == 1  # nothing was written by the refusals
    assert [r["user"] for r in query(tmp_path)] == ["alice"]
