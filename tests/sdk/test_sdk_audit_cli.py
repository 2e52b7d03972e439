"""`agentobs-audit` as a scheduled job runs it: an exit code that passes only an intact trail whose
integrity was checked, and a message (exit 2) for inputs that are not what they should be."""

from __future__ import annotations

from pathlib import Path

import pytest

import agentobs_sdk as aobs
from agentobs_sdk import cli
from agentobs_sdk.audit import AuditTrail

KEY = b"k" * 16 + b"0123456789abcdef"


def fill(directory: Path, n: int = 3, key: bytes | None = None) -> None:
    with AuditTrail(directory, key=key, durability="fsync", anchor_sink=None) as trail:
        for i in range(n):
            trail.append("tool_call", user="alice", details={"i": i})


@pytest.mark.parametrize("with_key", [False, True], ids=["no key", "key"])
def test_a_wiped_trail_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str], with_key: bool) -> None:
    """TRAIL kept, every segment and HEAD removed: nothing is left to contradict, yet it is loss."""
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    trail = tmp_path / "trail"
    fill(trail, key=KEY if with_key else None)
    for seg in trail.glob("*.jsonl"):
        seg.unlink()
    (trail / "HEAD").unlink()
    args = ["verify", str(trail)] + (["--key-file", str(key_file)] if with_key else [])
    assert cli.main(args) == 1
    out = capsys.readouterr().out
    assert "HEAD is missing" in out and "FAILED" in out


@pytest.mark.parametrize("directory", ["/etc", "."])
def test_a_directory_that_is_not_a_trail_is_a_usage_error(directory: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["verify", directory]) == 2
    assert "not an audit trail" in capsys.readouterr().err
    # query too: "nothing matched" (1) would pass a wrong directory off as an answer
    assert cli.main(["query", directory, "--user", "alice"]) == 2
    assert "not an audit trail" in capsys.readouterr().err


@pytest.mark.parametrize("limit", ["0", "-1", "ten"])
def test_a_limit_that_is_not_a_positive_count_is_a_usage_error(tmp_path: Path, limit: str) -> None:
    fill(tmp_path)
    with pytest.raises(SystemExit) as exited:
        cli.main(["query", str(tmp_path), "--limit", limit])
    assert exited.value.code == 2


def test_a_fresh_trail_without_records_still_verifies(tmp_path: Path) -> None:
    fill(tmp_path, 0)
    assert cli.main(["verify", str(tmp_path)]) == 0


def test_another_key_is_reported_as_the_only_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trail = tmp_path / "trail"
    fill(trail, key=KEY)
    other = tmp_path / "other.key"
    other.write_bytes(b"another key of sixteen+ bytes")
    assert cli.main(["verify", str(trail), "--key-file", str(other)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out[:-1]] == ["ERROR key"]
    assert "not this trail's key" in out[0] and "NOT checked" in out[-1]


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_a_keyed_trail_verified_without_its_key_does_not_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch, as_json: bool) -> None:
    """A scheduled job without the key would otherwise pass an edited record."""
    monkeypatch.delenv("AGENTOBS_AUDIT_KEY_FILE", raising=False)
    fill(tmp_path, key=KEY)
    seg = next(tmp_path.glob("*.jsonl"))
    seg.write_bytes(seg.read_bytes().replace(b"alice", b"bobby", 1))
    assert cli.main(["verify", str(tmp_path)] + (["--json"] if as_json else [])) == 3
    if not as_json:
        assert "integrity not checked: no key" in capsys.readouterr().out
    key_file = tmp_path.parent / "key"
    key_file.write_bytes(KEY)
    assert cli.main(["verify", str(tmp_path), "--key-file", str(key_file)]) == 1


def test_verify_from_python_says_how_to_pass_a_key_file(tmp_path: Path) -> None:
    fill(tmp_path, key=KEY)
    key_file = tmp_path.parent / "audit.key"
    key_file.write_bytes(KEY)
    with pytest.raises(TypeError, match=r"load_key\(path\)"):
        aobs.verify(tmp_path, key=str(key_file))  # type: ignore[arg-type]
    assert aobs.verify(tmp_path, key=aobs.load_key(str(key_file))).ok
    with pytest.raises(aobs.AuditError, match="not an audit trail"):
        aobs.verify(tmp_path.parent)


def test_an_inverted_time_window_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(tmp_path)
    assert cli.main(["query", str(tmp_path), "--since", "2h", "--until", "3h"]) == 2
    assert "time window is empty" in capsys.readouterr().err
    assert cli.main(["query", str(tmp_path), "--since", "3h", "--until", "2h"]) == 1  # valid, just no match


def test_limit_keeps_the_oldest_matches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fill(tmp_path, 5)
    assert cli.main(["query", str(tmp_path), "--limit", "2"]) == 0
    assert [line.count('"seq"') for line in capsys.readouterr().out.splitlines()] == [1, 1]
    assert [r["seq"] for r in aobs.query(tmp_path, limit=2)] == [1, 2]
    query_parser = next(a for a in cli._parser()._actions if a.dest == "command").choices["query"]  # type: ignore[index]
    (limit,) = [a for a in query_parser._actions if "--limit" in a.option_strings]
    assert "oldest" in (limit.help or "")


def test_an_anchor_file_without_heads_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trail = tmp_path / "trail"
    fill(trail)
    empty = tmp_path / "heads.log"
    empty.write_text("an unrelated log line\n")
    assert cli.main(["verify", str(trail), "--anchor", str(empty)]) == 2
    assert f"no chain-head lines found in {empty}" in capsys.readouterr().err
