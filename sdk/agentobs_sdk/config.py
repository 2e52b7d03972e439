"""`configure()`: turn the environment the agentobs webhook injects into a running SDK.

This module owns the process-wide SDK state: it parses the injected variables (and only those,
see the package docstring for the list) into `Settings`, builds tracing, metrics, JSON logging and
the audit trail from them, and keeps the one active `Handle`. A second `configure()` with the same
settings returns the same handle; with different settings it raises `ConfigurationError` (a
silently ignored configuration is a bug that shows up only in production). `Handle.shutdown()`
waits for a final scrape of the metrics (bounded), flushes and releases everything, and turns the
helpers into no-ops until a later `configure()` starts afresh. `OTEL_SDK_DISABLED=true` turns
spans and metrics off (logs and the audit trail stay). Bad injected values are logged and degrade
to "off"; they never stop the agent, with one exception: an audit directory (or audit key file)
that was asked for but cannot be used raises, because silently losing or weakening a compliance
trail is worse than a visible crash.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from . import logs, tracing
from .audit import AuditTrail
from .audit.keys import key_for
from .metrics import AgentMetrics, DisabledMetrics
from .options import GenAIOptions

log = logging.getLogger("agentobs_sdk")

ENV_SERVICE_NAME = "OTEL_SERVICE_NAME"
ENV_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
ENV_CERTIFICATE = "OTEL_EXPORTER_OTLP_CERTIFICATE"
ENV_RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"
ENV_SAMPLER = "OTEL_TRACES_SAMPLER"
ENV_SAMPLER_ARG = "OTEL_TRACES_SAMPLER_ARG"
ENV_METRICS_PORT = "AGENTOBS_METRICS_PORT"
ENV_AUDIT_DIR = "AGENTOBS_AUDIT_DIR"
ENV_AUDIT_RETENTION_DAYS = "AGENTOBS_AUDIT_RETENTION_DAYS"
ENV_AGENT_ID = "AGENTOBS_AGENT_ID"
ENV_SDK_DISABLED = "OTEL_SDK_DISABLED"
ENV_AUDIT_KEY_FILE = "AGENTOBS_AUDIT_KEY_FILE"
ENV_METRICS_LINGER = "AGENTOBS_METRICS_LINGER_SECONDS"
ENV_LOG_LEVEL = "AGENTOBS_LOG_LEVEL"

ENV_VARS: tuple[str, ...] = (
    ENV_SERVICE_NAME, ENV_ENDPOINT, ENV_PROTOCOL, ENV_CERTIFICATE, ENV_RESOURCE_ATTRIBUTES,
    ENV_SAMPLER, ENV_SAMPLER_ARG, ENV_METRICS_PORT, ENV_AUDIT_DIR, ENV_AUDIT_RETENTION_DAYS,
    ENV_AGENT_ID, ENV_SDK_DISABLED, ENV_AUDIT_KEY_FILE, ENV_METRICS_LINGER, ENV_LOG_LEVEL,
)

DEFAULT_SERVICE_NAME = "unknown_service:python"
# How long shutdown() waits for Prometheus to scrape the final values when metrics are served:
# below Kubernetes' default 30 s termination grace period, so the pod is not killed mid-wait.
DEFAULT_METRICS_LINGER_S = 25.0


class ConfigurationError(RuntimeError):
    """configure() was called again with settings that differ from the active ones."""


def sdk_version() -> str:
    try:
        return metadata.version("agentobs-sdk")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


@dataclass(frozen=True)
class Settings:
    """The injected configuration, parsed and validated; None means "not injected"."""

    service_name: str = DEFAULT_SERVICE_NAME
    otlp_endpoint: str | None = None
    otlp_protocol: str = tracing.PROTOCOL_GRPC
    otlp_certificate: str | None = None
    resource_attributes: Mapping[str, str] = field(default_factory=dict)
    sampler: str | None = None
    sampler_arg: str | None = None
    metrics_port: int | None = None
    audit_dir: str | None = None
    audit_retention_days: float | None = None
    agent_id: str | None = None
    sdk_disabled: bool = False
    audit_key_file: str | None = None
    metrics_linger_seconds: float = DEFAULT_METRICS_LINGER_S
    log_level: str | None = None
    genai: GenAIOptions = field(default_factory=GenAIOptions)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        attrs = tracing.parse_resource_attributes(_get(env, ENV_RESOURCE_ATTRIBUTES) or "")
        service = _get(env, ENV_SERVICE_NAME) or attrs.get("service.name") or DEFAULT_SERVICE_NAME

        protocol = (_get(env, ENV_PROTOCOL) or tracing.PROTOCOL_GRPC).lower()
        if protocol not in (tracing.PROTOCOL_GRPC, tracing.PROTOCOL_HTTP):
            log.warning("agentobs: %s=%r is not supported (grpc, http/protobuf); using grpc",
                        ENV_PROTOCOL, protocol)
            protocol = tracing.PROTOCOL_GRPC

        port: int | None = None
        raw_port = _get(env, ENV_METRICS_PORT)
        if raw_port is not None:
            try:
                port = int(raw_port)
                if not 0 <= port <= 65535:
                    raise ValueError(raw_port)
            except ValueError:
                log.warning("agentobs: %s=%r is not a port; metrics are not served", ENV_METRICS_PORT, raw_port)
                port = None

        retention: float | None = None
        raw_retention = _get(env, ENV_AUDIT_RETENTION_DAYS)
        if raw_retention is not None:
            try:
                retention = float(raw_retention)
                if retention <= 0:
                    raise ValueError(raw_retention)
            except ValueError:
                log.warning("agentobs: %s=%r is not a positive number of days; audit files are kept",
                            ENV_AUDIT_RETENTION_DAYS, raw_retention)
                retention = None

        linger = DEFAULT_METRICS_LINGER_S
        raw_linger = _get(env, ENV_METRICS_LINGER)
        if raw_linger is not None:
            try:
                linger = float(raw_linger)
                if not 0 <= linger < 3600:
                    raise ValueError(raw_linger)
            except ValueError:
                log.warning("agentobs: %s=%r is not a number of seconds in [0, 3600); using %s",
                            ENV_METRICS_LINGER, raw_linger, DEFAULT_METRICS_LINGER_S)
                linger = DEFAULT_METRICS_LINGER_S

        level = _get(env, ENV_LOG_LEVEL)
        if level is not None and not isinstance(logging.getLevelName(level.upper()), int):
            log.warning("agentobs: %s=%r is not a logging level; ignored", ENV_LOG_LEVEL, level)
            level = None

        return cls(
            service_name=service,
            otlp_endpoint=_get(env, ENV_ENDPOINT),
            otlp_protocol=protocol,
            otlp_certificate=_get(env, ENV_CERTIFICATE),
            resource_attributes=attrs,
            sampler=_get(env, ENV_SAMPLER),
            sampler_arg=_get(env, ENV_SAMPLER_ARG),
            metrics_port=port,
            audit_dir=_get(env, ENV_AUDIT_DIR),
            audit_retention_days=retention,
            agent_id=_get(env, ENV_AGENT_ID),
            # The OpenTelemetry spec: only "true" (case-insensitive) disables the SDK.
            sdk_disabled=(_get(env, ENV_SDK_DISABLED) or "").lower() == "true",
            audit_key_file=_get(env, ENV_AUDIT_KEY_FILE),
            metrics_linger_seconds=linger,
            log_level=level.upper() if level else None,
            genai=GenAIOptions.from_env(env),
        )

    @property
    def effective_agent_id(self) -> str:
        return self.agent_id or self.service_name

    @property
    def instance_id(self) -> str:
        """This agent instance in audit records and logs: AGENTOBS_AGENT_ID, else the pod name
        the webhook puts in the resource attributes (so two pods differ), else the service."""
        return self.agent_id or self.resource_attributes.get("k8s.pod.name") or self.service_name


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
        try:
            linger = self.settings.metrics_linger_seconds
            if self.metrics_port is not None and linger > 0 and not self.metrics.wait_for_scrape(linger):
                log.warning("agentobs: no scrape within %ss of shutdown; the last metric values "
                            "may not have reached Prometheus", linger)
            self.tracer_provider.shutdown()
        finally:
            self.metrics.stop()
            if self.audit is not None:
                self.audit.close()
            if self.log_handler is not None:
                logging.getLogger().removeHandler(self.log_handler)
            for undo in reversed(self._restore):
                undo()
            if self.instrumented_clients:
                from .instrumentation import uninstrument_all

                uninstrument_all()


_lock = threading.Lock()
_handle: Handle | None = None
_shut_down = False


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
    settings = Settings.from_env(os.environ if environ is None else environ)
    options = (metrics_addr, json_logs, tuple(span_processors), set_global_tracer_provider)
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
    if settings.genai.instrument_clients:
        # Outside the lock: importing a client library can take a while.
        from .instrumentation import instrument_installed

        handle.instrumented_clients = instrument_installed()
    _announce(handle)
    return handle


def _same_options(a: tuple[object, ...], b: tuple[object, ...]) -> bool:
    # No processors in the second call means "whatever is set up"; a different list does not.
    a_procs, b_procs = a[2], b[2]
    return a[:2] == b[:2] and a[3] == b[3] and (not b_procs or a_procs == b_procs)


def _differences(handle: Handle, settings: Settings, options: tuple[object, ...]) -> list[str]:
    old = handle.settings
    names = [f for f in old.__dataclass_fields__ if getattr(old, f) != getattr(settings, f)]
    labels = ("metrics_addr", "json_logs", "span_processors", "set_global_tracer_provider")
    names += [label for label, x, y in zip(labels, handle.options, options, strict=True) if x != y]
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
    if settings.otlp_endpoint and not settings.sdk_disabled:
        exporter = tracing.build_exporter(settings.otlp_protocol, settings.otlp_endpoint,
                                          settings.otlp_certificate)
    provider = tracing.build_tracer_provider(
        tracing.build_resource(settings.service_name, settings.resource_attributes, settings.agent_id,
                               # The latest GenAI names keep gen_ai.agent.id for a hosted agent's
                               # stable id; an instance id is service.instance.id there.
                               "gen_ai.agent.id" if settings.genai.mode.old else "service.instance.id"),
        tracing.build_sampler(settings.sampler, settings.sampler_arg),
        exporter,
        () if settings.sdk_disabled else span_processors,
    )
    tracer: trace.Tracer = provider.get_tracer("agentobs_sdk", version)
    if settings.sdk_disabled:
        tracer = trace.NoOpTracer()
    elif set_global and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        # Only the first provider can become global (OTel forbids overriding); helpers use the
        # handle's tracer, so a later configure() in the same process still works.
        trace.set_tracer_provider(provider)

    metrics = DisabledMetrics() if settings.sdk_disabled else AgentMetrics(mode=settings.genai.mode)
    metrics.set_info(service=settings.service_name, agent_id=settings.effective_agent_id, version=version)
    port: int | None = None
    if settings.metrics_port is not None and not settings.sdk_disabled:
        try:
            port = metrics.serve(settings.metrics_port, metrics_addr)
        except OSError as exc:
            log.error("agentobs: cannot serve metrics on %s:%s: %s", metrics_addr, settings.metrics_port, exc)

    audit = None
    if settings.audit_dir:
        agent_id = settings.instance_id
        try:
            key = key_for(settings.audit_key_file, settings.audit_dir, ENV_AUDIT_KEY_FILE)
            audit = AuditTrail(
                settings.audit_dir,
                retention_days=settings.audit_retention_days,
                default_agent=agent_id,
                agent_id=agent_id,
                key=key,
                on_durable=lambda seq: metrics.set_audit_seq(agent_id, seq),
            )
        except BaseException:
            # Leave no port bound and no exporter thread behind for the caller's retry.
            metrics.stop()
            provider.shutdown()
            raise
        metrics.set_audit_seq(agent_id, audit.last_seq)

    restore: list[Callable[[], None]] = [logs.install_record_factory()]
    restore += logs.let_sdk_info_through(settings.log_level)
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
        log_handler=handler,
        _restore=restore,
    )


def _announce(handle: Handle) -> None:
    s = handle.settings
    parts = []
    if s.sdk_disabled:
        log.warning("agentobs: %s=true: spans and metrics are off (logs and the audit trail are not)",
                    ENV_SDK_DISABLED)
        return
    if handle.exporting:
        tls = "plain" if (s.otlp_endpoint or "").startswith("http://") else "TLS"
        parts.append(f"spans exported to {s.otlp_endpoint} over OTLP {s.otlp_protocol} ({tls})")
    else:
        parts.append(f"no exporter: spans are not exported ({ENV_ENDPOINT} not set)")
    if handle.metrics_port is not None:
        parts.append(f"metrics served on port {handle.metrics_port}")
    else:
        parts.append(f"metrics not served ({ENV_METRICS_PORT} not set)")
    if handle.audit is not None:
        parts.append(f"audit trail in {handle.audit.directory}")
    else:
        parts.append(f"audit trail off ({ENV_AUDIT_DIR} not set)")
    level = logging.INFO if handle.exporting else logging.WARNING
    log.log(level, "agentobs: configured service %s: %s", s.service_name, "; ".join(parts))
