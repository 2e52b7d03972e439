"""Rotating the audit key: one chain across keys. A writer given the previous key as well hands the
trail over with a rotation record MACed with the old key; verify, given the keys, checks each
record with the key in force at its place; and the tampering a rotation makes possible is found."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_sdk_audit_keyed import TAMPERING, rehash, write_records

import agentobs_sdk
from agentobs_sdk import cli
from agentobs_sdk.audit import AuditError, AuditTrail, verify
from agentobs_sdk.audit.chain import record_hash
from agentobs_sdk.audit.keys import head_mac, key_id

OLD = b"the old audit key, 32 bytes long"
NEW = b"the new audit key, 32 bytes long"
EVIL = b"a key the attacker made, 32 byte"
ROTATION = "audit.key_rotation"


def fill(directory: Path, n: int, key: bytes, previous: bytes | None = None) -> None:
    with AuditTrail(directory, key=key, previous_key=previous, durability="fsync", anchor_sink=None,
                    agent_id="pod-1") as trail:
        for i in range(n):
            trail.append("tool_call", user="alice", details={"i": i})


def rotated(directory: Path) -> None:
    """Five records under OLD, the rotation (seq 6), five under NEW (seq 7..11)."""
    fill(directory, 5, OLD)
    fill(directory, 5, NEW, previous=OLD)


def records(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(directory.glob("audit-*.jsonl"))
            for line in path.read_bytes().splitlines()]


def trail_id(directory: Path) -> str:
    return (directory / "TRAIL").read_text().strip()


def sign_head(directory: Path, rec: dict[str, Any], key: bytes) -> None:
    """HEAD as a holder of `key` writes it."""
    (directory / "HEAD").write_text(json.dumps({"seq": rec["seq"], "hash": rec["hash"], "kid": key_id(key),
                                                "mac": head_mac(key, trail_id(directory), rec["seq"], rec["hash"])}))


def test_a_writer_given_the_previous_key_rotates_and_keeps_one_chain(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "agentobs_sdk")
    rotated(tmp_path)
    recs = records(tmp_path)
    assert [r["seq"] for r in recs] == list(range(1, 12))
    rotation = recs[5]
    assert rotation["action"] == ROTATION and rotation["agent_id"] == "pod-1"
    assert rotation["details"] == {"from_kid": key_id(OLD), "to_kid": key_id(NEW)}
    # The old key hands over; records after it are the new key's.
    assert record_hash(rotation, OLD) == rotation["hash"]
    assert all(record_hash(r, OLD) == r["hash"] for r in recs[:5])
    assert all(record_hash(r, NEW) == r["hash"] for r in recs[6:])
    assert json.loads((tmp_path / "HEAD").read_text())["kid"] == key_id(NEW)
    for keys in ([OLD, NEW], [NEW, OLD]):
        report = verify(tmp_path, keys=keys)
        assert report.ok and not report.problems, [p.describe() for p in report.problems]
    assert verify(tmp_path, key=NEW, keys=[OLD]).ok
    # The new key alone checks the records since the rotation and says what it could not check.
    report = verify(tmp_path, key=NEW)
    assert report.ok and [p.kind for p in report.warnings] == ["keyed_unchecked"]
    assert "6 keyed record(s)" in report.warnings[0].message
    # The old key alone is not the trail's key any more.
    assert "key" in {p.kind for p in verify(tmp_path, key=OLD).errors}
    assert f"rotated from id {key_id(OLD)}" in caplog.text
    # Writers after the rotation, with or without the previous key, add no second rotation.
    fill(tmp_path, 1, NEW, previous=OLD)
    fill(tmp_path, 1, NEW)
    assert [r["action"] for r in records(tmp_path)].count(ROTATION) == 1
    assert verify(tmp_path, keys=[OLD, NEW]).ok
    # No key material anywhere: records, HEAD, log.
    text = caplog.text + "".join(p.read_text() for p in tmp_path.iterdir() if p.is_file())
    assert OLD.decode() not in text and NEW.decode() not in text


def test_a_writer_still_on_the_old_key_stops_once_another_rotated(tmp_path: Path) -> None:
    """Two writers of one directory (processes of one pod): the one that started before the key
    changed must not go on MACing with the old key after the hand-over."""
    old_writer = AuditTrail(tmp_path, key=OLD, durability="fsync", anchor_sink=None)
    old_writer.append("before")
    fill(tmp_path, 1, NEW, previous=OLD)
    with pytest.raises(AuditError, match="is not the key the trail"):
        old_writer.append("after")
    old_writer.close()
    assert [r["action"] for r in records(tmp_path)] == ["before", ROTATION, "tool_call"]
    assert verify(tmp_path, keys=[OLD, NEW]).ok


def test_rotating_twice_verifies_with_all_three_keys(tmp_path: Path) -> None:
    rotated(tmp_path)
    fill(tmp_path, 2, EVIL, previous=NEW)  # any third key: the same hand-over again
    assert [r["action"] for r in records(tmp_path)].count(ROTATION) == 2
    assert verify(tmp_path, keys=[EVIL, OLD, NEW]).ok
    report = verify(tmp_path, keys=[EVIL, NEW])
    assert report.ok and [p.kind for p in report.warnings] == ["keyed_unchecked"]


def test_without_the_previous_key_the_writer_refuses_and_says_how_to_rotate(tmp_path: Path) -> None:
    fill(tmp_path, 3, OLD)
    with pytest.raises(AuditError, match="previous-key") as err:
        AuditTrail(tmp_path, key=NEW, anchor_sink=None)
    message = str(err.value)
    assert key_id(OLD) in message and key_id(NEW) in message
    assert OLD.decode() not in message and NEW.decode() not in message
    # A previous key that is not the trail's key does not help either.
    with pytest.raises(AuditError, match="is not the key the trail"):
        AuditTrail(tmp_path, key=NEW, previous_key=EVIL, anchor_sink=None)
    assert len(records(tmp_path)) == 3


def test_configure_reads_the_previous_key_beside_the_key_file(tmp_path: Path) -> None:
    """The webhook mounts the audit-key Secret's `key` and `previous-key` in one directory."""
    keys, audit = tmp_path / "audit-key", tmp_path / "audit"
    keys.mkdir()
    env = {"AGENTOBS_AUDIT_DIR": str(audit), "AGENTOBS_AUDIT_KEY_FILE": str(keys / "key")}
    (keys / "key").write_bytes(OLD)
    handle = agentobs_sdk.configure(env, json_logs=False)
    agentobs_sdk.audit_event("before")
    handle.shutdown()
    (keys / "key").write_bytes(NEW)
    (keys / "previous-key").write_bytes(OLD + b"\n")
    handle = agentobs_sdk.configure(env, json_logs=False)
    agentobs_sdk.audit_event("after")
    handle.shutdown()
    assert [r["action"] for r in records(audit)] == ["before", ROTATION, "after"]
    assert verify(audit, keys=[OLD, NEW]).ok


def test_cli_verify_takes_every_key_the_trail_was_written_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    trail, keys = tmp_path / "trail", tmp_path / "keys"
    keys.mkdir()
    rotated(trail)
    (keys / "key").write_bytes(NEW)
    (keys / "old.key").write_bytes(OLD)
    monkeypatch.delenv("AGENTOBS_AUDIT_KEY_FILE", raising=False)
    assert cli.main(["verify", str(trail), "--key-file", str(keys / "old.key"), "--key-file", str(keys / "key")]) == 0
    assert cli.main(["verify", str(trail), "--key-file", str(keys / "key")]) == 3  # 6 records unchecked
    # In the pod: the key file the variable names and the previous-key file beside it.
    (keys / "previous-key").write_bytes(OLD)
    monkeypatch.setenv("AGENTOBS_AUDIT_KEY_FILE", str(keys / "key"))
    capsys.readouterr()
    assert cli.main(["verify", str(trail)]) == 0
    assert capsys.readouterr().out.startswith("OK")


# --- tampering around a rotation --------------------------------------------------------------------


def forge_rotation(d: Path) -> None:
    """Someone without OLD hands the chain to a key of their own."""
    fill(d, 5, OLD)
    recs = records(d)
    recs.append({"seq": 6, "ts": recs[-1]["ts"], "action": ROTATION, "agent_id": "pod-1", "alg": "hmac-sha256",
                 "details": {"from_kid": key_id(OLD), "to_kid": key_id(EVIL)}, "prev": "", "hash": ""})
    recs.append({"seq": 7, "ts": recs[-1]["ts"], "action": "tool_call", "alg": "hmac-sha256", "prev": "", "hash": ""})
    rehash(recs, 5, EVIL)
    write_records(d, recs)
    sign_head(d, recs[-1], EVIL)


def edit_the_rotation_target(d: Path) -> None:
    """The rotation record's new key id changed, and the records after re-MACed with that key."""
    rotated(d)
    recs = records(d)
    recs[5]["details"]["to_kid"] = key_id(EVIL)
    recs[5]["hash"] = record_hash(recs[5], EVIL)  # without OLD, the best the attacker can do
    rehash(recs, 6, EVIL)
    write_records(d, recs)
    sign_head(d, recs[-1], EVIL)


def old_key_after_the_rotation(d: Path) -> None:
    """A holder of the old key (a pod not yet restarted, a leaked old key) goes on writing."""
    rotated(d)
    recs = records(d)
    recs.append({**recs[-1], "seq": 12, "details": {"i": 99}})
    rehash(recs, 11, OLD)
    write_records(d, recs)
    sign_head(d, recs[-1], OLD)


def drop_the_rotation(d: Path) -> None:
    rotated(d)
    recs = records(d)
    write_records(d, recs[:5] + recs[6:])


def drop_the_rotation_and_relink(d: Path) -> None:
    """A holder of the new key only removes the hand-over and re-chains what follows."""
    rotated(d)
    recs = records(d)
    recs = recs[:5] + recs[6:]
    for i, rec in enumerate(recs):
        rec["seq"] = i + 1
    rehash(recs, 5, NEW)
    write_records(d, recs)
    sign_head(d, recs[-1], NEW)


ROTATION_TAMPERING: dict[str, tuple[Callable[[Path], None], str]] = {
    "forged rotation record": (forge_rotation, "rotation"),
    "rotation record's new key changed": (edit_the_rotation_target, "rotation"),
    "old key used after the rotation": (old_key_after_the_rotation, "key"),
    "rotation record dropped": (drop_the_rotation, "removed"),
    "rotation record dropped, chain relinked": (drop_the_rotation_and_relink, "key"),
}


@pytest.mark.parametrize("name", list(ROTATION_TAMPERING))
def test_tampering_around_a_rotation_is_detected_and_the_writer_refuses(tmp_path: Path, name: str) -> None:
    tamper, kind = ROTATION_TAMPERING[name]
    tamper(tmp_path)
    before = len(records(tmp_path))
    # With the trail's keys this does not pass, nor with the attacker's key handed over as well,
    # which names what is wrong.
    assert not verify(tmp_path, keys=[OLD, NEW]).ok
    report = verify(tmp_path, keys=[OLD, NEW, EVIL])
    assert kind in {p.kind for p in report.errors}, (name, [p.describe() for p in report.problems])
    for key in (NEW, EVIL):
        with pytest.raises(AuditError, match=r"refusing|removed"):
            AuditTrail(tmp_path, key=key, previous_key=OLD, anchor_sink=None)
    assert len(records(tmp_path)) == before  # nothing was appended


@pytest.mark.parametrize("name", list(TAMPERING))
def test_the_tamper_suite_on_a_rotated_trail(tmp_path: Path, name: str) -> None:
    """The tampering of the keyed suite (test_sdk_audit_keyed), done to a trail whose key was rotated."""
    rotated(tmp_path)
    TAMPERING[name](tmp_path)
    assert not verify(tmp_path, keys=[OLD, NEW]).ok, name
    with pytest.raises(AuditError, match=r"refusing|removed"):
        AuditTrail(tmp_path, key=NEW, previous_key=OLD, anchor_sink=None)
