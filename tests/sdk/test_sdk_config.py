"""configure(): reads only the injected environment, works with none, is idempotent."""

from __future__ import annotations

import json
import logging
import os
import socket
import urllib.request
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased

import agentobs_sdk
from agentobs_sdk import config, tracing
from agentobs_sdk.audit import AuditError


def test_nothing_injected_still_works_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    exporter = InMemorySpanExporter()
    with caplog.at_level(logging.INFO, logger="agentobs_sdk"):
        handle = agentobs_sdk.configure({}, json_logs=False, span_processors=[SimpleSpanProcessor(exporter)])
    lines = [r for r in caplog.records if r.name == "agentobs_sdk"]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    message = lines[0].getMessage()
    assert "no exporter" in message and "OTEL_EXPORTER_OTLP_ENDPOINT" in message
    assert lines[0].levelno == logging.WARNING
    assert not handle.exporting
    assert handle.metrics_port is None
    assert handle.audit is None
    assert handle.settings.service_name == config.DEFAULT_SERVICE_NAME

    with agentobs_sdk.agent_run("solo"):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["invoke_agent solo"]
    assert handle.metrics.sample("agentobs_agent_run_duration_seconds_count",
                                 {"agent": "solo", "status": "ok"}) == 1


def test_configure_is_idempotent_and_restartable() -> None:
    first = agentobs_sdk.configure({"OTEL_SERVICE_NAME": "a"}, json_logs=False)
    second = agentobs_sdk.configure({"OTEL_SERVICE_NAME": "a"}, json_logs=False)
    assert second is first  # same settings: the same handle (other settings raise, see test_sdk_streams_threads)
    assert agentobs_sdk.current_handle() is first
    first.shutdown()
    first.shutdown()  # a second shutdown is harmless
    assert agentobs_sdk.current_handle() is None
    third = agentobs_sdk.configure({"OTEL_SERVICE_NAME": "c"}, json_logs=False)
    assert third is not first
    assert third.settings.service_name == "c"


def test_settings_read_every_injected_variable() -> None:
    env = {
        "OTEL_SERVICE_NAME": "planner",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.obs.svc:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": "/var/run/agentobs/ca.crt",
        "OTEL_RESOURCE_ATTRIBUTES": "k8s.namespace.name=team-a,k8s.pod.name=planner-0,note=a%2Cb",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "AGENTOBS_METRICS_PORT": "9464",
        "AGENTOBS_AUDIT_DIR": "/var/lib/agentobs/audit",
        "AGENTOBS_AUDIT_RETENTION_DAYS": "30",
        "AGENTOBS_AGENT_ID": "planner-0",
        "OTEL_SDK_DISABLED": "false",
        "AGENTOBS_AUDIT_KEY_FILE": "/var/run/agentobs/audit-key/key",
        "AGENTOBS_METRICS_LINGER_SECONDS": "12.5",
        "AGENTOBS_LOG_LEVEL": "debug",
        "OTEL_TRACES_EXPORTER": "OTLP",
        "UNRELATED": "ignored",
    }
    s = config.Settings.from_env(env)
    assert s.service_name == "planner"
    assert s.otlp_endpoint == "https://collector.obs.svc:4318"
    assert s.otlp_protocol == "http/protobuf"
    assert s.otlp_certificate == "/var/run/agentobs/ca.crt"
    assert s.resource_attributes == {"k8s.namespace.name": "team-a", "k8s.pod.name": "planner-0", "note": "a,b"}
    assert (s.sampler, s.sampler_arg) == ("parentbased_traceidratio", "0.25")
    assert s.metrics_port == 9464
    assert s.audit_dir == "/var/lib/agentobs/audit"
    assert s.audit_retention_days == 30
    assert s.agent_id == "planner-0"
    assert s.sdk_disabled is False
    assert s.audit_key_file == "/var/run/agentobs/audit-key/key"
    assert s.metrics_linger_seconds == 12.5
    assert s.log_level == "DEBUG"
    assert s.traces_exporter == "otlp"
    assert set(config.ENV_VARS) == set(env) - {"UNRELATED"}


def test_every_variable_is_documented_in_the_package_docstring() -> None:
    doc = agentobs_sdk.__doc__ or ""
    for name in config.ENV_VARS:
        assert name in doc, name


@pytest.mark.parametrize(
    ("env", "field", "expected"),
    [
        ({"AGENTOBS_METRICS_PORT": "not-a-port"}, "metrics_port", None),
        ({"AGENTOBS_METRICS_PORT": "70000"}, "metrics_port", None),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}, "otlp_protocol", "grpc"),
        ({"AGENTOBS_AUDIT_RETENTION_DAYS": "-3"}, "audit_retention_days", None),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs"}, "service_name", "from-attrs"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "   "}, "otlp_endpoint", None),
        ({"AGENTOBS_METRICS_LINGER_SECONDS": "soon"}, "metrics_linger_seconds", config.DEFAULT_METRICS_LINGER_S),
        ({"AGENTOBS_LOG_LEVEL": "chatty"}, "log_level", None),
        ({"OTEL_SDK_DISABLED": "1"}, "sdk_disabled", False),  # the spec: only "true" disables
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "traces_exporter", "otlp"),
    ],
)
def test_bad_injected_values_degrade_instead_of_failing(env: dict[str, str], field: str, expected: object) -> None:
    assert getattr(config.Settings.from_env(env), field) == expected


def test_sampler_from_env() -> None:
    assert tracing.build_sampler(None, None).get_description() == ParentBased(ALWAYS_ON).get_description()
    assert tracing.build_sampler("always_off", None) is ALWAYS_OFF
    ratio = tracing.build_sampler("traceidratio", "0.5")
    assert isinstance(ratio, TraceIdRatioBased) and ratio.rate == 0.5
    assert tracing.build_sampler("traceidratio", "7").get_description() == TraceIdRatioBased(1.0).get_description()
    assert tracing.build_sampler("bogus", None).get_description() == ParentBased(ALWAYS_ON).get_description()


def test_sampler_always_off_drops_spans() -> None:
    exporter = InMemorySpanExporter()
    agentobs_sdk.configure({"OTEL_TRACES_SAMPLER": "always_off"}, json_logs=False,
                           span_processors=[SimpleSpanProcessor(exporter)])
    with agentobs_sdk.tool_call("noop"):
        pass
    assert exporter.get_finished_spans() == ()


def test_resource_comes_from_the_injected_env_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "leaked=yes")
    exporter = InMemorySpanExporter()
    agentobs_sdk.configure(
        {"OTEL_SERVICE_NAME": "svc", "OTEL_RESOURCE_ATTRIBUTES": "k8s.pod.name=p-1", "AGENTOBS_AGENT_ID": "a-1"},
        json_logs=False, span_processors=[SimpleSpanProcessor(exporter)])
    with agentobs_sdk.reasoning_step("think"):
        pass
    (span,) = exporter.get_finished_spans()
    attrs = dict(span.resource.attributes)
    assert attrs["service.name"] == "svc"
    assert attrs["k8s.pod.name"] == "p-1"
    assert attrs["gen_ai.agent.id"] == "a-1"
    assert "leaked" not in attrs


def test_metrics_port_serves_the_registry() -> None:
    handle = agentobs_sdk.configure({"AGENTOBS_METRICS_PORT": "0", "AGENTOBS_AGENT_ID": "x",
                                     "AGENTOBS_METRICS_LINGER_SECONDS": "0"},
                                    metrics_addr="127.0.0.1", json_logs=False)
    assert handle.metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{handle.metrics_port}/metrics", timeout=5) as resp:
        body = resp.read().decode()
    assert 'agentobs_agent_sdk_info{agent_id="x"' in body
    handle.shutdown()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{handle.metrics_port}/metrics", timeout=2)


def test_unwritable_audit_dir_raises_and_releases_everything(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises((OSError, AuditError)):
        agentobs_sdk.configure({"AGENTOBS_AUDIT_DIR": str(blocker / "audit"), "AGENTOBS_METRICS_PORT": "0",
                                "AGENTOBS_METRICS_LINGER_SECONDS": "0"},
                               metrics_addr="127.0.0.1", json_logs=False)
    assert agentobs_sdk.current_handle() is None


def test_audit_dir_from_env(tmp_path: Path) -> None:
    handle = agentobs_sdk.configure({"AGENTOBS_AUDIT_DIR": str(tmp_path / "audit"), "AGENTOBS_AGENT_ID": "ag"},
                                    json_logs=False)
    receipt = agentobs_sdk.audit_event("login", user="alice", result="ok")
    assert receipt is not None and receipt.seq == 1
    assert handle.metrics.sample("agentobs_agent_audit_last_seq", {"agent_id": "ag"}) == 1
    handle.shutdown()
    assert agentobs_sdk.query(tmp_path / "audit", user="alice")[0]["agent"] == "ag"
    assert agentobs_sdk.verify(tmp_path / "audit").ok


def test_json_logs_installed_only_on_a_bare_root_logger() -> None:
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()
    try:
        handle = agentobs_sdk.configure({"AGENTOBS_AGENT_ID": "j"})
        assert handle.log_handler is not None
        assert isinstance(handle.log_handler.formatter, agentobs_sdk.JsonFormatter)
        handle.shutdown()
        assert handle.log_handler not in root.handlers
        root.addHandler(logging.NullHandler())
        handle = agentobs_sdk.configure({})
        assert handle.log_handler is None
    finally:
        root.handlers[:] = saved


def test_configure_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in config.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-os-environ")
    handle = agentobs_sdk.configure(json_logs=False)
    assert handle.settings.service_name == "from-os-environ"
    assert os.environ["OTEL_SERVICE_NAME"] == "from-os-environ"


def test_shutdown_says_when_no_final_scrape_came(caplog: pytest.LogCaptureFixture) -> None:
    handle = agentobs_sdk.configure({"AGENTOBS_METRICS_PORT": "0", "AGENTOBS_METRICS_LINGER_SECONDS": "0.3"},
                                    metrics_addr="127.0.0.1", json_logs=False)
    with caplog.at_level(logging.WARNING, logger="agentobs_sdk"):
        handle.shutdown()
    assert any("no scrape within 0.3s" in r.getMessage() for r in caplog.records)


def _announcement(caplog: pytest.LogCaptureFixture) -> str:
    (line,) = [r.getMessage() for r in caplog.records if "configured service" in r.getMessage()]
    return line


def test_announcement_names_why_metrics_are_not_served(caplog: pytest.LogCaptureFixture) -> None:
    # A developer who set the variable wrongly, or whose port is taken, must not read "not set".
    with caplog.at_level(logging.INFO, logger="agentobs_sdk"):
        agentobs_sdk.configure({"AGENTOBS_METRICS_PORT": "94x64"}, json_logs=False).shutdown()
    line = _announcement(caplog)
    assert "AGENTOBS_METRICS_PORT='94x64' is not a port" in line and "not set)" not in line.split(";")[1]
    caplog.clear()

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with caplog.at_level(logging.INFO, logger="agentobs_sdk"):
            handle = agentobs_sdk.configure({"AGENTOBS_METRICS_PORT": str(port)}, metrics_addr="127.0.0.1",
                                            json_logs=False)
        assert handle.metrics_port is None
        assert f"cannot listen on port {port}" in _announcement(caplog)
        handle.shutdown()


def test_announcement_does_not_say_spans_are_dropped_when_processors_were_given(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="agentobs_sdk"):
        agentobs_sdk.configure({}, json_logs=False, span_processors=[SimpleSpanProcessor(InMemorySpanExporter())])
    line = _announcement(caplog)
    assert "spans go only to the span processors passed to configure()" in line
    assert "spans are not exported" not in line


def test_configuration_error_names_only_what_differs() -> None:
    agentobs_sdk.configure({"OTEL_SERVICE_NAME": "a"}, json_logs=False,
                           span_processors=[SimpleSpanProcessor(InMemorySpanExporter())])
    # No processors in the second call is accepted as "whatever is set up", so not named.
    with pytest.raises(agentobs_sdk.ConfigurationError) as info:
        agentobs_sdk.configure({"OTEL_SERVICE_NAME": "b"}, json_logs=False)
    assert "(service_name)" in str(info.value)


def test_warnings_about_the_environment_come_out_as_json(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # On a bare root logger they used to reach logging's last-resort handler as plain text
    # (before configure() installed the JSON handler), the one kind of line Fluentd cannot parse.
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()
    try:
        handle = agentobs_sdk.configure({"AGENTOBS_METRICS_PORT": "abc", "AGENTOBS_AUDIT_DIR": str(tmp_path)})
        handle.shutdown()
    finally:
        root.handlers[:] = saved
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    messages = [line["message"] for line in lines]
    assert sum("AGENTOBS_METRICS_PORT='abc' is not a port; metrics" in m for m in messages) == 1
    assert sum("is UNKEYED" in m for m in messages) == 1
    assert sum("configured service" in m for m in messages) == 1


@pytest.mark.parametrize("endpoint", ["http://[fd00::1:4317", "http://collector:431700", "http://collector:4317x"])
def test_an_endpoint_that_is_no_url_is_named_instead_of_crashing(caplog: pytest.LogCaptureFixture,
                                                                  endpoint: str) -> None:
    """A mistyped endpoint used to make configure() raise a bare `ValueError: Invalid IPv6 URL`
    naming no variable (an unclosed bracket), or be announced as exporting when no export could
    ever reach it (a port that is no port); it is logged and spans are not exported."""
    for protocol in ("grpc", "http/protobuf"):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="agentobs_sdk"):
            handle = agentobs_sdk.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                                             "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}, json_logs=False)
        try:
            assert not handle.exporting
            errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            assert any(f"OTEL_EXPORTER_OTLP_ENDPOINT={endpoint!r} is not a valid URL" in e
                       for e in errors), errors
            assert "OTEL_EXPORTER_OTLP_ENDPOINT is not a valid URL" in _announcement(caplog)
        finally:
            handle.shutdown()


@pytest.mark.parametrize("endpoint", ["https://agent:s3cr3t@collector:4318", "agent:s3cr3t@collector:4317"])
def test_credentials_in_the_endpoint_are_not_logged(caplog: pytest.LogCaptureFixture, endpoint: str) -> None:
    """An endpoint carrying basic-auth credentials used to appear whole in the start-up line."""
    with caplog.at_level(logging.DEBUG):
        handle = agentobs_sdk.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                                         "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, json_logs=False)
    handle.tracer_provider.shutdown()  # nothing listens: do not wait on a final export
    handle.shutdown()
    line = _announcement(caplog)
    assert "***@collector" in line
    assert not [r.getMessage() for r in caplog.records if "s3cr3t" in r.getMessage()]


def test_a_mistyped_genai_opt_in_is_said(caplog: pytest.LogCaptureFixture) -> None:
    """`gen_ai_latest` (for gen_ai_latest_experimental) silently selected the v1.41.0 names, so
    the stack's dashboards, which query the latest ones, stayed empty."""
    with caplog.at_level(logging.WARNING, logger="agentobs_sdk"):
        settings = config.Settings.from_env({"OTEL_SEMCONV_STABILITY_OPT_IN": "http,gen_ai_latest"})
    assert settings.genai.mode.old
    warnings = [r.getMessage() for r in caplog.records if "OTEL_SEMCONV_STABILITY_OPT_IN" in r.getMessage()]
    assert len(warnings) == 1 and "gen_ai_latest is no GenAI value" in warnings[0], warnings
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="agentobs_sdk"):
        config.Settings.from_env({"OTEL_SEMCONV_STABILITY_OPT_IN": "http,gen_ai_latest_experimental"})
        config.Settings.from_env({"OTEL_SEMCONV_STABILITY_OPT_IN": "http"})
    assert not caplog.records


def test_a_port_in_use_says_only_one_process_serves_it(caplog: pytest.LogCaptureFixture) -> None:
    """With several workers per pod (uvicorn --workers, gunicorn) each configure()s; all but the
    first used to log a bare 'Address already in use', naming neither the variable nor why."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="agentobs_sdk"):
            agentobs_sdk.configure({"AGENTOBS_METRICS_PORT": str(port)}, metrics_addr="127.0.0.1",
                                   json_logs=False).shutdown()
    (error,) = [r.getMessage() for r in caplog.records if "cannot serve metrics" in r.getMessage()]
    assert f"127.0.0.1:{port} (AGENTOBS_METRICS_PORT)" in error
    assert "with several worker processes only the first to call configure() does" in error


def test_the_handle_repr_masks_credentials_in_the_endpoint() -> None:
    """A notebook cell ending in `handle = aobs.configure(); handle` printed the endpoint whole,
    credentials included, through the Settings in the handle's repr."""
    handle = agentobs_sdk.configure({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://agent:s3cr3t@collector:4318",
                                     "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, json_logs=False)
    handle.tracer_provider.shutdown()  # nothing listens: do not wait on a final export
    handle.shutdown()
    assert "s3cr3t" not in repr(handle)
    assert "otlp_endpoint='https://***@collector:4318'" in repr(handle.settings)
    assert repr(config.Settings()).startswith("Settings(service_name='unknown_service:python', otlp_endpoint=None")


# OpenTelemetry's global provider can be set once per process, so this runs in a fresh one.
_RECONFIGURE_SCRIPT = r'''
import json, logging
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import agentobs_sdk

early = trace.get_tracer("early")             # a library's module-level tracer, before configure()
exporters = [InMemorySpanExporter() for _ in range(4)]
handle = agentobs_sdk.configure({}, json_logs=False, span_processors=[SimpleSpanProcessor(exporters[0])])
late = trace.get_tracer("late")               # one taken from the first provider itself
first_global = trace.get_tracer_provider()
with early.start_as_current_span("early-1"), late.start_as_current_span("late-1"):
    pass
handle.shutdown()                             # a notebook: shut down, then configure again

warnings = []
logging.getLogger("agentobs_sdk").addHandler(logging.Handler())
logging.getLogger("agentobs_sdk").handlers[-1].emit = lambda r: warnings.append(r.getMessage())
handle = agentobs_sdk.configure({}, json_logs=False, span_processors=[SimpleSpanProcessor(exporters[1])])
trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporters[2]))  # as users do
with early.start_as_current_span("early-2"), late.start_as_current_span("late-2"):
    with trace.get_tracer("new").start_as_current_span("new-2"), agentobs_sdk.agent_run("a"):
        pass
same_global = trace.get_tracer_provider() is first_global
handle.shutdown()
quiet = [w for w in warnings if "global tracer provider" in w]

handle = agentobs_sdk.configure({"OTEL_SERVICE_NAME": "other"}, json_logs=False,
                                span_processors=[SimpleSpanProcessor(exporters[3])])
with agentobs_sdk.agent_run("b"):
    pass
handle.shutdown()
print(json.dumps({"spans": [sorted(s.name for s in e.get_finished_spans()) for e in exporters],
                  "same_global": same_global, "quiet": quiet,
                  "warned": [w for w in warnings if "global tracer provider" in w]}))
'''


def test_a_second_configure_keeps_the_global_provider_working_for_other_libraries() -> None:
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AGENTOBS_"))}
    out = subprocess.run([sys.executable, "-c", _RECONFIGURE_SCRIPT], capture_output=True, text=True,
                         timeout=60, env=env, check=False)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    first, second, added, other = result["spans"]
    assert first == ["early-1", "late-1"]
    # Tracers libraries took before or after the first configure() reach the second one's
    # processors, and so does a processor added to trace.get_tracer_provider().
    assert second == ["early-2", "invoke_agent a", "late-2", "new-2"], result
    assert added == second
    assert result["same_global"] and result["quiet"] == []
    # Another service name cannot be given to the global provider's tracers: said, not silent.
    assert other == ["invoke_agent b"]
    (warning,) = result["warned"]
    assert "trace.get_tracer()" in warning and "unknown_service:python" in warning
