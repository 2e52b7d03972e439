"""The `AgentObservability` status: what the operator observed, written by reconcile only."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

ConditionStatus = Literal["True", "False", "Unknown"]

# Component conditions, in the order printed and documented.
COMPONENT_CONDITIONS = (
    "TLSReady",
    "PrometheusReady",
    "AlertmanagerReady",
    "ElasticsearchReady",
    "TracingReady",
    "LoggingReady",
    "GrafanaReady",
)
SUMMARY_CONDITIONS = ("Ready", "Progressing", "Degraded")


class StatusModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Condition(StatusModel):
    """One observed condition, as in metav1.Condition."""

    type: str = Field(..., description="Condition type, e.g. Ready or PrometheusReady.")
    status: ConditionStatus = Field(..., description="True, False or Unknown.")
    reason: str = Field(..., description="One CamelCase word saying why.")
    message: str = Field("", description="What a person needs to know, never a secret.")
    last_transition_time: str = Field(..., description="When status last changed (RFC 3339).")
    observed_generation: int = Field(0, description="The spec generation this was computed from.")


class ComponentStatus(StatusModel):
    """Ready and desired pod counts of one component."""

    ready: int = Field(0, description="Pods ready.")
    desired: int = Field(0, description="Pods wanted.")


class InjectionStatus(StatusModel):
    """Agent pods this resource selects, by whether they carry its current injection."""

    selected: int = Field(0, description="Selected agent pods that are running or pending, but for those "
                          "another resource instrumented (the InjectionCoverage condition names it).")
    current: int = Field(0, description="Pods injected with the current settings.")
    stale: int = Field(0, description="Pods injected with earlier settings.")
    missing: int = Field(0, description="Pods admitted without injection (e.g. while the webhook was down).")


class Endpoints(StatusModel):
    """In-cluster URLs of the stack."""

    otlp_grpc: str | None = Field(None, description="OTLP gRPC endpoint for agents.")
    otlp_http: str | None = Field(None, description="OTLP HTTP endpoint for agents.")
    prometheus: str | None = Field(None, description="Prometheus web endpoint.")
    grafana: str | None = Field(None, description="Grafana URL.")


class AgentObservabilityStatus(StatusModel):
    """What the operator last observed of the stack."""

    observed_generation: int = Field(0, description="The spec generation the status describes.")
    conditions: list[Condition] = Field(default_factory=list, description="Summary and component conditions.")
    components: dict[str, ComponentStatus] = Field(
        default_factory=dict, description="Ready counts per component."
    )
    components_ready: str = Field("", description="Ready components over provisioned ones, e.g. 2/2.")
    endpoints: Endpoints = Field(default_factory=Endpoints, description="Where to reach the stack.")
    injection: InjectionStatus | None = Field(
        None, description="Injection coverage of the selected agent pods (absent when instrumentation is off)."
    )
