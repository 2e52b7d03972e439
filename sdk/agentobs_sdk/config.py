"""`configure()`: turn the environment the agentobs webhook injects into a running SDK.

This module owns the process-wide SDK state: from the injected variables, parsed into `Settings`
(settings.py, which also lists them), it builds tracing, metrics, JSON logging and the audit
trail, and keeps the one active `Handle` (whose `shutdown()` also runs at interpreter exit unless
called before). A second `configure()` with the same settings returns the same handle; with
different settings it raises `ConfigurationError` (a silently ignored configuration is a bug
that shows up only in production). `Handle.shutdown()`
waits for a final scrape of the metrics (bounded), flushes and releases everything, and turns the
helpers into no-ops until a later `configure()` starts afresh. `OTEL_SDK_DISABLED=true` turns
spans and metrics off (logs and the audit trail stay). Bad injected values are logged and degrade
to "off"; they never stop the agent, with one exception: an audit directory (or audit key file)
that was asked for but cannot be used raises, because silently losing or weakening a compliance
trail is worse than a visible crash.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from . import logs, tracing
from .audit import AuditError, AuditTrail
from .audit.keys import key_for, previous_key_for
from .metrics import AgentMetrics, DisabledMetrics
from .settings import DEFAULT_METRICS_LINGER_S as DEFAULT_METRICS_LINGER_S  # re-exported
from .settings import DEFAULT_SERVICE_NAME as DEFAULT_SERVICE_NAME
from .settings import (
    ENV_AUDIT_DIR,
    ENV_AUDIT_KEY_FILE,
    ENV_CERTIFICATE,
    ENV_ENDPOINT,
    ENV_METRICS_LINGER,
    ENV_METRICS_PORT,
    ENV_SDK_DISABLED,
    ENV_TRACES_EXPORTER,
    EXPORTER_NONE,
)
from .settings import ENV_VARS as ENV_VARS
from .settings import Settings as Settings

log = logging.getLogger("agentobs_sdk")


class ConfigurationError(RuntimeError):
    """configure() was called again with settings that differ from the active ones."""


def sdk_version() -> str:
    try:
        return metadata.version("agentobs-sdk")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


@dataclass
class Handle:
    """What `configure()` set up; `shutdown()` flushes spans and releases ports and files."""

    settings: Settings
    tracer_provider: TracerProvider
    tracer: trace.Tracer
    metrics: AgentMetrics
    metrics_port: int | None = None
    audit: AuditTrail | None = None
    exporting: bool = False
    export_off: str | None = None  # why spans are not exported although an endpoint is set
    log_handler: logging.Handler | None = None
    options: tuple[object, ...] = ()
    _restore: list[Callable[[], None]] = field(default_factory=list)
    instrumented_clients: tuple[str, ...] = ()
    _closed: bool = False

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Export every finished span now; True when the exporter confirmed them."""
        return self.tracer_provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flush and release everything; helpers become no-ops until the next `configure()`.

        With metrics served, first waits (at most AGENTOBS_METRICS_LINGER_SECONDS) for one scrape
        that starts after this call, so a short-lived agent's last figures reach Prometheus.
        """
        global _handle, _shut_down
        with _lock:
            if self._closed:
                return
            self._closed = True
            if _handle is self:
                _handle = None
                _shut_down = True
                said_no_trail.clear()
        atexit.unregister(self.shutdown)
        try:
            # Before the last scrape and the exporter's flush, so what they record is in both.
            from .instrument import UNFINISHED_ATTRIBUTE, end_open_streams

            unfinished = end_open_streams(self)
            if unfinished:
                log.warning("agentobs: %d stream(s) were neither read to the end nor closed; their spans "
                            "were ended at shutdown, marked %s (close a stream you stop reading: "
                            "close(), aclose(), contextlib.closing()/aclosing() around a decorated generator, "
                            "or a with block around an openai/anthropic stream)", unfinished, UNFINISHED_ATTRIBUTE)
            linger = self.settings.metrics_linger_seconds
            # Not in a child forked after configure(): scrapes of the port reach the parent, so
            # none could ever count here and the child's exit would just wait the full linger.
            if self.metrics.serving() and linger > 0:
                # Said first: a silent wait of up to 25 s looks like a hung process.
                log.info("agentobs: shutdown waits up to %ss for a final scrape of port %s so the last "
                         "metric values reach Prometheus (%s=0 skips the wait)",
                         linger, self.metrics_port, ENV_METRICS_LINGER)
                if not self.metrics.wait_for_scrape(linger):
                    log.warning("agentobs: no scrape within %ss of shutdown; the last metric values "
                                "may not have reached Prometheus", linger)
            tracing.shut_down(self.tracer_provider)
        finally:
            self.metrics.stop()
            if self.audit is not None:
                self.audit.close()
            if self.log_handler is not None:
                logging.getLogger().removeHandler(self.log_handler)
            for undo in reversed(self._restore):
                undo()
            if self.settings.genai.instrument_clients and not self.settings.sdk_disabled:
                # Also when nothing was instrumented yet: the import hook still waits for one.
                from .instrumentation import uninstrument_all

                uninstrument_all()


_lock = threading.Lock()
_handle: Handle | None = None
_shut_down = False
# (action, cause) of the audit records dropped for want of a trail that were already warned about
# (instrument.warn_no_trail); cleared when configure() or shutdown() changes the cause.
said_no_trail: set[tuple[str, str]] = set()


def current_handle() -> Handle | None:
    """The active handle, or None before `configure()` / after `shutdown()`."""
    return _handle


def was_shut_down() -> bool:
    """True after `shutdown()` of the active handle and until the next `configure()`."""
    return _shut_down


def configure(
    environ: Mapping[str, str] | None = None,
    *,
    metrics_addr: str = "0.0.0.0",  # noqa: S104 - Prometheus scrapes the pod IP
    json_logs: bool = True,
    span_processors: Sequence[SpanProcessor] = (),
    set_global_tracer_provider: bool = True,
) -> Handle:
    """Set up tracing, metrics, logs and audit from the injected environment (idempotent).

    `environ` defaults to `os.environ`; tests pass a dict. `span_processors` are added next to
    the OTLP exporter (e.g. an in-memory exporter in tests). With nothing injected it still
    works: spans are created but not exported, metrics are recorded but not served, and one log
    line says so.
    """
    global _handle, _shut_down
    # First, before the SDK logs anything: an application format naming %(trace_id)s would fail
    # on every warning configure() logs (an unkeyed trail, a bad port) without the fields.
    logs.install_record_factory()  # not undone at shutdown: formats may name its fields
    env = os.environ if environ is None else environ
    options = (metrics_addr, json_logs, tuple(span_processors), set_global_tracer_provider)
    # Warnings about the environment come before the JSON handler exists: held, then sent as JSON.
    with logs.hold_sdk_records(json_logs):
        settings = Settings.from_env(env)
        with _lock:
            if _handle is not None:
                if _handle.settings == settings and _same_options(_handle.options, options):
                    return _handle
                raise ConfigurationError(
                    "agentobs: configure() was already called with other settings ("
                    + ", ".join(_differences(_handle, settings, options))
                    + "); call shutdown() on the current handle first to reconfigure")
            handle = _build(settings, metrics_addr, json_logs, span_processors, set_global_tracer_provider)
            handle.options = options
            _handle = handle
            _shut_down = False
            said_no_trail.clear()
            # An agent that never calls shutdown() still flushes its spans and closes its audit
            # trail (logging its closing chain head) at interpreter exit.
            atexit.register(handle.shutdown)
    if settings.genai.instrument_clients and not settings.sdk_disabled:
        # Disabled means hands off the client libraries too: people switch the SDK off to rule
        # it out, which patched client methods would defeat. Outside the lock: instrumenting a
        # client library imports a few of its modules.
        from .instrumentation import instrument_installed

        handle.instrumented_clients = instrument_installed()
    _announce(handle, env)
    return handle


def _same_options(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    # No processors in the second call means "whatever is set up"; a different list does not.
    a_procs, b_procs = a[2], b[2]
    return a[:2] == b[:2] and a[3] == b[3] and (not b_procs or a_procs == b_procs)


def _differences(handle: Handle, settings: Settings, options: tuple[object, ...]) -> list[str]:
    old = handle.settings
    names = [f for f in old.__dataclass_fields__ if getattr(old, f) != getattr(settings, f)]
    labels = ("metrics_addr", "json_logs", "span_processors", "set_global_tracer_provider")
    names += [label for label, x, y in zip(labels, handle.options, options, strict=True)
              # No processors means "whatever is set up" (_same_options): not a difference.
              if x != y and not (label == "span_processors" and not y)]
    return names or ["span_processors"]


def _build(
    settings: Settings,
    metrics_addr: str,
    json_logs: bool,
    span_processors: Sequence[SpanProcessor],
    set_global: bool,
) -> Handle:
    version = sdk_version()
    exporter = None
    export_off: str | None = None  # why spans are not exported although an endpoint is set
    if settings.otlp_endpoint and not settings.sdk_disabled and settings.traces_exporter != EXPORTER_NONE:
        try:
            exporter = tracing.build_exporter(settings.otlp_protocol, settings.otlp_endpoint,
                                              settings.otlp_certificate)
        except OSError as exc:
            # A bad injected value degrades to "off" like the others; the agent keeps running.
            export_off = f"cannot read {ENV_CERTIFICATE}={settings.otlp_certificate!r}, see the error above"
            log.error("agentobs: %s=%r cannot be read (%s); spans are not exported",
                      ENV_CERTIFICATE, settings.otlp_certificate, exc.strerror or exc)
        except ValueError as exc:  # urllib's verdict on the endpoint, e.g. "Invalid IPv6 URL"
            export_off = f"{ENV_ENDPOINT} is not a valid URL, see the error above"
            log.error("agentobs: %s=%r is not a valid URL (%s); spans are not exported",
                      ENV_ENDPOINT, settings.shown_endpoint, exc)
    provider = tracing.build_tracer_provider(
        tracing.build_resource(settings.service_name, settings.resource_attributes, settings.agent_id,
                               # The latest GenAI names keep gen_ai.agent.id for a hosted agent's
                               # stable id; an instance id is service.instance.id there.
                               "gen_ai.agent.id" if settings.genai.mode.old else "service.instance.id"),
        tracing.build_sampler(settings.sampler, settings.sampler_arg),
        exporter,
        () if settings.sdk_disabled else span_processors,
        # Helpers use the handle's tracer, so they work whichever provider is global.
        make_global=set_global and not settings.sdk_disabled,
    )
    tracer: trace.Tracer = provider.get_tracer("agentobs_sdk", version)
    if settings.sdk_disabled:
        tracer = trace.NoOpTracer()

    metrics = DisabledMetrics() if settings.sdk_disabled else AgentMetrics(mode=settings.genai.mode)
    metrics.set_info(service=settings.service_name, agent_id=settings.effective_agent_id, version=version)
    port: int | None = None
    if settings.metrics_port is not None and not settings.sdk_disabled:
        try:
            port = metrics.serve(settings.metrics_port, metrics_addr)
        except OSError as exc:
            # Port in use: most often a sibling worker (uvicorn --workers, gunicorn, a process
            # pool) that configured first; the bare errno does not tell a developer that.
            hint = ("; one process per pod can serve it: with several worker processes only the first "
                    "to call configure() does (sdk/README.md, 'Several processes')"
                    if exc.errno == errno.EADDRINUSE else "")
            log.error("agentobs: cannot serve metrics on %s:%s (%s): %s%s", metrics_addr, settings.metrics_port,
                      ENV_METRICS_PORT, exc, hint)

    audit = None
    if settings.audit_dir:
        agent_id = settings.instance_id
        try:
            key = key_for(settings.audit_key_file, settings.audit_dir, ENV_AUDIT_KEY_FILE)
            previous_key = previous_key_for(settings.audit_key_file) if key is not None else None
            audit = AuditTrail(
                settings.audit_dir,
                retention_days=settings.audit_retention_days,
                default_agent=agent_id,
                agent_id=agent_id,
                key=key,
                previous_key=previous_key,
                on_durable=lambda seq: metrics.set_audit_seq(agent_id, seq),
            )
        except OSError as exc:
            metrics.stop()
            tracing.shut_down(provider)
            # Name the variable: a bare FileNotFoundError from makedirs does not say which
            # setting led there.
            raise AuditError(f"{ENV_AUDIT_DIR}={settings.audit_dir!r} cannot be used for the audit "
                             f"trail: {exc.strerror or exc}") from exc
        except BaseException:
            # Leave no port bound and no exporter thread behind for the caller's retry.
            metrics.stop()
            tracing.shut_down(provider)
            raise
        metrics.set_audit_seq(agent_id, audit.last_seq)

    restore = logs.let_sdk_info_through(settings.log_level)
    handler = None
    if json_logs:
        handler = logs.install(logs.JsonFormatter(agent_id=settings.instance_id,
                                                  service=settings.service_name))
        root = logging.getLogger()
        if handler is not None and settings.log_level is None and root.level == logging.WARNING:
            # Python's default root level would drop every INFO line of the agent we now ship.
            root.setLevel(logging.INFO)
            restore.append(lambda: root.setLevel(logging.WARNING))
    return Handle(
        settings=settings,
        tracer_provider=provider,
        tracer=tracer,
        metrics=metrics,
        metrics_port=port,
        audit=audit,
        exporting=exporter is not None,
        export_off=export_off,
        log_handler=handler,
        _restore=restore,
    )


def _announce(handle: Handle, env: Mapping[str, str]) -> None:
    """The one line saying what this process exports, serves and keeps, and why not.

    Each "not" names its cause (unset, an invalid value, a port in use), so a developer trying
    the SDK locally is not told a variable is unset when it was set wrongly."""
    s = handle.settings
    parts = []
    if s.sdk_disabled:
        trail = f"the audit trail in {handle.audit.directory}" if handle.audit is not None else "no audit trail"
        scrape = ""
        if s.metrics_port is not None:
            # The webhook's scrape annotations stay on the pod: Prometheus keeps trying the port,
            # and the stack alerts on it. Said here so that alert is not a mystery.
            scrape = (f"; /metrics is not served on port {s.metrics_port}, so Prometheus' scrapes of "
                      "this pod fail (alert AgentObsAgentScrapeFailing); to take a pod out of the "
                      "stack, annotate it agentobs.io/inject: \"false\" instead")
        log.warning("agentobs: %s=true: spans and metrics are off, the model clients are not "
                    "instrumented; JSON logs and %s stay on (the trail is a compliance record)%s",
                    ENV_SDK_DISABLED, trail, scrape)
        return
    if handle.exporting:
        tls = "plain" if (s.otlp_endpoint or "").startswith("http://") else "TLS"
        parts.append(f"spans exported to {s.shown_endpoint} over OTLP {s.otlp_protocol} ({tls})")
    elif handle.export_off is not None:
        parts.append(f"no exporter: spans are not exported ({handle.export_off})")
    elif s.traces_exporter == EXPORTER_NONE:
        parts.append(f"no exporter: spans are not exported ({ENV_TRACES_EXPORTER}=none)")
    elif handle.options and handle.options[2]:
        parts.append(f"no exporter ({ENV_ENDPOINT} not set): spans go only to the span processors "
                     "passed to configure()")
    else:
        parts.append(f"no exporter: spans are not exported ({ENV_ENDPOINT} not set)")
    raw_port = (env.get(ENV_METRICS_PORT) or "").strip()
    if handle.metrics_port is not None:
        parts.append(f"metrics served on port {handle.metrics_port}")
    elif s.metrics_port is not None:
        parts.append(f"metrics not served (cannot listen on port {s.metrics_port}, see the error above)")
    elif raw_port:
        parts.append(f"metrics not served ({ENV_METRICS_PORT}={raw_port!r} is not a port)")
    else:
        parts.append(f"metrics not served ({ENV_METRICS_PORT} not set)")
    if handle.audit is not None:
        parts.append(f"audit trail in {handle.audit.directory}")
    else:
        parts.append(f"audit trail off ({ENV_AUDIT_DIR} not set)")
    level = logging.INFO if handle.exporting else logging.WARNING
    log.log(level, "agentobs: configured service %s: %s", s.service_name, "; ".join(parts))
