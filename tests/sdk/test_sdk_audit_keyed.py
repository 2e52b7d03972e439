"""The keyed audit chain and its anchors outside the pod: the tamper suite (each rewrite found by
verify, and the writer refusing to extend the damaged trail), the identity every helper-written
record carries, and timestamps that agree with sequence order across processes."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import agentobs_sdk
from agentobs_sdk import cli
from agentobs_sdk.audit import AnchoredHead, AuditError, AuditTrail, parse_anchor_lines, verify
from agentobs_sdk.audit.chain import canonical

KEY = b"k" * 16 + b"0123456789abcdef"


def write_trail(directory: Path, n: int = 10, key: bytes | None = KEY) -> list[AnchoredHead]:
    heads: list[AnchoredHead] = []
    with AuditTrail(directory, key=key, durability="fsync", anchor_sink=heads.append, agent_id="pod-1") as trail:
        for i in range(n):
            trail.append("tool_call", agent="researcher", user="alice", details={"i": i})
    return heads


def segment(directory: Path) -> Path:
    (path,) = sorted(directory.glob("audit-*.jsonl"))
    return path


def records(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in segment(directory).read_bytes().splitlines()]


def write_records(directory: Path, recs: list[dict[str, Any]]) -> None:
    segment(directory).write_bytes(b"".join(canonical(r) + b"\n" for r in recs))


def rehash(recs: list[dict[str, Any]], start: int, key: bytes | None) -> None:
    """What an attacker without the audit key can do: recompute the chain from `start` on."""
    for i in range(start, len(recs)):
        rec = recs[i]
        rec["prev"] = recs[i - 1]["hash"] if i else "0" * 64
        body = canonical({k: v for k, v in rec.items() if k != "hash"})
        rec["hash"] = (hmac.new(key, body, hashlib.sha256).hexdigest() if key
                       else hashlib.sha256(body).hexdigest())


def set_head(directory: Path, seq: int, digest: str) -> None:
    (directory / "HEAD").write_text(json.dumps({"seq": seq, "hash": digest}))


# Each tampering is done the way someone with write access to the pod's files but not the key would.
def edit_a_byte(d: Path) -> None:
    data = segment(d).read_bytes()
    segment(d).write_bytes(data.replace(b'"i":4}', b'"i":5}', 1))


def delete_a_line(d: Path) -> None:
    recs = records(d)
    write_records(d, recs[:4] + recs[5:])


def truncate(d: Path) -> None:
    write_records(d, records(d)[:7])


def reorder(d: Path) -> None:
    recs = records(d)
    recs[3], recs[4] = recs[4], recs[3]
    write_records(d, recs)


def rehash_after_edit(d: Path) -> None:
    recs = records(d)
    recs[4]["user"] = "mallory"
    rehash(recs, 4, b"a guessed key of 32 bytes.......")
    write_records(d, recs)
    set_head(d, recs[-1]["seq"], recs[-1]["hash"])


def drop_tail_rewrite_head(d: Path) -> None:
    recs = records(d)[:8]
    write_records(d, recs)
    set_head(d, 8, recs[-1]["hash"])


def drop_tail_delete_head(d: Path) -> None:
    # Without the key HEAD cannot be rewritten, but it can be removed along with the records.
    write_records(d, records(d)[:8])
    (d / "HEAD").unlink()


def downgrade_to_unkeyed(d: Path) -> None:
    recs = records(d)
    for rec in recs:
        rec.pop("alg")
    recs[2]["result"] = "denied"
    rehash(recs, 0, None)
    write_records(d, recs)
    set_head(d, recs[-1]["seq"], recs[-1]["hash"])


TAMPERING: dict[str, Callable[[Path], None]] = {
    "edit a byte": edit_a_byte, "delete a line": delete_a_line, "truncate": truncate, "reorder": reorder,
    "re-hash after an edit": rehash_after_edit, "drop the tail and rewrite HEAD": drop_tail_rewrite_head,
    "downgrade to an unkeyed chain": downgrade_to_unkeyed, "drop the tail and delete HEAD": drop_tail_delete_head,
}


def test_an_untouched_keyed_trail_verifies(tmp_path: Path) -> None:
    heads = write_trail(tmp_path)
    report = verify(tmp_path, key=KEY, anchors=heads)
    assert report.ok, [p.describe() for p in report.problems]
    assert report.keyed and report.records == 10 and report.anchors_checked >= 1
    assert all(r["alg"] == "hmac-sha256" for r in records(tmp_path))
    assert KEY.decode() not in (tmp_path / "HEAD").read_text()


@pytest.mark.parametrize("name", list(TAMPERING))
def test_tampering_is_detected_and_the_writer_refuses(tmp_path: Path, name: str) -> None:
    heads = write_trail(tmp_path)
    TAMPERING[name](tmp_path)
    report = verify(tmp_path, key=KEY, anchors=heads)
    assert not report.ok, name
    # Even without anchors, the key alone catches every one of these.
    assert not verify(tmp_path, key=KEY).ok, name
    with pytest.raises(AuditError, match=r"refusing|removed"):
        AuditTrail(tmp_path, key=KEY, anchor_sink=None)
    assert len(records(tmp_path)) <= 10  # nothing was appended


@pytest.mark.parametrize("key", [KEY, None], ids=["keyed", "unkeyed"])
@pytest.mark.parametrize("damage", [b"", b"not json"], ids=["deleted", "garbled"])
def test_a_writer_does_not_recreate_a_lost_head_over_records(tmp_path: Path, key: bytes | None,
                                                             damage: bytes) -> None:
    """Recreating HEAD from the tail at the next start would make a dropped tail verify clean."""
    write_trail(tmp_path, key=key)
    write_records(tmp_path, records(tmp_path)[:8])
    (tmp_path / "HEAD").unlink()
    if damage:
        (tmp_path / "HEAD").write_bytes(damage)
    with pytest.raises(AuditError, match="HEAD is missing or unreadable"):
        AuditTrail(tmp_path, key=key, anchor_sink=None)
    report = verify(tmp_path, key=key)
    assert not report.ok and any(p.kind == "head" for p in report.problems)  # the evidence stays
    assert len(records(tmp_path)) == 8


@pytest.mark.parametrize("key", [KEY, None], ids=["keyed", "unkeyed"])
def test_a_wiped_trail_is_not_restarted_at_seq_1(tmp_path: Path, key: bytes | None) -> None:
    """Every segment and HEAD removed, TRAIL kept: a writer starting the chain afresh under the
    same trail id would leave a trail that verifies clean and hides the removal."""
    write_trail(tmp_path, key=key)
    for path in tmp_path.glob("audit-*.jsonl"):
        path.unlink()
    (tmp_path / "HEAD").unlink()
    with pytest.raises(AuditError, match="HEAD is missing or unreadable"):
        AuditTrail(tmp_path, key=key, anchor_sink=None)
    assert not list(tmp_path.glob("audit-*.jsonl"))
    assert not verify(tmp_path, key=key).ok


@pytest.mark.parametrize("key", [KEY, None], ids=["keyed", "unkeyed"])
def test_a_trail_whose_creation_was_interrupted_before_trail_opens(tmp_path: Path, key: bytes | None) -> None:
    """A new trail writes HEAD before TRAIL: a crash between the two leaves a HEAD of seq 0 and
    no TRAIL, which the next writer takes as a new trail, not as damage."""
    with AuditTrail(tmp_path, key=key, anchor_sink=None):
        pass
    (tmp_path / "TRAIL").unlink()
    with AuditTrail(tmp_path, key=key, anchor_sink=None) as trail:
        assert trail.append("tool_call", user="alice").seq == 1
    assert verify(tmp_path, key=key).ok


def test_a_replayed_old_head_is_caught_only_by_the_anchor(tmp_path: Path) -> None:
    """The limit of a local check: someone who saved HEAD when seq 8 was newest, drops 9..10 and
    puts that HEAD back leaves a chain that is valid by itself. The copy shipped out catches it."""
    heads: list[AnchoredHead] = []
    trail = AuditTrail(tmp_path, key=KEY, durability="fsync", anchor_sink=heads.append)
    for i in range(8):
        trail.append("tool_call", details={"i": i})
    saved_head = (tmp_path / "HEAD").read_bytes()
    for i in range(8, 10):
        trail.append("tool_call", details={"i": i})
    trail.close()  # anchors seq 10
    write_records(tmp_path, records(tmp_path)[:8])
    (tmp_path / "HEAD").write_bytes(saved_head)
    assert verify(tmp_path, key=KEY).ok
    report = verify(tmp_path, key=KEY, anchors=heads)
    assert [p.kind for p in report.errors] == ["anchored"]
    assert "removed from the end" in report.errors[0].message


def test_without_the_key_verify_says_what_it_could_not_check(tmp_path: Path) -> None:
    write_trail(tmp_path)
    edit_a_byte(tmp_path)
    report = verify(tmp_path)
    assert [p.kind for p in report.warnings] == ["keyed_unchecked"]
    with pytest.raises(AuditError, match="without its key"):
        AuditTrail(tmp_path, anchor_sink=None)  # an unkeyed writer must not extend a keyed trail


def test_a_wrong_key_is_named_as_such(tmp_path: Path) -> None:
    write_trail(tmp_path)
    other = b"another key of sixteen+ bytes"
    report = verify(tmp_path, key=other)
    assert "key" in {p.kind for p in report.errors}
    # A writer given it says the same, not that the last record "does not match its hash"
    # (which reads as tampering), and names neither key, only their ids.
    with pytest.raises(AuditError, match=r"is not the key the trail .* was written with") as err:
        AuditTrail(tmp_path, key=other, anchor_sink=None)
    assert "does not match" not in str(err.value)
    assert other.decode() not in str(err.value) and KEY.decode() not in str(err.value)


def test_anchored_heads_go_to_stderr_as_json_log_lines(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with AuditTrail(tmp_path, key=KEY, durability="fsync", agent_id="pod-1") as trail:
        trail.append("x")
        trail.append("y")
    err = capfd.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if "audit_head" in line]
    assert lines and lines[-1]["level"] == "INFO" and lines[-1]["logger"] == "agentobs.audit"
    heads = parse_anchor_lines(err.splitlines())
    assert [(h.seq, h.agent_id) for h in heads] == [(0, "pod-1"), (2, "pod-1")]
    # What comes back from Elasticsearch parses too.
    es = json.dumps({"hits": {"hits": [{"_source": lines[-1]}]}})
    assert parse_anchor_lines([es]) == [heads[-1]]


def test_anchored_heads_carry_the_logger_the_stacks_fluentd_routes_to_the_audit_index(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Under another logger name the heads would land in the logs index, expire with the logs,
    and `verify --anchor` against the audit index would have nothing to check."""
    from agentobs.render import fluentd  # the operator: on the path the project's test run sets

    with AuditTrail(tmp_path, agent_id="pod-1") as trail:
        trail.append("x")
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if "audit_head" in line]
    assert lines and {line["logger"] for line in lines} == {fluentd.AUDIT_LOGGER}  # matched as ^...$


def test_cli_verify_with_key_and_anchor_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trail_dir = tmp_path / "trail"
    heads = write_trail(trail_dir)
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")
    anchors = tmp_path / "anchors.log"
    anchors.write_text("some unrelated line\n" + "\n".join(
        "2026-01-01 stderr F " + json.dumps({"audit_head": h.to_json()}) for h in heads) + "\n")
    assert cli.main(["verify", str(trail_dir), "--key-file", str(key_file), "--anchor", str(anchors)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "MACs checked" in out and KEY.decode() not in out
    drop_tail_rewrite_head(trail_dir)
    assert cli.main(["verify", str(trail_dir), "--key-file", str(key_file), "--anchor", str(anchors)]) == 1
    assert "removed from the end" in capsys.readouterr().out


def test_helper_records_carry_the_instance_id_and_queries_find_either(tmp_path: Path) -> None:
    handle = agentobs_sdk.configure({"AGENTOBS_AUDIT_DIR": str(tmp_path), "AGENTOBS_AGENT_ID": "researcher-7f9c"},
                                    json_logs=False)
    with agentobs_sdk.agent_run("researcher"):
        for _ in range(3):
            with agentobs_sdk.tool_call("search", audit=True, user="alice"):
                pass
        with agentobs_sdk.decision("route", choice="answer", audit=True):
            pass
    agentobs_sdk.audit_event("login", user="alice")
    handle.shutdown()
    recs = agentobs_sdk.query(tmp_path)
    assert len(recs) == 5
    assert all(r["agent_id"] == "researcher-7f9c" for r in recs)
    assert [r["agent"] for r in recs] == ["researcher"] * 4 + ["researcher-7f9c"]
    assert len(agentobs_sdk.query(tmp_path, agent="researcher-7f9c")) == 5
    assert len(agentobs_sdk.query(tmp_path, agent="researcher")) == 4
    assert len(agentobs_sdk.query(tmp_path, agent_id="researcher-7f9c", action="tool_call")) == 3
    assert cli.main(["query", str(tmp_path), "--agent-id", "researcher-7f9c", "--action", "decision"]) == 0


def test_audit_event_names_the_agent_run_and_the_trace_like_helper_records(tmp_path: Path) -> None:
    handle = agentobs_sdk.configure({"AGENTOBS_AUDIT_DIR": str(tmp_path), "AGENTOBS_AGENT_ID": "researcher-7f9c"},
                                    json_logs=False)
    with agentobs_sdk.agent_run("researcher"):
        with agentobs_sdk.tool_call("search", audit=True) as tool:
            agentobs_sdk.audit_event("login", user="alice", details={"method": "sso"})
        agentobs_sdk.audit_event("logout", agent="named-by-caller")
    handle.shutdown()
    login, helper, logout = agentobs_sdk.query(tmp_path)
    trace_id = f"{tool.span.get_span_context().trace_id:032x}"
    assert (login["agent"], login["agent_id"]) == (helper["agent"], helper["agent_id"]) == ("researcher",
                                                                                             "researcher-7f9c")
    assert login["details"] == {"method": "sso", "trace_id": trace_id} and helper["details"]["trace_id"] == trace_id
    assert logout["agent"] == "named-by-caller" and logout["details"]["trace_id"] == trace_id


def test_configure_keys_the_trail_from_the_injected_key_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    audit = tmp_path / "audit"
    handle = agentobs_sdk.configure({"AGENTOBS_AUDIT_DIR": str(audit), "AGENTOBS_AUDIT_KEY_FILE": str(key_file)},
                                    json_logs=False)
    assert handle.audit is not None and handle.audit.keyed
    agentobs_sdk.audit_event("x")
    handle.shutdown()
    assert verify(audit, key=KEY).ok and verify(audit, key=KEY).keyed
    key_file.write_bytes(b"short")
    with pytest.raises(AuditError, match="at least 16"):
        agentobs_sdk.configure({"AGENTOBS_AUDIT_DIR": str(audit), "AGENTOBS_AUDIT_KEY_FILE": str(key_file)},
                               json_logs=False)


CHILD = """
import sys
from agentobs_sdk.audit import AuditTrail
trail = AuditTrail(sys.argv[1], durability="group", anchor_sink=None)
for i in range(int(sys.argv[2])):
    trail.append("write", details={"i": i})
trail.close()
"""


def test_timestamps_follow_sequence_order_across_processes(tmp_path: Path) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), "300"]) for _ in range(4)]
    for p in procs:
        assert p.wait(timeout=300) == 0
    recs = agentobs_sdk.query(tmp_path)
    assert [r["seq"] for r in recs] == list(range(1, 1201))
    stamps = [datetime.fromisoformat(r["ts"].replace("Z", "+00:00")) for r in recs]
    disorder = sum(1 for a, b in itertools.pairwise(stamps) if b < a)
    assert disorder == 0


def test_an_absent_key_file_means_unkeyed_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The Secret volume is optional (pods outside the resource's namespace): the agent still starts."""
    with caplog.at_level("WARNING", logger="agentobs_sdk"):
        handle = agentobs_sdk.configure({"AGENTOBS_AUDIT_DIR": str(tmp_path / "a"),
                                         "AGENTOBS_AUDIT_KEY_FILE": str(tmp_path / "absent" / "key")},
                                        json_logs=False)
    assert handle.audit is not None and not handle.audit.keyed
    assert any("UNKEYED" in r.getMessage() and "absent" in r.getMessage() for r in caplog.records)
    handle.shutdown()


def test_two_pods_of_one_agent_are_told_apart_without_an_agent_id(tmp_path: Path) -> None:
    """The webhook injects the pod name in OTEL_RESOURCE_ATTRIBUTES; it names the instance."""
    for pod in ("researcher-0", "researcher-1"):
        handle = agentobs_sdk.configure({"OTEL_SERVICE_NAME": "researcher", "AGENTOBS_AUDIT_DIR": str(tmp_path / pod),
                                         "OTEL_RESOURCE_ATTRIBUTES": f"k8s.pod.name={pod}"}, json_logs=False)
        with agentobs_sdk.agent_run("researcher"), agentobs_sdk.tool_call("t", audit=True):
            pass
        handle.shutdown()
    ids = {r["agent_id"] for pod in ("researcher-0", "researcher-1") for r in agentobs_sdk.query(tmp_path / pod)}
    assert ids == {"researcher-0", "researcher-1"}
