"""Spec of the metrics path: the HA Prometheus pair, the rule groups users add to it, and the
Alertmanager cluster it sends alerts to.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentobs.api.base import (
    NOT_ZERO,
    ResourceRequirements,
    SecretKeyRef,
    SpecModel,
    StorageSpec,
    cel,
    not_zero,
    resources_field,
    with_cel,
)
from agentobs.api.formats import METRIC_NAME_PATTERN, PROM_LABEL_PATTERN, RETENTION_PATTERN

# A retention or interval Prometheus uses as given: it reads 0 as unset and quietly keeps its own
# default (15d of retention, 1m between scrapes), whatever the spec says. The length bound keeps the
# rule's estimated cost, over 50 groups, within what the API server admits in a CRD.
Period = Annotated[str, Field(pattern=RETENTION_PATTERN, max_length=32, json_schema_extra=not_zero(
    "must be more than zero: Prometheus reads 0 as unset and keeps its own default")), NOT_ZERO]


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
    resources: ResourceRequirements = resources_field(
        "Alertmanager container resources.", cpu="50m", memory="64Mi", memory_limit="256Mi"
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
    interval: Period | None = Field(None, description="Evaluation interval, more than zero; the global "
                                    "one when unset.")
    limit: int | None = Field(None, ge=0, description="Most alerts or series one evaluation may produce.")
    rules: list[RecordingOrAlertingRule] = Field(..., min_length=1, max_length=200,
                                                 description="The group's rules.")


class PrometheusSpec(SpecModel):
    """The HA Prometheus pair that scrapes agents and evaluates the alert rules."""

    model_config = with_cel(
        ("!self.highAvailability || self.replicas >= 2",
         "prometheus.replicas must be at least 2 when prometheus.highAvailability is true", ".replicas"),
        ("!has(self.extraRules) || self.extraRules.all(g, self.extraRules.exists_one(h, h.name == g.name))",
         "prometheus.extraRules group names must be unique", ".extraRules"),
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
    retention: Period = Field("15d", description="How long samples are kept, e.g. 15d, 12h, 2w; more than zero.")
    scrape_interval: Period = Field("30s", description="How often agents are scraped; more than zero.")
    storage: StorageSpec = Field(default_factory=StorageSpec, description="Data volume of each replica.")
    resources: ResourceRequirements = resources_field(
        "Prometheus container resources.", cpu="250m", memory="512Mi", memory_limit="2Gi"
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
