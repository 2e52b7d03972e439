"""`configure()`: turn the environment the agentobs webhook injects into a running SDK.

This module owns the process-wide SDK state: it parses the injected variables (and only those,
see the package docstring for the list) into `Settings`, builds tracing, metrics, JSON logging and
the audit trail from them, and keeps the one active `Handle`. A second `configure()` returns the
same handle; `Handle.shutdown()` flushes and releases everything so a later `configure()` starts
afresh. Bad injected values are logged and degrade to "off"; they never stop the agent, with one
exception: an audit directory that was asked for but cannot be written raises, because silently
losing a compliance trail is worse than a visible crash.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from . import logs, tracing
from .audit import AuditTrail
from .metrics import AgentMetrics
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

ENV_VARS: tuple[str, ...] = (
    ENV_SERVICE_NAME, ENV_ENDPOINT, ENV_PROTOCOL, ENV_CERTIFICATE, ENV_RESOURCE_ATTRIBUTES,
    ENV_SAMPLER, ENV_SAMPLER_ARG, ENV_METRICS_PORT, ENV_AUDIT_DIR, ENV_AUDIT_RETENTION_DAYS,
    ENV_AGENT_ID,
)

DEFAULT_SERVICE_NAME = "unknown_service:python"


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
            genai=GenAIOptions.from_env(env),
        )

    @property
    def effective_agent_id(self) -> str:
        return self.agent_id or self.service_name


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
    instrumented_clients: tuple[str, ...] = ()
    _closed: bool = False

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Export every finished span now; True when the exporter confirmed them."""
        return self.tracer_provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        global _handle
        with _lock:
            if self._closed:
                return
            self._closed = True
            if _handle is self:
                _handle = None
        try:
            self.tracer_provider.shutdown()
        finally:
            self.metrics.stop()
            if self.audit is not None:
                self.audit.close()
            if self.log_handler is not None:
                logging.getLogger().removeHandler(self.log_handler)
            if self.instrumented_clients:
                from .instrumentation import uninstrument_all

                uninstrument_all()


_lock = threading.Lock()
_handle: Handle | None = None


def current_handle() -> Handle | None:
    """The active handle, or None before `configure()` / after `shutdown()`."""
    return _handle


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
    global _handle
    with _lock:
        if _handle is not None:
            return _handle
        settings = Settings.from_env(os.environ if environ is None else environ)
        handle = _build(settings, metrics_addr, json_logs, span_processors, set_global_tracer_provider)
        _handle = handle
    if settings.genai.instrument_clients:
        # Outside the lock: importing a client library can take a while.
        from .instrumentation import instrument_installed

        handle.instrumented_clients = instrument_installed()
    _announce(handle)
    return handle


def _build(
    settings: Settings,
    metrics_addr: str,
    json_logs: bool,
    span_processors: Sequence[SpanProcessor],
    set_global: bool,
) -> Handle:
    version = sdk_version()
    exporter = None
    if settings.otlp_endpoint:
        exporter = tracing.build_exporter(settings.otlp_protocol, settings.otlp_endpoint,
                                          settings.otlp_certificate)
    provider = tracing.build_tracer_provider(
        tracing.build_resource(settings.service_name, settings.resource_attributes, settings.agent_id,
                               # The latest GenAI names keep gen_ai.agent.id for a hosted agent's
                               # stable id; an instance id is service.instance.id there.
                               "gen_ai.agent.id" if settings.genai.mode.old else "service.instance.id"),
        tracing.build_sampler(settings.sampler, settings.sampler_arg),
        exporter,
        span_processors,
    )
    if set_global and isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        # Only the first provider can become global (OTel forbids overriding); helpers use the
        # handle's tracer, so a later configure() in the same process still works.
        trace.set_tracer_provider(provider)

    metrics = AgentMetrics(mode=settings.genai.mode)
    metrics.set_info(service=settings.service_name, agent_id=settings.effective_agent_id, version=version)
    port: int | None = None
    if settings.metrics_port is not None:
        try:
            port = metrics.serve(settings.metrics_port, metrics_addr)
        except OSError as exc:
            log.error("agentobs: cannot serve metrics on %s:%s: %s", metrics_addr, settings.metrics_port, exc)

    audit = None
    if settings.audit_dir:
        agent_id = settings.effective_agent_id
        try:
            audit = AuditTrail(
                settings.audit_dir,
                retention_days=settings.audit_retention_days,
                default_agent=agent_id,
                on_durable=lambda seq: metrics.set_audit_seq(agent_id, seq),
            )
        except BaseException:
            # Leave no port bound and no exporter thread behind for the caller's retry.
            metrics.stop()
            provider.shutdown()
            raise
        metrics.set_audit_seq(agent_id, audit.last_seq)

    handler = None
    if json_logs:
        handler = logs.install(logs.JsonFormatter(agent_id=settings.effective_agent_id,
                                                  service=settings.service_name))
    return Handle(
        settings=settings,
        tracer_provider=provider,
        tracer=provider.get_tracer("agentobs_sdk", version),
        metrics=metrics,
        metrics_port=port,
        audit=audit,
        exporting=exporter is not None,
        log_handler=handler,
    )


def _announce(handle: Handle) -> None:
    s = handle.settings
    parts = []
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
