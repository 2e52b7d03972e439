"""OpenTelemetry tracing setup: resource, sampler and OTLP exporter built from the injected settings.

Everything here is derived from an explicit `Settings` value rather than from `os.environ`, so
the SDK reads only what `config.configure()` was given. The OTLP exporter is gRPC or HTTP/protobuf
as OTEL_EXPORTER_OTLP_PROTOCOL says, with TLS verified against OTEL_EXPORTER_OTLP_CERTIFICATE.
"""

from __future__ import annotations

import importlib
import logging
import urllib.parse
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, SynchronousMultiSpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

log = logging.getLogger("agentobs_sdk")

PROTOCOL_GRPC = "grpc"
PROTOCOL_HTTP = "http/protobuf"
_TRACES_PATH = "/v1/traces"
# Exports are off the agent's hot path (batch processor thread), but a hung receiver must not
# stall shutdown for the exporter's default of tens of seconds.
_EXPORT_TIMEOUT_S = 10.0


def parse_resource_attributes(value: str) -> dict[str, str]:
    """Parse OTEL_RESOURCE_ATTRIBUTES (`k1=v1,k2=v2`, values percent-encoded) leniently."""
    attrs: dict[str, str] = {}
    for item in value.split(","):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            if item.strip():
                log.warning("agentobs: ignoring malformed OTEL_RESOURCE_ATTRIBUTES entry %r", item)
            continue
        attrs[key] = urllib.parse.unquote(raw.strip())
    return attrs


def build_resource(service_name: str, attributes: Mapping[str, str], agent_id: str | None,
                   agent_id_key: str = "gen_ai.agent.id") -> Resource:
    try:
        sdk_version = metadata.version("opentelemetry-sdk")
    except metadata.PackageNotFoundError:  # pragma: no cover - installed as a dependency
        sdk_version = "unknown"
    attrs: dict[str, str] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": sdk_version,
    }
    attrs.update(attributes)
    # OTEL_SERVICE_NAME wins over a service.name inside OTEL_RESOURCE_ATTRIBUTES (OTel spec).
    attrs["service.name"] = service_name
    if agent_id:
        attrs.setdefault(agent_id_key, agent_id)
    # Resource(...) rather than Resource.create(...): create() would also read os.environ.
    return Resource(attrs)


def build_sampler(name: str | None, arg: str | None) -> Sampler:
    """Sampler for OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG; unknown values fall back safely."""
    choice = (name or "parentbased_always_on").strip().lower()

    def ratio() -> float:
        if arg is None or not arg.strip():
            return 1.0
        try:
            value = float(arg)
        except ValueError:
            log.warning("agentobs: OTEL_TRACES_SAMPLER_ARG=%r is not a number; sampling everything", arg)
            return 1.0
        if not 0.0 <= value <= 1.0:
            log.warning("agentobs: OTEL_TRACES_SAMPLER_ARG=%r is outside [0, 1]; clamping", arg)
            value = min(max(value, 0.0), 1.0)
        return value

    if choice == "always_on":
        return ALWAYS_ON
    if choice == "always_off":
        return ALWAYS_OFF
    if choice == "traceidratio":
        return TraceIdRatioBased(ratio())
    if choice == "parentbased_always_on":
        return ParentBased(ALWAYS_ON)
    if choice == "parentbased_always_off":
        return ParentBased(ALWAYS_OFF)
    if choice == "parentbased_traceidratio":
        return ParentBased(TraceIdRatioBased(ratio()))
    log.warning("agentobs: OTEL_TRACES_SAMPLER=%r is not supported; using parentbased_always_on", name)
    return ParentBased(ALWAYS_ON)


def build_exporter(protocol: str, endpoint: str, certificate: str | None) -> SpanExporter:
    """OTLP span exporter for the protocol; TLS unless the endpoint says plain `http://`.

    OSError when the CA file cannot be read (both protocols: the HTTP exporter would otherwise
    fail only at each export); ValueError when the endpoint is no URL."""
    parsed = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    _ = parsed.port  # ValueError now, for a port that is no number in 0-65535, not at every export
    secure = parsed.scheme != "http"
    root = None
    if secure and certificate:
        with open(certificate, "rb") as fh:
            root = fh.read()
    if protocol == PROTOCOL_HTTP:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HTTPExporter,
        )

        # The generic OTLP endpoint is a base URL; the spec appends the signal path to it.
        base = urllib.parse.urlunsplit(parsed._replace(path=parsed.path.rstrip("/")))
        session = None
        if secure and certificate:
            # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set in many images) override a
            # session's CA file, which would silently drop the injected CA. The injected endpoint
            # is the in-cluster receiver, so ignore environment settings (proxies included).
            requests: Any = importlib.import_module("requests")
            session = requests.Session()
            session.trust_env = False
        return HTTPExporter(
            endpoint=base + _TRACES_PATH,
            certificate_file=certificate if secure and certificate else None,
            timeout=_EXPORT_TIMEOUT_S,
            session=session,
        )

    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GRPCExporter,
    )

    credentials = None
    if secure:
        # grpc ships no type stubs; import it untyped rather than make stubs a dependency.
        grpc: Any = importlib.import_module("grpc")
        credentials = grpc.ssl_channel_credentials(root_certificates=root)
    return GRPCExporter(
        endpoint=parsed.netloc,
        insecure=not secure,
        credentials=credentials,
        timeout=_EXPORT_TIMEOUT_S,
    )


class _Processors(SynchronousMultiSpanProcessor):
    """A provider's span processors, removable so the provider itself can outlive a shutdown()."""

    def detach(self) -> tuple[SpanProcessor, ...]:
        with self._lock:
            detached, self._span_processors = self._span_processors, ()
        return detached


# The provider this SDK made OpenTelemetry's global one, and its processors. OpenTelemetry lets the
# global provider be set once per process, and libraries keep the tracers they got from it
# (`tracer = trace.get_tracer(__name__)` at import): after shutdown() and configure() (a notebook)
# a new provider would reach none of them, so the global one is kept and given new processors.
_global: TracerProvider | None = None
_global_processors = _Processors()  # type: ignore[no-untyped-call]  # OTel leaves __init__ unannotated


def build_tracer_provider(
    resource: Resource,
    sampler: Sampler,
    exporter: SpanExporter | None,
    extra_processors: Iterable[SpanProcessor] = (),
    make_global: bool = False,
) -> TracerProvider:
    """The provider for configure(); with `make_global`, OpenTelemetry's global one: a new one if
    no provider is global yet, else the one an earlier configure() made global (shut down since)
    when the resource and sampler are the same. Tracers keep both from their provider, so with
    others the global provider cannot be reused, and a warning says what is lost."""
    global _global
    current = trace.get_tracer_provider()
    reuse = make_global and current is _global and _global is not None
    if reuse and _global is not None and (_global.resource != resource
                                          or _global.sampler.get_description() != sampler.get_description()):
        reuse = False
        log.warning("agentobs: OpenTelemetry's global tracer provider is still the one the first configure() "
                    "in this process made (service %s, sampler %s), and a provider's resource and sampler "
                    "cannot change: spans of tracers from trace.get_tracer() (other libraries) are dropped "
                    "from now on; the SDK's helpers export as configured. Restart the process to change "
                    "the service, resource attributes or sampler",
                    _global.resource.attributes.get("service.name"), _global.sampler.get_description())
    if reuse and _global is not None:
        provider = _global
    elif make_global and isinstance(current, trace.ProxyTracerProvider):
        provider = _global = TracerProvider(resource=resource, sampler=sampler,
                                            active_span_processor=_global_processors)
        trace.set_tracer_provider(provider)
    else:
        provider = TracerProvider(resource=resource, sampler=sampler)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    for processor in extra_processors:
        provider.add_span_processor(processor)
    return provider


def shut_down(provider: TracerProvider) -> None:
    """Flush and shut down the provider's processors; the global one stays usable for the next
    configure(), without them (so spans started before then are dropped, as after a shutdown)."""
    if provider is not _global:
        provider.shutdown()
        return
    for processor in _global_processors.detach():
        processor.shutdown()
