"""The `AgentObservability` spec: the one source of truth for fields, defaults and validation.

The CRD in `crds/` is generated from these models (`agentobs.api.crd`), so a description, default
or bound written here is what `kubectl explain` shows and what the API server enforces. Rules that
span several fields are CEL expressions attached with `cel()`; the API server evaluates them, and
the operator re-checks the same spec with pydantic when it reads a resource.

This module owns the top-level `AgentObservabilitySpec` and the areas that span the stack
(instrumentation, Grafana, TLS, audit, images). The component areas live beside it
(`metrics_spec`: Prometheus and Alertmanager; `traces_logs_spec`: Jaeger, Fluentd and
Elasticsearch), built from `base` and `formats`; every name stays importable from here.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from agentobs.api.base import (
    HttpsUrl,
    Image,
    LabelKey,
    LabelSelector,
    LabelValue,
    ObjectName,
    ResourceRequirements,
    SecretKeyRef,
    SpecModel,
    StorageSpec,
    cel,
    resources_field,
    with_cel,
)
from agentobs.api.formats import (
    API_GROUP_PATTERN,
    ATTRIBUTE_KEY_PATTERN,
    ATTRIBUTE_VALUE_PATTERN,
    CLIENT_ID_PATTERN,
    DNS_LABEL_PATTERN,
    GO_DURATION_PATTERN,
    HOSTNAME_PATTERN,
    IMAGE_PATTERN,
    LABEL_KEY_PATTERN,
    LABEL_VALUE_PATTERN,
    METRIC_NAME_PATTERN,
    PROM_LABEL_PATTERN,
    QUANTITY_PATTERN,
    RETENTION_PATTERN,
    heap_bytes,
    parse_go_duration,
    parse_quantity,
)
from agentobs.api.metrics_spec import AlertmanagerSpec, PrometheusSpec, RecordingOrAlertingRule, RuleGroup
from agentobs.api.traces_logs_spec import (
    AutoscalingSpec,
    CollectorSpec,
    ElasticsearchSpec,
    ExternalElasticsearch,
    LoggingSpec,
    TracingSpec,
)

# The names other modules import from here, wherever they are defined.
__all__ = [
    "ATTRIBUTE_KEY_PATTERN", "ATTRIBUTE_VALUE_PATTERN", "DNS_LABEL_PATTERN", "GO_DURATION_PATTERN",
    "HOSTNAME_PATTERN", "IMAGE_PATTERN", "LABEL_KEY_PATTERN", "LABEL_VALUE_PATTERN", "METRIC_NAME_PATTERN",
    "PROM_LABEL_PATTERN", "QUANTITY_PATTERN", "RETENTION_PATTERN", "AgentObservabilitySpec", "AlertmanagerSpec",
    "AuditSpec", "AutoscalingSpec", "CollectorSpec", "ElasticsearchSpec", "ExternalElasticsearch", "GrafanaSpec",
    "Image", "ImagesSpec", "InstrumentationSpec", "IssuerRef", "LabelKey", "LabelSelector", "LabelValue",
    "LoggingSpec", "ModelPrice", "OIDCSpec", "PrometheusSpec", "RecordingOrAlertingRule", "ResourceRequirements",
    "RuleGroup", "SecretKeyRef", "SpecModel", "StorageSpec", "TLSSpec", "TracingSpec", "cel", "heap_bytes",
    "parse_go_duration", "parse_quantity",
]


class ModelPrice(SpecModel):
    """What one model costs, in US dollars per million tokens."""

    input: float = Field(ge=0, le=1_000_000, description="US dollars per million input tokens.")
    output: float = Field(ge=0, le=1_000_000, description="US dollars per million output tokens.")
    cache_read: float | None = Field(
        None, ge=0, le=1_000_000,
        description="US dollars per million input tokens served from the provider's cache; default: the input price.",
    )


class InstrumentationSpec(SpecModel):
    """Which agent pods get instrumentation injected, and with what settings."""

    enabled: bool = Field(True, description="Inject instrumentation config into the selected agent pods.")
    pod_selector: LabelSelector = Field(
        default_factory=lambda: LabelSelector(match_labels={"agentobs.io/agent": "true"}),
        description="Pods whose labels match are agent pods. A pod that several resources select is "
        "instrumented by one: a resource in the pod's own namespace first, then the first by "
        "namespace/name, unless the pod's annotation agentobs.io/inject names one as <namespace>/<name>.",
    )
    namespace_selector: LabelSelector = Field(
        default_factory=LabelSelector,
        description="Namespaces whose pods may be selected; empty selects only the resource's own namespace.",
    )
    sampling_ratio: float = Field(
        1.0, ge=0.0, le=1.0, description="Fraction of traces kept by the parent-based ratio sampler (0 to 1)."
    )
    resource_attributes: dict[
        Annotated[str, Field(pattern=ATTRIBUTE_KEY_PATTERN, max_length=255)],
        Annotated[str, Field(pattern=ATTRIBUTE_VALUE_PATTERN, max_length=1024)],
    ] = Field(
        default_factory=dict, max_length=32,
        description="Extra OpenTelemetry resource attributes added to every agent (keys like "
        "`team` or `deployment.environment`; values without commas).",
    )
    rollout_on_change: bool = Field(
        False,
        description="Restart the Deployments and StatefulSets whose pods lack the current injection.",
    )
    metrics_port: int = Field(9464, ge=1024, le=65535, description="Port the agent SDK serves metrics on.")
    model_prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        max_length=200,
        description="Price table the agent SDK computes model-call cost from (the cost metric the dashboards "
                    "and the cost-burn alert use), keyed by model name; a name also prices the models it "
                    "prefixes (gpt-4o prices gpt-4o-2024-08-06). Injected as AGENTOBS_PRICES.",
    )


class OIDCSpec(SpecModel):
    """Grafana login through an OpenID Connect provider."""

    issuer_url: HttpsUrl = Field(..., description="The provider's issuer URL (https, no whitespace).")
    auth_url: HttpsUrl = Field(..., description="Authorization endpoint (authorization_endpoint of the "
                                                "provider's discovery).")
    token_url: HttpsUrl = Field(..., description="Token endpoint (token_endpoint).")
    userinfo_url: HttpsUrl = Field(..., description="UserInfo endpoint (userinfo_endpoint).")
    # Bounded like the URLs: it goes into Grafana's environment, and an unbounded string there is
    # only an accident (a pasted secret or document) that fails at the provider.
    client_id: str = Field(..., min_length=1, max_length=256, pattern=CLIENT_ID_PATTERN,
                           description="OAuth client id registered for Grafana (printable ASCII, at most 256 "
                           "characters, no space at either end).")
    client_secret: SecretKeyRef = Field(..., description="Secret key holding the OAuth client secret.")
    # An empty item, or one with a stray space at either end (a YAML copy-paste), equals no group a
    # provider sends: those users are locked out with nothing saying why (a list of only "" lets
    # nobody in). Bounded so the list stays a sane environment variable, which Grafana reads it from.
    allowed_groups: list[Annotated[str, Field(min_length=1, max_length=256, pattern=r"^\S(.*\S)?$")]] = Field(
        default_factory=list, max_length=100,
        description="Groups allowed to log in, as the provider's `groups` claim names them (spaces and "
        "commas inside a name included; none at either end; at most 256 characters each, 100 groups); "
        "empty: any user the provider authenticates.",
    )


class GrafanaSpec(SpecModel):
    """Grafana with provisioned datasources and agent dashboards."""

    enabled: bool = Field(True, description="Run Grafana. Off: bring your own, pointed at the endpoints in status.")
    replicas: int = Field(
        1, ge=1, le=10,
        description="Grafana replicas. Each keeps its own database (users' preferences, sessions); its "
        "Service keeps a client on one replica (sessionAffinity ClientIP), so a login holds.",
    )
    resources: ResourceRequirements = resources_field(
        "Grafana container resources.", cpu="100m", memory="256Mi", memory_limit="512Mi"
    )
    admin_secret: ObjectName | None = Field(
        None,
        description="Secret with `admin-user` and `admin-password`; generated (and kept) when unset.",
    )
    oidc: OIDCSpec | None = Field(None, description="Optional OIDC login.")
    ingress_host: str | None = Field(
        None, max_length=253, pattern=HOSTNAME_PATTERN,
        description="Expose Grafana through an Ingress on this host (a DNS name, e.g. grafana.example.com).",
    )


class IssuerRef(SpecModel):
    """A cert-manager issuer that signs the stack's certificates."""

    name: ObjectName = Field(..., description="Issuer or ClusterIssuer name.")
    kind: Literal["Issuer", "ClusterIssuer"] = Field("Issuer", description="Issuer or ClusterIssuer.")
    # Rendered into each Certificate's issuerRef: a group that is no DNS subdomain was stored, and
    # cert-manager never found the issuer, so the stack waited on certificates with no word why.
    group: str = Field("cert-manager.io", max_length=253, pattern=API_GROUP_PATTERN,
                       description="API group of the issuer (a DNS subdomain; empty means cert-manager.io), "
                       "e.g. awspca.cert-manager.io for an external issuer.")


class TLSSpec(SpecModel):
    """Certificates for every endpoint of the stack."""

    # cert-manager refuses a Certificate with a duration under 1h or a renewBefore under 5m, and the
    # operator's own CA would reissue such certificates on nearly every pass: both bounds hold for
    # either issuer, so a spec is valid or not whichever signs it.
    model_config = with_cel(
        ("duration(self.certificateLifetime) >= duration('1h')",
         "tls.certificateLifetime must be at least 1h", ".certificateLifetime"),
        ("!has(self.renewBefore) || duration(self.renewBefore) >= duration('5m')",
         "tls.renewBefore must be at least 5m", ".renewBefore"),
        ("!has(self.renewBefore) || duration(self.renewBefore) < duration(self.certificateLifetime)",
         "tls.renewBefore must be shorter than tls.certificateLifetime", ".renewBefore"),
    )

    issuer_ref: IssuerRef | None = Field(
        None, description="Use cert-manager with this issuer; the operator's own CA when unset."
    )
    certificate_lifetime: str = Field(
        "2160h", pattern=GO_DURATION_PATTERN,
        description="Lifetime of serving certificates (Go duration, at least 1h).",
    )
    # No stored default: a fixed one (it was 720h) made a lifetime of 720h or less invalid unless
    # renewBefore was set too, with an error about a field the user never wrote.
    renew_before: str | None = Field(
        None,
        pattern=GO_DURATION_PATTERN,
        description="Renew a certificate this long before it expires (Go duration, at least 5m, shorter "
        "than certificateLifetime). Unset: a third of certificateLifetime (720h for the default 2160h).",
    )

    @property
    def renewal_window(self) -> dt.timedelta:
        """How long before expiry a certificate is renewed: renewBefore, or a third of the lifetime."""
        if self.renew_before is None:
            return parse_go_duration(self.certificate_lifetime) / 3
        return parse_go_duration(self.renew_before)

    @model_validator(mode="after")
    def _renew_in_lifetime(self) -> TLSSpec:
        lifetime = parse_go_duration(self.certificate_lifetime)
        if lifetime < dt.timedelta(hours=1):
            raise ValueError("tls.certificateLifetime must be at least 1h")
        if self.renew_before is not None:
            if parse_go_duration(self.renew_before) < dt.timedelta(minutes=5):
                raise ValueError("tls.renewBefore must be at least 5m")
            if parse_go_duration(self.renew_before) >= lifetime:
                raise ValueError("tls.renewBefore must be shorter than tls.certificateLifetime")
        return self


class AuditSpec(SpecModel):
    """The agents' tamper-evident audit trail."""

    retention_days: int = Field(365, ge=1, le=3650, description="Days audit records are kept.")


def _image(default: str, what: str) -> Any:
    """An image field; `kubectl explain` shows what an unset one is (the CRD stores no default)."""
    return Field(default, description=f"{what} Unset: {default}, this operator version's.")


class ImagesSpec(SpecModel):
    """Container images of the stack. Unset, each is the image the running operator ships with, so
    upgrading the operator upgrades the stack; set one to pin it or to use a mirror."""

    prometheus: Image = _image("quay.io/prometheus/prometheus:v3.5.0", "Prometheus image.")
    alertmanager: Image = _image("quay.io/prometheus/alertmanager:v0.28.1", "Alertmanager image.")
    elasticsearch: Image = _image("docker.elastic.co/elasticsearch/elasticsearch:8.19.4", "Elasticsearch image.")
    jaeger: Image = _image("cr.jaegertracing.io/jaegertracing/jaeger:2.13.0", "Jaeger v2 image.")
    fluentd: Image = _image(
        "docker.io/fluent/fluentd-kubernetes-daemonset:v1.19.3-debian-elasticsearch8-1.1",
        "Fluentd aggregator image (fluentd 1.19.3 with fluent-plugin-elasticsearch 5.4.4 and "
        "fluent-plugin-prometheus 2.2.2, whose parameters the rendered configuration uses).",
    )
    grafana: Image = _image("docker.io/grafana/grafana:12.1.1", "Grafana image.")


class AgentObservabilitySpec(SpecModel):
    """Desired observability stack for the AI agents of one team."""

    instrumentation: InstrumentationSpec = Field(
        default_factory=InstrumentationSpec, description="Agent pod selection and injected settings."
    )
    prometheus: PrometheusSpec = Field(default_factory=PrometheusSpec, description="Metrics and alerting.")
    tracing: TracingSpec = Field(default_factory=TracingSpec, description="Trace collection and query.")
    elasticsearch: ElasticsearchSpec = Field(
        default_factory=ElasticsearchSpec, description="Storage for traces, logs and audit records."
    )
    logging: LoggingSpec = Field(default_factory=LoggingSpec, description="Agent log collection.")
    grafana: GrafanaSpec = Field(default_factory=GrafanaSpec, description="Dashboards and exploration.")
    tls: TLSSpec = Field(default_factory=TLSSpec, description="Certificates.")
    audit: AuditSpec = Field(default_factory=AuditSpec, description="Audit trail retention.")
    images: ImagesSpec = Field(
        default_factory=ImagesSpec,
        description="Image overrides. An image left unset is the one the running operator ships with "
        "(upgrading the operator rolls the stack's pods to it); set one to pin it or to use a mirror.",
    )
    paused: bool = Field(
        False, description="Stop reconciling: children are left as they are until unpaused."
    )

    @property
    def store_in_use(self) -> bool:
        """Whether anything writes to Elasticsearch: Jaeger (spans) or the log pipeline (logs and
        audit records). With both off the stack has no store: three 2 GiB nodes nobody writes to
        would be its largest cost."""
        return self.tracing.enabled or self.logging.enabled
