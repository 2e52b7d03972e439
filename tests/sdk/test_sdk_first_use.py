"""What a developer trying the SDK from sdk/README.md runs into: each mistake the guide makes easy
gets a message that names the variable involved and what to do, instead of silence, a raw
traceback, or a hint that leads nowhere."""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import agentobs_sdk
from agentobs_sdk import config
from agentobs_sdk.audit import AuditError, AuditTrail, parse_anchor_lines

KEY = b"k" * 16 + b"0123456789abcdef"


def _messages(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= level]


def test_a_key_file_without_an_audit_dir_is_said_to_keep_no_trail(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    key_file = tmp_path / "audit.key"
    key_file.write_bytes(KEY)
    with caplog.at_level(logging.WARNING, logger="agentobs_sdk"):
        handle = agentobs_sdk.configure({"AGENTOBS_AUDIT_KEY_FILE": str(key_file)}, json_logs=False)
    assert handle.audit is None
    (line,) = [m for m in _messages(caplog) if "AGENTOBS_AUDIT_KEY_FILE is set" in m]
    assert "AGENTOBS_AUDIT_DIR is not" in line and "no audit trail" in line


def test_a_key_for_an_unkeyed_trail_says_to_use_a_new_directory(tmp_path: Path) -> None:
    """`verify` finds nothing wrong with an unkeyed trail, so "run verify" would lead nowhere."""
    with AuditTrail(tmp_path, anchor_sink=None) as trail:
        trail.append("login")
    with pytest.raises(AuditError) as raised:
        AuditTrail(tmp_path, key=KEY, anchor_sink=None)
    message = str(raised.value)
    assert "new directory" in message and "AGENTOBS_AUDIT_DIR" in message
    assert "keyed or not from its first record" in message
    assert "run `agentobs-audit verify`" not in message


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_missing_ca_file_turns_span_export_off_and_says_why(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                              protocol: str) -> None:
    missing = str(tmp_path / "no-ca.pem")
    with caplog.at_level(logging.INFO, logger="agentobs_sdk"):
        handle = agentobs_sdk.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://127.0.0.1:4317",
                                         "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                                         "OTEL_EXPORTER_OTLP_CERTIFICATE": missing}, json_logs=False)
    assert not handle.exporting
    (error,) = _messages(caplog, logging.ERROR)
    assert "OTEL_EXPORTER_OTLP_CERTIFICATE" in error and missing in error and "not exported" in error
    (announced,) = [m for m in _messages(caplog) if "configured service" in m]
    assert "OTEL_EXPORTER_OTLP_CERTIFICATE" in announced and "not set" not in announced.split(";")[0]
    with agentobs_sdk.agent_run("a"):  # the agent runs on
        pass


def test_an_audit_dir_that_cannot_be_created_names_the_variable() -> None:
    with pytest.raises(AuditError, match=r"AGENTOBS_AUDIT_DIR='/proc/nope'.*No such file"):
        agentobs_sdk.configure({"AGENTOBS_AUDIT_DIR": "/proc/nope"}, json_logs=False)
    assert agentobs_sdk.current_handle() is None


def test_shutdown_says_before_it_waits_for_a_final_scrape(caplog: pytest.LogCaptureFixture) -> None:
    handle = agentobs_sdk.configure({"AGENTOBS_METRICS_PORT": "0", "AGENTOBS_METRICS_LINGER_SECONDS": "0.2"},
                                    metrics_addr="127.0.0.1", json_logs=False)
    with caplog.at_level(logging.INFO, logger="agentobs_sdk"):
        handle.shutdown()
    said = [r.getMessage() for r in caplog.records]
    waits = next(i for i, m in enumerate(said) if "waits up to 0.2s" in m)
    assert "AGENTOBS_METRICS_LINGER_SECONDS=0" in said[waits]
    assert caplog.records[waits].levelno == logging.INFO
    assert waits < next(i for i, m in enumerate(said) if "no scrape within" in m)


def test_an_audit_request_says_why_no_trail_keeps_it(caplog: pytest.LogCaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def audited_once() -> str:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="agentobs_sdk"), agentobs_sdk.tool_call("t", audit=True):
            pass
        (line,) = [m for m in _messages(caplog) if "audit requested for tool_call" in m]
        return line

    monkeypatch.setattr(config, "_shut_down", False)  # as in a fresh process (earlier tests shut down)
    monkeypatch.setattr(config, "said_no_trail", set())
    assert "configure() has not been called" in audited_once()
    with caplog.at_level(logging.WARNING, logger="agentobs_sdk"):
        for _ in range(3):  # an audited tool in a loop: said once, not on every call
            with agentobs_sdk.tool_call("t", audit=True):
                pass
    assert len([m for m in _messages(caplog) if "audit requested for tool_call" in m]) == 1
    handle = agentobs_sdk.configure({}, json_logs=False)
    assert "AGENTOBS_AUDIT_DIR is not set" in audited_once()
    handle.shutdown()
    assert "shut down" in audited_once()


@pytest.mark.parametrize(("env", "said"), [
    ({"OTEL_SDK_DISABLED": "yes"}, "OTEL_SDK_DISABLED='yes' is neither true nor false"),
    ({"OTEL_TRACES_EXPORTER": "console"}, "OTEL_TRACES_EXPORTER='console' is not supported"),
])
def test_otel_values_the_sdk_does_not_act_on_are_logged(env: dict[str, str], said: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="agentobs_sdk"):
        handle = agentobs_sdk.configure(env, json_logs=False)
    assert not handle.settings.sdk_disabled
    assert any(said in m for m in _messages(caplog))


def test_traces_exporter_none_turns_span_export_off(caplog: pytest.LogCaptureFixture) -> None:
    """What the webhook injects when the resource's tracing is off (with no OTLP variables, or
    next to ones the pod set itself)."""
    with caplog.at_level(logging.INFO, logger="agentobs_sdk"):
        handle = agentobs_sdk.configure({"OTEL_TRACES_EXPORTER": "none",
                                         "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, json_logs=False)
    assert not handle.exporting
    (announced,) = [m for m in _messages(caplog, logging.INFO) if "configured service" in m]
    assert "OTEL_TRACES_EXPORTER=none" in announced
    handle.shutdown()
    handle = agentobs_sdk.configure({"OTEL_TRACES_EXPORTER": "otlp",
                                     "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, json_logs=False)
    assert handle.exporting


def test_an_agent_that_never_calls_shutdown_still_closes_its_trail(tmp_path: Path) -> None:
    program = ("import agentobs_sdk as aobs\n"
               f"aobs.configure({{'AGENTOBS_AUDIT_DIR': {str(tmp_path)!r}}}, json_logs=False)\n"
               "aobs.audit_event('login')\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    heads = parse_anchor_lines(done.stderr.splitlines())
    assert [h.seq for h in heads] == [0, 1]  # opened empty, closed at exit after one record


def test_shutdown_is_registered_at_exit_once_and_unregistered_by_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    registered: list[object] = []
    real_register, real_unregister = atexit.register, atexit.unregister

    def register(fn: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(fn, "__self__", None).__class__ is agentobs_sdk.Handle:
            registered.append(fn)
        return real_register(fn, *args, **kwargs)

    def unregister(fn: Any) -> None:
        if fn in registered:
            registered.remove(fn)
        real_unregister(fn)

    monkeypatch.setattr(atexit, "register", register)
    monkeypatch.setattr(atexit, "unregister", unregister)
    handle = agentobs_sdk.configure({}, json_logs=False)
    assert agentobs_sdk.configure({}, json_logs=False) is handle
    assert registered == [handle.shutdown]
    handle.shutdown()
    assert registered == []


def test_audit_event_without_a_trail_says_why_the_record_is_not_kept(caplog: pytest.LogCaptureFixture,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def dropped() -> str:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="agentobs_sdk"):
            assert agentobs_sdk.audit_event("login", user="alice") is None
        (line,) = [m for m in _messages(caplog) if "audit requested for login" in m]
        return line

    monkeypatch.setattr(config, "_shut_down", False)
    monkeypatch.setattr(config, "said_no_trail", set())
    assert "configure() has not been called" in dropped()
    handle = agentobs_sdk.configure({}, json_logs=False)
    assert "AGENTOBS_AUDIT_DIR is not set" in dropped()
    handle.shutdown()
    assert "shut down" in dropped()
