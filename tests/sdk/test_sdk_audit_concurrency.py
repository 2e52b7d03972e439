"""Audit trail under concurrency and crashes: threads and processes share one chain, group commit
batches fsyncs yet acknowledges only durable records, and SIGKILL loses no acknowledged record."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from audit_support import run_threads

from agentobs_sdk.audit import AuditTrail, query, store, verify

CHILD = """
import sys, threading
from agentobs_sdk.audit import AuditTrail

directory, mode, tag, count, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
trail = AuditTrail(directory, durability=mode, max_bytes=8192)
out = threading.Lock()

def work(t):
    i = 0
    while count < 0 or i < count:
        receipt = trail.append("write", agent=tag, user=f"t{t}", details={"i": i})
        with out:  # printed only after append() returned: the record is acknowledged
            sys.stdout.write(f"{receipt.seq} {tag} {t} {i}\\n")
            sys.stdout.flush()
        i += 1

workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
trail.close()
"""


@pytest.fixture
def child_script(tmp_path: Path) -> Path:
    path = tmp_path / "audit_child.py"
    path.write_text(CHILD)
    return path


def _assert_one_valid_chain(directory: Path, expected: int) -> None:
    report = verify(directory)
    assert report.ok, [p.describe() for p in report.problems]
    assert report.records == expected
    assert (report.first_seq, report.last_seq) == (1, expected)


@pytest.mark.parametrize("mode", ["fsync", "group"])
def test_threads_share_one_chain(tmp_path: Path, mode: str) -> None:
    trail = AuditTrail(tmp_path, durability=mode, max_bytes=16384)  # type: ignore[arg-type]
    seqs: list[int] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(40):
            seq = trail.append("write", user=f"t{t}", details={"i": i}).seq
            with lock:
                seqs.append(seq)

    run_threads(work, 8)
    trail.close()
    assert sorted(seqs) == list(range(1, 321))
    _assert_one_valid_chain(tmp_path, 320)
    seen = Counter((r["user"], r["details"]["i"]) for r in query(tmp_path))
    assert len(seen) == 320 and set(seen.values()) == {1}


def test_group_commit_batches_fsyncs_and_acks_only_durable_records(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    real_sync = store.sync_data
    synced: dict[str, int] = {}  # file -> size known durable
    calls = 0
    guard = threading.Lock()

    def slow_sync(fd: int) -> None:
        nonlocal calls
        time.sleep(0.01)  # a slow disk, so appenders pile up behind the leader
        real_sync(fd)
        with guard:
            calls += 1
            synced[os.readlink(f"/proc/self/fd/{fd}")] = os.fstat(fd).st_size

    monkeypatch.setattr(store, "sync_data", slow_sync)
    trail = AuditTrail(tmp_path, durability="group")
    acked: list[tuple[int, str, int]] = []

    def work(t: int) -> None:
        for _ in range(15):
            receipt = trail.append("write", user=f"t{t}")
            path = os.path.join(trail.directory, receipt.file)
            with guard:
                acked.append((receipt.seq, path, synced.get(path, 0)))

    run_threads(work, 8)
    trail.close()
    _assert_one_valid_chain(tmp_path, 120)
    assert calls < 120, "group commit should need fewer fsyncs than records"
    # Every acknowledged record lay inside the bytes already fsynced when append() returned.
    ends: dict[int, int] = {}
    for seg in sorted(tmp_path.glob("audit-*.jsonl")):
        offset = 0
        for line in seg.read_bytes().splitlines(keepends=True):
            offset += len(line)
            ends[json.loads(line)["seq"]] = offset
    for seq, _path, durable in acked:
        assert ends[seq] <= durable, f"seq {seq} acknowledged before it was durable"


@pytest.mark.parametrize("mode", ["fsync", "group"])
def test_processes_share_one_chain(tmp_path: Path, child_script: Path, mode: str) -> None:
    trail_dir = tmp_path / "trail"
    procs = [subprocess.Popen([sys.executable, str(child_script), str(trail_dir), mode, f"p{n}", "60", "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in range(4)]
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err.decode()
        outputs.append(out.decode())
    _assert_one_valid_chain(trail_dir, 4 * 2 * 60)
    printed = [line.split() for out in outputs for line in out.splitlines()]
    assert len({int(seq) for seq, *_ in printed}) == 480
    stored = Counter((r["agent"], r["user"], r["details"]["i"]) for r in query(trail_dir))
    assert len(stored) == 480 and set(stored.values()) == {1}
    assert len(list(trail_dir.glob("audit-*.jsonl"))) > 1  # rotation happened under contention too


def _read_acks(proc: subprocess.Popen[bytes], want: int, timeout: float) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while len(lines) < want:
        if time.monotonic() > deadline:
            raise TimeoutError(f"child acknowledged only {len(lines)} records")
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.decode())
    return lines


@pytest.mark.parametrize(("mode", "threads"), [("fsync", 1), ("group", 4)])
def test_sigkill_mid_writing_loses_no_acknowledged_record(tmp_path: Path, child_script: Path,
                                                          mode: str, threads: int) -> None:
    trail_dir = tmp_path / "trail"
    proc = subprocess.Popen([sys.executable, str(child_script), str(trail_dir), mode, "victim", "-1",
                             str(threads)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = _read_acks(proc, 300, timeout=120)
        os.kill(proc.pid, signal.SIGKILL)  # while it is still appending
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    acked = {int(line.split()[0]) for line in lines + rest.decode().splitlines() if line.strip()}
    assert len(acked) >= 300

    report = verify(trail_dir)  # before any repair: a torn tail is a warning at most
    assert report.ok, [p.describe() for p in report.problems]
    assert {p.kind for p in report.problems} <= {"torn_tail"}
    present = {r["seq"] for r in query(trail_dir)}
    assert acked <= present, f"lost acknowledged records: {sorted(acked - present)[:10]}"

    with AuditTrail(trail_dir) as trail:  # the next writer repairs and continues the chain
        assert trail.append("after_kill").seq == max(present) + 1
    report = verify(trail_dir)
    assert report.ok and report.problems == []
    assert report.records == len(present) + 1


def test_forked_child_gets_its_own_lock(tmp_path: Path) -> None:
    """A child forked from a process with an open trail (multiprocessing's default on Linux).

    The fork happens in a fresh interpreter: forking the test runner itself, after other tests left
    gRPC and HTTP-client threads behind, can deadlock the child in those libraries, not in ours."""
    script = f"""
import multiprocessing, sys
from agentobs_sdk.audit import AuditTrail
trail = AuditTrail({str(tmp_path)!r}, durability="fsync")
trail.append("before_fork")

def child():
    for i in range(150):
        trail.append("child", details={{"i": i}})

proc = multiprocessing.get_context("fork").Process(target=child)
proc.start()
for i in range(150):
    trail.append("parent", details={{"i": i}})
proc.join(timeout=120)
trail.close()
sys.exit(proc.exitcode)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    _assert_one_valid_chain(tmp_path, 301)
    assert Counter(r["action"] for r in query(tmp_path)) == {"before_fork": 1, "child": 150, "parent": 150}
