"""The configuration the agentobs webhook injects: its variables, parsed into `Settings`.

Only these variables are read (`ENV_VARS`). Bad values are logged and fall back to "off" or the
default; `configure()` (config.py) builds the SDK from the result.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from . import tracing
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
ENV_TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"

ENV_VARS: tuple[str, ...] = (
    ENV_SERVICE_NAME, ENV_ENDPOINT, ENV_PROTOCOL, ENV_CERTIFICATE, ENV_RESOURCE_ATTRIBUTES,
    ENV_SAMPLER, ENV_SAMPLER_ARG, ENV_METRICS_PORT, ENV_AUDIT_DIR, ENV_AUDIT_RETENTION_DAYS,
    ENV_AGENT_ID, ENV_SDK_DISABLED, ENV_AUDIT_KEY_FILE, ENV_METRICS_LINGER, ENV_LOG_LEVEL,
    ENV_TRACES_EXPORTER,
)

DEFAULT_SERVICE_NAME = "unknown_service:python"
EXPORTER_OTLP, EXPORTER_NONE = "otlp", "none"
# How long shutdown() waits for Prometheus to scrape the final values when metrics are served:
# below Kubernetes' default 30 s termination grace period, so the pod is not killed mid-wait.
DEFAULT_METRICS_LINGER_S = 25.0


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


N = TypeVar("N", int, float)
D = TypeVar("D", int, float, None)


def _number(env: Mapping[str, str], name: str, parse: Callable[[str], N], valid: Callable[[N], bool],
            default: D, why: str) -> N | D:
    """The number in `name`, or `default` (logged, with `why`) when it is not a valid one."""
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = parse(raw)
    except ValueError:
        value = None
    if value is None or not valid(value):
        log.warning("agentobs: %s=%r %s", name, raw, why)
        return default
    return value


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
    traces_exporter: str = EXPORTER_OTLP  # "none": no span export (the webhook's "tracing off")
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

        port = _number(env, ENV_METRICS_PORT, int, lambda v: 0 <= v <= 65535, None,
                       "is not a port; metrics are not served")
        retention = _number(env, ENV_AUDIT_RETENTION_DAYS, float, lambda v: v > 0, None,
                            "is not a positive number of days; audit files are kept")
        linger = _number(env, ENV_METRICS_LINGER, float, lambda v: 0 <= v < 3600, DEFAULT_METRICS_LINGER_S,
                         f"is not a number of seconds in [0, 3600); using {DEFAULT_METRICS_LINGER_S}")

        level = _get(env, ENV_LOG_LEVEL)
        if level is not None and not isinstance(logging.getLevelName(level.upper()), int):
            log.warning("agentobs: %s=%r is not a logging level; ignored", ENV_LOG_LEVEL, level)
            level = None

        disabled = (_get(env, ENV_SDK_DISABLED) or "").lower()
        if disabled not in ("", "true", "false"):
            # The OpenTelemetry spec: only "true" (case-insensitive) disables the SDK.
            log.warning("agentobs: %s=%r is neither true nor false; the SDK stays enabled",
                        ENV_SDK_DISABLED, _get(env, ENV_SDK_DISABLED))

        exporter = (_get(env, ENV_TRACES_EXPORTER) or EXPORTER_OTLP).lower()
        if exporter not in (EXPORTER_OTLP, EXPORTER_NONE):
            log.warning("agentobs: %s=%r is not supported (otlp, none); using otlp",
                        ENV_TRACES_EXPORTER, _get(env, ENV_TRACES_EXPORTER))
            exporter = EXPORTER_OTLP

        audit_dir, key_file = _get(env, ENV_AUDIT_DIR), _get(env, ENV_AUDIT_KEY_FILE)
        if key_file is not None and audit_dir is None:
            # A key without a directory keys nothing: say so, or a developer believes they
            # are writing a keyed trail when none is written at all.
            log.warning("agentobs: %s is set but %s is not: no audit trail is kept and the key is "
                        "ignored; set %s to a directory to keep a keyed trail",
                        ENV_AUDIT_KEY_FILE, ENV_AUDIT_DIR, ENV_AUDIT_DIR)

        return cls(
            service_name=service,
            otlp_endpoint=_get(env, ENV_ENDPOINT),
            otlp_protocol=protocol,
            otlp_certificate=_get(env, ENV_CERTIFICATE),
            resource_attributes=attrs,
            sampler=_get(env, ENV_SAMPLER),
            sampler_arg=_get(env, ENV_SAMPLER_ARG),
            metrics_port=port,
            audit_dir=audit_dir,
            audit_retention_days=retention,
            agent_id=_get(env, ENV_AGENT_ID),
            sdk_disabled=disabled == "true",
            audit_key_file=key_file,
            metrics_linger_seconds=linger,
            log_level=level.upper() if level else None,
            traces_exporter=exporter,
            genai=GenAIOptions.from_env(env),
        )

    def __repr__(self) -> str:
        # A notebook or REPL shows the repr of the handle configure() returns, settings included:
        # the endpoint appears as logs show it (dataclass keeps a __repr__ the class defines).
        shown = {name: self.shown_endpoint if name == "otlp_endpoint" else getattr(self, name)
                 for name in self.__dataclass_fields__}
        return f"Settings({', '.join(f'{name}={value!r}' for name, value in shown.items())})"

    @property
    def shown_endpoint(self) -> str | None:
        """The endpoint as logs may show it: credentials in it (`https://user:token@host`, which
        the HTTP exporter sends as basic auth) are masked. Not parsed: it may be no valid URL."""
        if self.otlp_endpoint is None:
            return None
        return re.sub(r"^([^/@]*//)?[^/@]*@", r"\1***@", self.otlp_endpoint)

    @property
    def effective_agent_id(self) -> str:
        return self.agent_id or self.service_name

    @property
    def instance_id(self) -> str:
        """This agent instance in audit records and logs: AGENTOBS_AGENT_ID, else the pod name
        the webhook puts in the resource attributes (so two pods differ), else the service."""
        return self.agent_id or self.resource_attributes.get("k8s.pod.name") or self.service_name
