"""The audit writer's per-append shortcuts give what the plain definitions give: the HMAC built from
two keyed SHA-256 states, the writer's record layout with constant fields baked in, the flat-details
shortcut, HEAD made before the fsync, a write the kernel cuts short, and the group committer that
wakes only its own batch and hands the lead to a thread that queued during a commit."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from audit_support import run_threads

from agentobs_sdk.audit import AuditTrail, query, segment, store, verify
from agentobs_sdk.audit.chain import ALG_HMAC, digester, encode, hmac_sha256, normalise_details, seal
from agentobs_sdk.audit.draft import Layout
from agentobs_sdk.audit.group import GroupCommitter

KEY = b"hot-path-test-key-0123456789"
PREV = "cd" * 32
TS = "2026-02-28T23:59:59.999999Z"
NAMES = ("action", "agent", "user", "result", "resource", "details")


@pytest.mark.parametrize("key_len", [1, 16, 63, 64, 65, 200])
@pytest.mark.parametrize("prefix", [b"", b"agentobs-audit-head\x00t\x00", b"x" * 130])
def test_hmac_sha256_is_hmac(key_len: int, prefix: bytes) -> None:
    key = bytes(i % 256 for i in range(key_len))
    mac = hmac_sha256(key, prefix)
    for data in (b"", b"a", b"{" * 64, os.urandom(1000)):
        assert mac(data) == hmac.new(key, prefix + data, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("keyed", [False, True], ids=["unkeyed", "keyed"])
@pytest.mark.parametrize("values", [
    ("tool_call", "bench", "u", "ok", "search", {"call_id": "c-0001"}),
    ("a%d%s{0}}{", None, "é\u2028\"\\\n", None, "{}", {"%s": "{1}", "z": [1.5, None, True]}),
    ("only", None, None, None, None, None),
])
@pytest.mark.parametrize("agent_id", [None, "pod-%s-{0}"])
def test_writer_layout_is_the_canonical_record(values: tuple[Any, ...], keyed: bool, agent_id: str | None) -> None:
    fixed = (("agent_id", agent_id),) + ((("alg", ALG_HMAC),) if keyed else ())
    key = KEY if keyed else None
    line, digest = Layout(NAMES, fixed).draft(values).seal(9, TS, PREV, digester(key))
    body = {**dict(zip(NAMES, values, strict=True)), "agent_id": agent_id, "ts": TS}
    record = seal(body, seq=9, prev=PREV, key=key)
    assert line == encode(record)
    assert digest == record["hash"]


def test_layout_refuses_chain_fields_among_constants() -> None:
    with pytest.raises(ValueError, match="prev"):
        Layout(("action",), (("prev", "x"),))


def test_flat_details_shortcut_matches_the_general_path() -> None:
    flat = {"s": "x", "i": 3, "b": False, "n": None}
    plain = normalise_details(flat)
    assert plain == flat and plain is not flat  # a copy, as the general path makes
    assert normalise_details({"f": 1.5, 2: "k"}) == {"f": 1.5, "2": "k"}  # not flat: general path
    with pytest.raises(ValueError, match="finite"):
        normalise_details({"f": float("inf")})


def test_head_formatter_is_head_json() -> None:
    line = store.head_formatter("0123456789abcdef")(12, PREV, "ef" * 32)
    assert len(line) == 256 and line.endswith(b"\n")
    assert json.loads(line) == {"seq": 12, "hash": PREV, "mac": "ef" * 32, "kid": "0123456789abcdef"}
    assert line.rstrip() == json.dumps(json.loads(line), separators=(",", ":")).encode()


def test_head_after_appends_matches_the_newest_record(tmp_path: Path) -> None:
    with AuditTrail(tmp_path, durability="fsync", anchor_sink=None, key=KEY) as trail:
        receipt = trail.append("a", details={"n": 1})
    head = store.read_head(str(tmp_path))
    assert head is not None and (head.seq, head.hash) == (receipt.seq, receipt.hash)
    assert verify(tmp_path, key=KEY).ok


def test_a_short_write_is_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    cuts = 0

    def short_write(fd: int, data: Any) -> int:
        nonlocal cuts
        if len(data) > 10:  # the kernel may take only part of a write (a signal, a nearly full disk)
            cuts += 1
            return real_write(fd, bytes(data[:7]))
        return real_write(fd, data)

    with AuditTrail(tmp_path, durability="fsync", anchor_sink=None) as trail:
        trail.append("before")
        monkeypatch.setattr(segment.os, "write", short_write)
        receipts = [trail.append("cut", details={"i": i}) for i in range(3)]
        monkeypatch.undo()
        trail.append("after")
    assert cuts >= 3 and [r.seq for r in receipts] == [2, 3, 4]
    assert [r["action"] for r in query(tmp_path)] == ["before", "cut", "cut", "cut", "after"]
    assert verify(tmp_path).ok


def test_a_write_failing_midway_leaves_no_partial_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    calls = 0

    def fail_after_part(fd: int, data: Any) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real_write(fd, bytes(data[:5]))
        raise OSError(28, "No space left on device")

    with AuditTrail(tmp_path, durability="fsync", anchor_sink=None) as trail:
        trail.append("one")
        monkeypatch.setattr(segment.os, "write", fail_after_part)
        with pytest.raises(OSError, match="No space"):
            trail.append("two")
        monkeypatch.undo()
        assert trail.append("three").seq == 2
    assert [r["action"] for r in query(tmp_path)] == ["one", "three"]
    assert verify(tmp_path).ok


def test_a_thread_that_queued_during_a_commit_is_handed_the_lead() -> None:
    entered, go = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def commit(items: list[int]) -> list[int]:
        batches.append(items)
        if len(batches) == 1:
            entered.set()
            go.wait(10)
        return [i * 10 for i in items]

    committer: GroupCommitter[int, int] = GroupCommitter(commit)
    results: dict[int, list[int]] = {}
    first = threading.Thread(target=lambda: results.update({1: committer.submit(lambda: [1])}))
    first.start()
    entered.wait(10)
    second = threading.Thread(target=lambda: results.update({2: committer.submit(lambda: [2, 3])}))
    second.start()
    while not committer._queue:  # the second thread is queued behind the running commit
        threading.Event().wait(0.001)
    go.set()
    first.join(10)
    second.join(10)
    assert batches == [[1], [2, 3]]
    assert results == {1: [10], 2: [20, 30]}
    assert not committer._leader and committer._finishing == 0 and committer._preparing == 0


def test_a_failed_commit_fails_its_whole_batch_and_the_next_one_works() -> None:
    fail = True

    def commit(items: list[int]) -> list[int]:
        if fail:
            raise OSError("disk gone")
        return items

    committer: GroupCommitter[int, int] = GroupCommitter(commit)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            committer.submit(lambda: [t])
        except OSError as exc:
            errors.append(exc)

    run_threads(work, 6)
    assert len(errors) == 6
    fail = False
    assert committer.submit(lambda: [7]) == [7]
    assert not committer._leader and committer._finishing == 0
