"""Audit values of common types are stored in their natural text: details (UUID, Decimal, Path,
datetime/date/time, Enum, nested) and the agent/user/result/resource fields (numbers and UUIDs as
text, so `query --user 123` finds them; other types refused). Records written before, with reprs
and JSON numbers, still verify and are found."""

from __future__ import annotations

import enum
import json
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any
from uuid import UUID

import pytest

from agentobs_sdk import cli
from agentobs_sdk.audit import AuditTrail, query, verify
from agentobs_sdk.audit import writer as writer_module

ID = UUID("12345678-1234-5678-1234-567812345678")


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


def _stored_line(directory: Path) -> dict[str, Any]:
    [segment] = [p for p in directory.iterdir() if p.suffix == ".jsonl"]
    return dict(json.loads(segment.read_bytes().splitlines()[-1]))


def test_details_of_common_types_are_stored_as_their_text(tmp_path: Path) -> None:
    details = {"id": ID, "amount": Decimal("12.50"), "file": PurePosixPath("/data/in.csv"),
               "at": datetime(2026, 1, 31, 12, 0, tzinfo=UTC), "day": date(2026, 1, 31), "time": time(8, 30),
               "colour": Colour.RED, "level": Level.HIGH,
               "nested": {"ids": [ID, (Colour.RED, Decimal("1"))], ID: "uuid key", Colour.RED: "enum key"}}
    with AuditTrail(tmp_path, anchor_sink=None) as trail:
        trail.append("x", details=details)
    stored = _stored_line(tmp_path)["details"]
    assert stored == {"id": str(ID), "amount": "12.50", "file": "/data/in.csv", "at": "2026-01-31T12:00:00+00:00",
                      "day": "2026-01-31", "time": "08:30:00", "colour": "red", "level": 3,
                      "nested": {"ids": [str(ID), ["red", "1"]], str(ID): "uuid key", "red": "enum key"}}
    assert query(tmp_path)[0]["details"] == stored
    assert verify(tmp_path).ok


def test_numeric_and_uuid_fields_are_text_that_queries_find(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    with AuditTrail(tmp_path, anchor_sink=None) as trail:
        trail.append("login", user=123, resource=ID, result="ok")
        trail.append("login", user=Decimal("7"), agent=Level.HIGH)  # type: ignore[typeddict-item]
        for bad in (True, {"id": 1}, object()):
            with pytest.raises(TypeError, match="'user' must be a str"):
                trail.append("login", user=bad)  # type: ignore[typeddict-item]
        with pytest.raises(ValueError, match="finite"):
            trail.append("login", user=float("nan"))  # type: ignore[typeddict-item]
    first, second = query(tmp_path)
    assert (first["user"], first["resource"]) == ("123", str(ID))
    assert (second["user"], second["agent"]) == ("7", "3")
    assert cli.main(["query", str(tmp_path), "--user", "123"]) == 0
    assert [json.loads(line)["seq"] for line in capsys.readouterr().out.splitlines()] == [1]
    assert verify(tmp_path).ok


def _old_normalise(details: Any) -> Any:
    """What the writer stored before: repr for anything JSON has no type for."""
    def plain(value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, datetime):
            return value.isoformat()
        return repr(value)
    return plain(details)


def test_records_written_the_old_way_still_verify_and_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with monkeypatch.context() as old:
        old.setattr(writer_module, "normalise_details", _old_normalise)
        old.setattr(writer_module, "field_text", lambda name, value: value, raising=False)  # stored as given
        with AuditTrail(tmp_path, anchor_sink=None) as trail:
            trail.append("login", user=123, details={"id": ID, "colour": Colour.RED})
    assert _stored_line(tmp_path)["user"] == 123  # a JSON number, as the old writer left it
    with AuditTrail(tmp_path, anchor_sink=None) as trail:  # opening verifies the whole trail
        trail.append("login", user=123, details={"id": ID})
    assert verify(tmp_path).ok
    old_rec, new_rec = query(tmp_path, user="123")
    assert old_rec["details"] == {"id": repr(ID), "colour": repr(Colour.RED)}
    assert new_rec["details"] == {"id": str(ID)}
    assert cli.main(["query", str(tmp_path), "--user", "123"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
