"""Spec of the traces and logs path: Jaeger (the OTLP collector and query), the Fluentd log
aggregators, and the Elasticsearch cluster (provisioned or external) both write to.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from agentobs.api.base import (
    NOT_ZERO,
    BufferStorageSpec,
    ElasticsearchStorageSpec,
    HttpsUrl,
    LabelKey,
    LabelValue,
    ObjectName,
    ResourceRequirements,
    SpecModel,
    not_zero,
    resources_field,
    with_cel,
)
from agentobs.api.formats import DNS_LABEL_PATTERN, heap_bytes, parse_quantity


class AutoscalingSpec(SpecModel):
    """Horizontal autoscaling of the trace collector on CPU."""

    model_config = with_cel(
        ("self.maxReplicas >= self.minReplicas",
         "tracing.collector.autoscaling.maxReplicas must be at least minReplicas", ".maxReplicas"),
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
    resources: ResourceRequirements = resources_field(
        "Collector container resources.", cpu="200m", memory="256Mi", memory_limit="1Gi"
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
    query_resources: ResourceRequirements = resources_field(
        "Jaeger query container resources.", cpu="100m", memory="128Mi", memory_limit="512Mi"
    )
    retention_days: int = Field(7, ge=1, le=3650, description="Days trace indices are kept.")


class ExternalElasticsearch(SpecModel):
    """An existing Elasticsearch cluster to use instead of provisioning one."""

    url: HttpsUrl = Field(..., description="HTTPS URL of the cluster, e.g. https://es:9200 (no whitespace).")
    credentials_secret: ObjectName = Field(..., description="Secret with `username` and `password` keys.")
    ca_secret: ObjectName | None = Field(
        None, description="Secret with a `ca.crt` key that signs the cluster's certificate."
    )


class ElasticsearchSpec(SpecModel):
    """Where traces, logs and audit records are stored."""

    model_config = with_cel(
        ("has(self.external) || (self.nodes >= 3 && self.nodes % 2 == 1)",
         "elasticsearch.nodes must be an odd number of at least 3 unless elasticsearch.external is set", ".nodes"),
        ("has(self.external) || !has(self.resources.limits) || !('memory' in self.resources.limits) || "
         "double(int(self.heap.substring(0, size(self.heap) - 1)) * (self.heap.endsWith('g') ? 1073741824 "
         ": 1048576)) < quantity(self.resources.limits['memory']).asApproximateFloat()",
         "elasticsearch.heap must be smaller than elasticsearch.resources.limits.memory "
         "(the JVM needs memory beyond its heap; half the limit is usual)", ".heap"),
    )

    nodes: int = Field(3, ge=1, le=99, description="Elasticsearch nodes (master and data); odd, at least 3.")
    # A zero heap passed every rule (it is below any limit) and left the JVM unable to start.
    heap: Annotated[str, NOT_ZERO] = Field(
        "1g", pattern=r"^[0-9]{1,6}[mg]$", max_length=7,
        json_schema_extra=not_zero("elasticsearch.heap must be more than zero"),
        description="JVM heap of each node, e.g. 1g, 512m; more than zero and smaller than the memory limit.")
    storage: ElasticsearchStorageSpec = Field(
        default_factory=ElasticsearchStorageSpec, description="Data volume of each node."
    )
    resources: ResourceRequirements = resources_field(
        "Elasticsearch container resources.", cpu="500m", memory="2Gi", memory_limit="2Gi"
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
    storage: BufferStorageSpec = Field(
        default_factory=BufferStorageSpec,
        description="Buffer volume of each aggregator replica (records not yet in Elasticsearch).",
    )
    resources: ResourceRequirements = resources_field(
        "Fluentd aggregator container resources (per replica).", cpu="100m", memory="256Mi", memory_limit="512Mi"
    )
