"""JSON log formatter: one strict-JSON line per record, correlated with spans, never raising."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import agentobs_sdk
from agentobs_sdk.logs import JsonFormatter


def _record(msg: str = "hello %s", args: Any = ("world",), **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("agent.core", logging.INFO, __file__, 10, msg, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def _line(formatter: JsonFormatter, record: logging.LogRecord) -> dict[str, Any]:
    text = formatter.format(record)
    assert "\n" not in text
    parsed = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert isinstance(parsed, dict)
    return parsed


def test_basic_fields() -> None:
    out = _line(JsonFormatter(agent_id="agent-1", service="svc"), _record())
    assert out["message"] == "hello world"
    assert out["level"] == "INFO"
    assert out["logger"] == "agent.core"
    assert out["agent_id"] == "agent-1"
    assert out["service"] == "svc"
    assert out["ts"].endswith("Z") and "T" in out["ts"]
    assert "trace_id" not in out  # no active span


def test_trace_and_span_ids_of_the_current_span(sdk: agentobs_sdk.Handle) -> None:
    with agentobs_sdk.tool_call("lookup") as op:
        out = _line(JsonFormatter(), _record())
        ctx = op.span.get_span_context()
    assert out["trace_id"] == format(ctx.trace_id, "032x")
    assert out["span_id"] == format(ctx.span_id, "016x")
    assert len(out["trace_id"]) == 32 and len(out["span_id"]) == 16


class _Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


def test_unserialisable_extras_fall_back_to_repr() -> None:
    circular: dict[str, Any] = {"name": "loop"}
    circular["self"] = circular

    class Thing:
        def __repr__(self) -> str:
            return "<Thing 42>"

    out = _line(JsonFormatter(), _record(
        thing=Thing(), raw=b"\x00\xff", numbers={1, 2}, nan=float("nan"), circular=circular,
        tuple_keys={(1, 2): "pair"}, unprintable=_Unprintable(), fine={"a": [1, 2.5, None, True]},
    ))
    assert out["thing"] == "<Thing 42>"
    assert out["raw"] == repr(b"\x00\xff")
    assert out["numbers"] in ([1, 2], [2, 1], repr({1, 2}))
    assert out["nan"] == "nan"
    assert out["circular"]["name"] == "loop"
    assert "(1, 2)" in json.dumps(out["tuple_keys"])
    assert out["unprintable"] == "<unrepresentable _Unprintable>"
    assert out["fine"] == {"a": [1, 2.5, None, True]}


def test_extras_never_replace_the_formatters_own_fields() -> None:
    out = _line(JsonFormatter(agent_id="real"), _record(agent_id="spoofed", level="fake"))
    assert out["agent_id"] == "real"
    assert out["level"] == "INFO"
    assert out["extra_agent_id"] == "spoofed"
    assert out["extra_level"] == "fake"


def test_broken_message_template_is_kept_not_raised() -> None:
    out = _line(JsonFormatter(), _record("%d items", ("many",)))
    assert "%d items" in out["message"] and "many" in out["message"]


def test_exception_text_is_included() -> None:
    try:
        raise ValueError("bad input")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    out = _line(JsonFormatter(), record)
    assert "ValueError: bad input" in out["exception"]
    assert "Traceback" in out["exception"]


def test_one_line_per_record_through_a_real_handler() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(agent_id="a"))
    logger = logging.getLogger("agentobs.test.lines")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("first\nwith a newline", extra={"step": 1})
        logger.warning("second", extra={"obj": object()})
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["message"] == "first\nwith a newline"
    assert json.loads(lines[0])["step"] == 1
    assert json.loads(lines[1])["obj"].startswith("<object object")


@pytest.fixture
def root_logging() -> Any:
    """The root logger as an application configured it before configure(); restored afterwards."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), logging.getLogger("agentobs_sdk").level)
    yield root
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    logging.getLogger("agentobs_sdk").setLevel(saved[2])


def test_trace_ids_reach_logging_the_application_configured_first(root_logging: logging.Logger) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s trace=%(trace_id)s span=%(span_id)s"))
    root_logging.handlers[:] = [handler]  # e.g. logging.basicConfig(...) before configure()
    root_logging.setLevel(logging.INFO)
    handle = agentobs_sdk.configure({"AGENTOBS_AGENT_ID": "a"})
    assert handle.log_handler is None  # the application's handler is kept, not replaced
    with agentobs_sdk.tool_call("t") as tool:
        logging.getLogger("agent").info("inside")
    logging.getLogger("agent").info("outside")
    handle.shutdown()
    ctx = tool.span.get_span_context()
    lines = [line for line in stream.getvalue().splitlines() if "side" in line]
    assert lines == [f"INFO inside trace={ctx.trace_id:032x} span={ctx.span_id:016x}",
                     "INFO outside trace= span="]


def test_a_text_format_naming_the_trace_id_still_works_after_shutdown(root_logging: logging.Logger) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s trace=%(trace_id)s"))
    root_logging.handlers[:] = [handler]  # logging.basicConfig(format="... %(trace_id)s ...")
    root_logging.setLevel(logging.INFO)
    agentobs_sdk.configure({}).shutdown()
    with contextlib.redirect_stderr(io.StringIO()) as errors:  # where logging reports a bad format
        logging.getLogger("agent").info("after shutdown")
    assert "INFO after shutdown trace=\n" in stream.getvalue()
    assert "trace_id" not in errors.getvalue()


def test_a_json_formatter_of_the_application_gets_the_ids_from_the_record(root_logging: logging.Logger) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root_logging.handlers[:] = [handler]
    root_logging.setLevel(logging.INFO)
    handle = agentobs_sdk.configure({})
    with agentobs_sdk.tool_call("t") as tool:
        record = logging.getLogRecordFactory()("agent", logging.INFO, __file__, 1, "queued", None, None)
    handle.shutdown()
    # Formatted later, outside the span (as a QueueHandler's listener thread would): ids kept.
    out = _line(JsonFormatter(), record)
    assert out["trace_id"] == f"{tool.span.get_span_context().trace_id:032x}"
    assert "extra_trace_id" not in out


def test_sdk_info_lines_are_not_dropped_at_the_default_root_level(root_logging: logging.Logger) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root_logging.handlers[:] = [handler]
    root_logging.setLevel(logging.WARNING)  # Python's default
    handle = agentobs_sdk.configure({})
    logging.getLogger("agentobs_sdk.audit").info("an SDK info line")
    handle.shutdown()
    assert "an SDK info line" in stream.getvalue()


def test_when_the_sdk_installs_logging_the_agents_info_lines_are_kept(root_logging: logging.Logger) -> None:
    root_logging.handlers[:] = []
    root_logging.setLevel(logging.WARNING)
    handle = agentobs_sdk.configure({})
    assert handle.log_handler is not None
    assert logging.getLogger("agent").isEnabledFor(logging.INFO)
    handle.shutdown()
    assert root_logging.level == logging.WARNING  # restored


def test_a_format_naming_the_trace_id_works_before_and_during_configure(tmp_path: Path) -> None:
    """Logging set up first, as a newcomer does: lines logged before configure() and the SDK's own
    warnings during it (an unkeyed trail, a bad port) must format, not raise logging errors.
    A fresh interpreter, because the record factory is process-wide once installed."""
    script = (
        "import logging, sys\n"
        "import agentobs_sdk as aobs\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.INFO,\n"
        "                    format='%(levelname)s trace=%(trace_id)s %(message)s')\n"
        "logging.getLogger('agent').info('starting')\n"
        f"h = aobs.configure({{'AGENTOBS_AUDIT_DIR': {str(tmp_path / 'audit')!r},\n"
        "                    'AGENTOBS_METRICS_PORT': 'nine'})\n"
        "h.shutdown()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "AGENTOBS_METRICS_LINGER_SECONDS": "0"}, check=False)
    assert done.returncode == 0, done.stderr
    assert "Logging error" not in done.stderr, done.stderr
    assert "INFO trace= starting" in done.stdout
    assert "UNKEYED" in done.stdout and "'nine' is not a port" in done.stdout, done.stdout
