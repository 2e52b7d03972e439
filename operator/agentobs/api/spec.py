"""The `AgentObservability` spec: the one source of truth for fields, defaults and validation.

The CRD in `crds/` is generated from these models (`agentobs.api.crd`), so a description, default
or bound written here is what `kubectl explain` shows and what the API server enforces. Rules that
span several fields are CEL expressions attached with `cel()`; the API server evaluates them, and
the operator re-checks the same spec with pydantic when it reads a resource.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

# Durations in the Prometheus/Go style that CEL's duration() and Prometheus both accept.
RETENTION_PATTERN = r"^[0-9]+(ms|s|m|h|d|w|y)$"
GO_DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# RFC 1123 subdomain (what Kubernetes accepts as a host name in an Ingress rule).
HOSTNAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A Kubernetes label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
# characters; and a label value. Written in the regex subset RE2 (the API server's CEL) and
# Python share.
LABEL_KEY_PATTERN = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                     r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
# An OpenTelemetry resource-attribute key as OTEL_RESOURCE_ATTRIBUTES can carry it, and a value
# without the `,` that separates its entries.
ATTRIBUTE_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,254}$"
ATTRIBUTE_VALUE_PATTERN = r"^[^,]*$"
# An OCI image reference: [registry[:port]/]path[:tag][@sha256:digest].
IMAGE_PATTERN = (r"^([a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*(:[0-9]+)?/)?"
                 r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*"
                 r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$")
# Prometheus names: metrics (recording rules) and labels.
METRIC_NAME_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
PROM_LABEL_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
_QUANTITY_FACTORS = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
                     "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def parse_quantity(text: str) -> float:
    """A Kubernetes quantity of QUANTITY_PATTERN's form as a number (bytes for memory)."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)", text)
    if not match or match.group(2) not in _QUANTITY_FACTORS:
        raise ValueError(f"invalid quantity {text!r}")
    return float(match.group(1)) * _QUANTITY_FACTORS[match.group(2)]


def heap_bytes(heap: str) -> int:
    """The JVM heap setting (`1g`, `512m`) in bytes."""
    return int(heap[:-1]) * (2**30 if heap.endswith("g") else 2**20)


def parse_go_duration(text: str) -> dt.timedelta:
    """Parse a Go duration such as `2160h` or `1h30m` (the spec's format for TLS lifetimes)."""
    if not text:
        raise ValueError("invalid duration ''")
    units = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    seconds, number = 0.0, ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = text[i:i + 2] if text[i:i + 2] in units else ch
        if unit not in units or not number:
            raise ValueError(f"invalid duration {text!r}")
        seconds += float(number) * units[unit]
        number = ""
        i += len(unit)
    if number:
        raise ValueError(f"invalid duration {text!r}: missing unit")
    return dt.timedelta(seconds=seconds)


def cel(*rules: tuple[str, str, str | None]) -> dict[str, Any]:
    """Attach CEL rules `(expression, message, fieldPath)` to a model's generated schema."""
    validations = []
    for rule, message, field_path in rules:
        entry = {"rule": rule, "message": message}
        if field_path:
            entry["fieldPath"] = field_path
        validations.append(entry)
    return {"x-kubernetes-validations": validations}


LabelKey = Annotated[str, Field(pattern=LABEL_KEY_PATTERN, max_length=317)]
LabelValue = Annotated[str, Field(pattern=LABEL_VALUE_PATTERN, max_length=63)]
Image = Annotated[str, Field(pattern=IMAGE_PATTERN, max_length=512)]


class SpecModel(BaseModel):
    """Base of every spec object: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class SecretKeyRef(SpecModel):
    """A key in a Secret of the resource's namespace."""

    name: Annotated[str, Field(min_length=1, max_length=253, description="Name of the Secret.")]
    key: Annotated[str, Field(min_length=1, max_length=253, description="Key within the Secret.")]


class ResourceRequirements(SpecModel):
    """CPU and memory for one container, as Kubernetes quantities."""

    requests: dict[str, Annotated[str, Field(pattern=QUANTITY_PATTERN)]] = Field(
        default_factory=dict, description="Minimum resources reserved, e.g. {cpu: 250m, memory: 1Gi}."
    )
    limits: dict[str, Annotated[str, Field(pattern=QUANTITY_PATTERN)]] = Field(
        default_factory=dict, description="Maximum resources allowed, e.g. {memory: 2Gi}."
    )


class StorageSpec(SpecModel):
    """A persistent volume claim template for a stateful component."""

    size: str = Field("10Gi", pattern=QUANTITY_PATTERN, description="Requested volume size.")
    storage_class_name: str | None = Field(
        None, max_length=253, description="StorageClass of the claim; the cluster default when unset."
    )
    keep_on_delete: bool = Field(
        True,
        description="Keep the data volumes when the AgentObservability is deleted "
        "(they hold user data; delete them by hand when they are no longer needed).",
    )


class LabelSelector(SpecModel):
    """A Kubernetes label selector (matchLabels only; every label must match)."""

    match_labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=32,
        description="Labels an object must carry, all of them, to be selected.",
    )


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
        description="Pods whose labels match are agent pods.",
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


class AlertmanagerSpec(SpecModel):
    """The Alertmanager gossip cluster that receives Prometheus alerts."""

    enabled: bool = Field(
        True,
        description="Run the Alertmanager cluster. Off: Prometheus still evaluates the rules (their state "
        "shows in its UI and the ALERTS series) but sends alerts nowhere.",
    )
    replicas: int = Field(3, ge=1, le=9, description="Alertmanager peers; 3 tolerates one loss.")
    receivers_secret: SecretKeyRef | None = Field(
        None,
        description="Secret key holding an alertmanager.yml with the user's receivers and routes; "
        "without it alerts are kept in Alertmanager and visible in its UI.",
    )
    resources: ResourceRequirements = Field(
        default_factory=lambda: ResourceRequirements(
            requests={"cpu": "50m", "memory": "64Mi"}, limits={"memory": "256Mi"}
        ),
        description="Alertmanager container resources.",
    )


class RecordingOrAlertingRule(BaseModel):
    """One Prometheus rule, in the rule-file format (snake_case keys, as Prometheus reads them)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra=cel(
        ("has(self.alert) != has(self.record)", "a rule needs exactly one of `alert` or `record`", None),
        ("has(self.alert) || (!has(self.__for__) && !has(self.keep_firing_for) && !has(self.annotations))",
         "a recording rule takes no `for`, `keep_firing_for` or `annotations`", None),
    ))

    alert: str | None = Field(None, min_length=1, max_length=253, description="Name of an alerting rule.")
    record: str | None = Field(None, pattern=METRIC_NAME_PATTERN, max_length=253,
                               description="Series name a recording rule writes.")
    expr: str = Field(..., min_length=1, max_length=8192,
                      description="PromQL expression; the operator parses it and leaves out a group whose "
                      "expressions do not parse, reporting Degraded.")
    for_: str | None = Field(None, alias="for", pattern=RETENTION_PATTERN,
                             description="How long the condition must hold before the alert fires.")
    keep_firing_for: str | None = Field(None, pattern=RETENTION_PATTERN,
                                        description="How long the alert keeps firing after it cleared.")
    labels: dict[Annotated[str, Field(pattern=PROM_LABEL_PATTERN, max_length=128)],
                 Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=dict, max_length=32, description="Labels added to the alert or series.")
    annotations: dict[Annotated[str, Field(pattern=PROM_LABEL_PATTERN, max_length=128)],
                      Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict, max_length=32, description="Annotations of the alert.")

    @model_validator(mode="after")
    def _one_kind(self) -> RecordingOrAlertingRule:
        if (self.alert is None) == (self.record is None):
            raise ValueError("a rule needs exactly one of `alert` or `record`")
        if self.record is not None and (self.for_ or self.keep_firing_for or self.annotations):
            raise ValueError("a recording rule takes no `for`, `keep_firing_for` or `annotations`")
        return self


class RuleGroup(BaseModel):
    """A Prometheus rule group, in the rule-file format."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(..., min_length=1, max_length=253, description="Group name, unique among the groups.")
    interval: str | None = Field(None, pattern=RETENTION_PATTERN,
                                 description="Evaluation interval; the global one when unset.")
    limit: int | None = Field(None, ge=0, description="Most alerts or series one evaluation may produce.")
    rules: list[RecordingOrAlertingRule] = Field(..., min_length=1, max_length=200,
                                                 description="The group's rules.")


class PrometheusSpec(SpecModel):
    """The HA Prometheus pair that scrapes agents and evaluates the alert rules."""

    model_config = SpecModel.model_config | ConfigDict(
        json_schema_extra=cel(
            (
                "!self.highAvailability || self.replicas >= 2",
                "prometheus.replicas must be at least 2 when prometheus.highAvailability is true",
                ".replicas",
            ),
            (
                "!has(self.extraRules) || self.extraRules.all(g, self.extraRules.exists_one(h, h.name == g.name))",
                "prometheus.extraRules group names must be unique",
                ".extraRules",
            ),
        )
    )

    enabled: bool = Field(
        True,
        description="Provision Prometheus (and its Alertmanager). Off: agents are not scraped by this stack "
        "and Grafana has no Prometheus datasource.",
    )

    high_availability: bool = Field(
        True, description="Run at least two identical replicas, each with its own `replica` external label."
    )
    replicas: int = Field(2, ge=1, le=10, description="Prometheus replicas; at least 2 with high availability.")
    retention: str = Field(
        "15d", pattern=RETENTION_PATTERN, description="How long samples are kept, e.g. 15d, 12h, 2w."
    )
    scrape_interval: str = Field("30s", pattern=RETENTION_PATTERN, description="How often agents are scraped.")
    storage: StorageSpec = Field(default_factory=StorageSpec, description="Data volume of each replica.")
    resources: ResourceRequirements = Field(
        default_factory=lambda: ResourceRequirements(
            requests={"cpu": "250m", "memory": "512Mi"}, limits={"memory": "2Gi"}
        ),
        description="Prometheus container resources.",
    )
    alert_rules: bool = Field(True, description="Install the agent SLO and stack health alert rules.")
    extra_rules: list[RuleGroup] = Field(
        default_factory=list, max_length=50,
        description="Extra Prometheus rule groups, in the Prometheus rule file format.",
    )
    alertmanager: AlertmanagerSpec = Field(
        default_factory=AlertmanagerSpec, description="The Alertmanager cluster."
    )

    @model_validator(mode="after")
    def _ha_needs_two(self) -> PrometheusSpec:
        if self.high_availability and self.replicas < 2:
            raise ValueError("prometheus.replicas must be at least 2 when prometheus.highAvailability is true")
        names = [group.name for group in self.extra_rules]
        if len(names) != len(set(names)):
            raise ValueError("prometheus.extraRules group names must be unique")
        return self


class AutoscalingSpec(SpecModel):
    """Horizontal autoscaling of the trace collector on CPU."""

    model_config = SpecModel.model_config | ConfigDict(
        json_schema_extra=cel(
            (
                "self.maxReplicas >= self.minReplicas",
                "tracing.collector.autoscaling.maxReplicas must be at least minReplicas",
                ".maxReplicas",
            )
        )
    )

    enabled: bool = Field(False, description="Scale the collector between minReplicas and maxReplicas.")
    min_replicas: int = Field(2, ge=2, le=50, description="Fewest collector replicas; at least 2.")
    max_replicas: int = Field(6, ge=1, le=100, description="Most collector replicas.")
    target_cpu_utilization: int = Field(70, ge=10, le=95, description="Average CPU percent to hold.")

    @model_validator(mode="after")
    def _bounds_ordered(self) -> AutoscalingSpec:
        if self.max_replicas < self.min_replicas:
            raise ValueError("tracing.collector.autoscaling.maxReplicas must be at least minReplicas")
        return self


class CollectorSpec(SpecModel):
    """The Jaeger v2 collector that receives OTLP from agents."""

    replicas: int = Field(2, ge=2, le=50, description="Collector replicas when not autoscaled; at least 2.")
    resources: ResourceRequirements = Field(
        default_factory=lambda: ResourceRequirements(
            requests={"cpu": "200m", "memory": "256Mi"}, limits={"memory": "1Gi"}
        ),
        description="Collector container resources.",
    )
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec, description="Collector autoscaling.")


class TracingSpec(SpecModel):
    """Jaeger v2: OTLP collection and trace query, stored in Elasticsearch."""

    enabled: bool = Field(
        True,
        description="Run the Jaeger collector and query. Off: no OTLP endpoint is injected into agents "
        "(their SDK exports no traces) and Grafana has no Jaeger datasource.",
    )
    collector: CollectorSpec = Field(default_factory=CollectorSpec, description="The OTLP collector.")
    query_replicas: int = Field(1, ge=1, le=10, description="Jaeger query (UI and API) replicas.")
    query_resources: ResourceRequirements = Field(
        default_factory=lambda: ResourceRequirements(
            requests={"cpu": "100m", "memory": "128Mi"}, limits={"memory": "512Mi"}
        ),
        description="Jaeger query container resources.",
    )
    retention_days: int = Field(7, ge=1, le=3650, description="Days trace indices are kept.")


class ExternalElasticsearch(SpecModel):
    """An existing Elasticsearch cluster to use instead of provisioning one."""

    url: str = Field(
        ..., min_length=1, pattern=r"^https://", description="HTTPS URL of the cluster, e.g. https://es:9200."
    )
    credentials_secret: str = Field(
        ..., min_length=1, max_length=253, description="Secret with `username` and `password` keys."
    )
    ca_secret: str | None = Field(
        None, max_length=253, description="Secret with a `ca.crt` key that signs the cluster's certificate."
    )


class ElasticsearchSpec(SpecModel):
    """Where traces, logs and audit records are stored."""

    model_config = SpecModel.model_config | ConfigDict(
        json_schema_extra=cel(
            (
                "has(self.external) || (self.nodes >= 3 && self.nodes % 2 == 1)",
                "elasticsearch.nodes must be an odd number of at least 3 unless elasticsearch.external is set",
                ".nodes",
            ),
            (
                "has(self.external) || !has(self.resources.limits) || !('memory' in self.resources.limits) || "
                "double(int(self.heap.substring(0, size(self.heap) - 1)) * (self.heap.endsWith('g') ? 1073741824 "
                ": 1048576)) < quantity(self.resources.limits['memory']).asApproximateFloat()",
                "elasticsearch.heap must be smaller than elasticsearch.resources.limits.memory "
                "(the JVM needs memory beyond its heap; half the limit is usual)",
                ".heap",
            ),
        )
    )

    nodes: int = Field(3, ge=1, le=99, description="Elasticsearch nodes (master and data); odd, at least 3.")
    heap: str = Field("1g", pattern=r"^[0-9]{1,6}[mg]$", max_length=7,
                      description="JVM heap of each node, e.g. 1g, 512m; smaller than the memory limit.")
    storage: StorageSpec = Field(
        default_factory=lambda: StorageSpec(size="50Gi"), description="Data volume of each node."
    )
    resources: ResourceRequirements = Field(
        default_factory=lambda: ResourceRequirements(
            requests={"cpu": "500m", "memory": "2Gi"}, limits={"memory": "2Gi"}
        ),
        description="Elasticsearch container resources.",
    )
    external: ExternalElasticsearch | None = Field(
        None, description="Use this existing cluster; nothing of Elasticsearch is provisioned."
    )

    @model_validator(mode="after")
    def _quorum(self) -> ElasticsearchSpec:
        if self.external is None and (self.nodes < 3 or self.nodes % 2 == 0):
            raise ValueError(
                "elasticsearch.nodes must be an odd number of at least 3 unless elasticsearch.external is set"
            )
        limit = self.resources.limits.get("memory")
        if self.external is None and limit is not None and heap_bytes(self.heap) >= parse_quantity(limit):
            raise ValueError("elasticsearch.heap must be smaller than elasticsearch.resources.limits.memory")
        return self


class LoggingSpec(SpecModel):
    """Agent container logs: the cluster's node collector forwards them to this stack's Fluentd
    aggregator, which writes them to Elasticsearch."""

    enabled: bool = Field(True, description="Collect agent pod logs.")
    namespaces: list[Annotated[str, Field(pattern=DNS_LABEL_PATTERN, max_length=63)]] = Field(
        default_factory=list,
        description="Namespaces to collect from; empty means those the instrumentation selects.",
    )
    pod_labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=32, description="Only pods with these labels; empty means the agent pods."
    )
    retention_days: int = Field(14, ge=1, le=3650, description="Days log indices are kept.")
    replicas: int = Field(
        2, ge=1, le=10, description="Fluentd aggregator replicas; 2 or more keep logs flowing through a restart."
    )
    storage: StorageSpec = Field(
        default_factory=lambda: StorageSpec(size="5Gi"),
        description="Buffer volume of each aggregator replica (records not yet in Elasticsearch).",
    )
    resources: ResourceRequirements = Field(
        default_factory=lambda: ResourceRequirements(
            requests={"cpu": "100m", "memory": "256Mi"}, limits={"memory": "512Mi"}
        ),
        description="Fluentd aggregator container resources (per replica).",
    )


class OIDCSpec(SpecModel):
    """Grafana login through an OpenID Connect provider."""

    issuer_url: str = Field(..., pattern=r"^https://", description="The provider's issuer URL.")
    auth_url: str = Field(..., pattern=r"^https://",
                          description="Authorization endpoint (authorization_endpoint of the provider's discovery).")
    token_url: str = Field(..., pattern=r"^https://", description="Token endpoint (token_endpoint).")
    userinfo_url: str = Field(..., pattern=r"^https://", description="UserInfo endpoint (userinfo_endpoint).")
    client_id: str = Field(..., min_length=1, description="OAuth client id registered for Grafana.")
    client_secret: SecretKeyRef = Field(..., description="Secret key holding the OAuth client secret.")
    allowed_groups: list[str] = Field(default_factory=list, description="Groups allowed to log in.")


class GrafanaSpec(SpecModel):
    """Grafana with provisioned datasources and agent dashboards."""

    enabled: bool = Field(True, description="Run Grafana. Off: bring your own, pointed at the endpoints in status.")
    replicas: int = Field(
        1, ge=1, le=10,
        description="Grafana replicas. Each keeps its own database (users' preferences, sessions); its "
        "Service keeps a client on one replica (sessionAffinity ClientIP), so a login holds.",
    )
    resources: ResourceRequirements = Field(
        default_factory=lambda: ResourceRequirements(
            requests={"cpu": "100m", "memory": "256Mi"}, limits={"memory": "512Mi"}
        ),
        description="Grafana container resources.",
    )
    admin_secret: str | None = Field(
        None,
        max_length=253,
        description="Secret with `admin-user` and `admin-password`; generated (and kept) when unset.",
    )
    oidc: OIDCSpec | None = Field(None, description="Optional OIDC login.")
    ingress_host: str | None = Field(
        None, max_length=253, pattern=HOSTNAME_PATTERN,
        description="Expose Grafana through an Ingress on this host (a DNS name, e.g. grafana.example.com).",
    )


class IssuerRef(SpecModel):
    """A cert-manager issuer that signs the stack's certificates."""

    name: str = Field(..., min_length=1, max_length=253, description="Issuer or ClusterIssuer name.")
    kind: Literal["Issuer", "ClusterIssuer"] = Field("Issuer", description="Issuer or ClusterIssuer.")
    group: str = Field("cert-manager.io", description="API group of the issuer.")


class TLSSpec(SpecModel):
    """Certificates for every endpoint of the stack."""

    model_config = SpecModel.model_config | ConfigDict(
        json_schema_extra=cel(
            (
                "duration(self.renewBefore) < duration(self.certificateLifetime)",
                "tls.renewBefore must be shorter than tls.certificateLifetime",
                ".renewBefore",
            )
        )
    )

    issuer_ref: IssuerRef | None = Field(
        None, description="Use cert-manager with this issuer; the operator's own CA when unset."
    )
    certificate_lifetime: str = Field(
        "2160h", pattern=GO_DURATION_PATTERN, description="Lifetime of serving certificates (Go duration)."
    )
    renew_before: str = Field(
        "720h",
        pattern=GO_DURATION_PATTERN,
        description="Renew a certificate this long before it expires; default is a third of the lifetime.",
    )

    @model_validator(mode="after")
    def _renew_in_lifetime(self) -> TLSSpec:
        if parse_go_duration(self.renew_before) >= parse_go_duration(self.certificate_lifetime):
            raise ValueError("tls.renewBefore must be shorter than tls.certificateLifetime")
        return self


class AuditSpec(SpecModel):
    """The agents' tamper-evident audit trail."""

    retention_days: int = Field(365, ge=1, le=3650, description="Days audit records are kept.")


class ImagesSpec(SpecModel):
    """Container images of the stack; override to use a mirror."""

    prometheus: Image = Field("quay.io/prometheus/prometheus:v3.5.0", description="Prometheus image.")
    alertmanager: Image = Field("quay.io/prometheus/alertmanager:v0.28.1", description="Alertmanager image.")
    elasticsearch: Image = Field(
        "docker.elastic.co/elasticsearch/elasticsearch:8.19.4", description="Elasticsearch image."
    )
    jaeger: Image = Field("cr.jaegertracing.io/jaegertracing/jaeger:2.13.0", description="Jaeger v2 image.")
    fluentd: Image = Field(
        "docker.io/fluent/fluentd-kubernetes-daemonset:v1.19.3-debian-elasticsearch8-1.1",
        description="Fluentd aggregator image (fluentd 1.19.3 with fluent-plugin-elasticsearch 5.4.4 and "
        "fluent-plugin-prometheus 2.2.2, whose parameters the rendered configuration uses).",
    )
    grafana: Image = Field("docker.io/grafana/grafana:12.1.1", description="Grafana image.")


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
    images: ImagesSpec = Field(default_factory=ImagesSpec, description="Image overrides.")
    paused: bool = Field(
        False, description="Stop reconciling: children are left as they are until unpaused."
    )
