"""The resource's name prefixes every child's: a name Kubernetes accepts for the resource but not
for its Services and StatefulSets is refused whole, naming metadata.name, instead of half a stack."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from agentobs.admission import server
from agentobs.api.formats import RESOURCE_NAME_MAX_LENGTH, resource_name_problem
from agentobs.api.spec import AgentObservabilitySpec
from agentobs.render import Owner, make_stack
from agentobs.stack.reconcile import reconcile

from placeholders import placeholder_material
from recording_kube import RecordingKube

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# What each kind's name must leave room for: a Service is a DNS-1035 label; a StatefulSet's pods
# carry `<name>-<revision hash of up to 10>` and a CronJob's Jobs `<name>-<minutes since epoch>`
# in 63-character names or labels.
LONGEST = {"Service": 63, "StatefulSet": 52, "CronJob": 52, "Job": 63}
SPECS: list[dict[str, Any]] = [
    {}, {"grafana": {"ingressHost": "grafana.example.com"}, "tls": {"issuerRef": {"name": "ca"}}},
    {"tracing": {"collector": {"autoscaling": {"enabled": True}}}},
]


@pytest.mark.parametrize("spec", SPECS)
def test_the_longest_name_allowed_names_every_child_validly(spec: dict[str, Any]) -> None:
    name = "a" * RESOURCE_NAME_MAX_LENGTH
    owner = Owner(name=name, namespace="agents", uid="uid-1", spec=AgentObservabilitySpec.model_validate(spec))
    for obj in make_stack(owner, placeholder_material(owner)):
        child, kind = obj["metadata"]["name"], obj["kind"]
        assert len(child) <= LONGEST.get(kind, 253), (kind, child)
        if kind == "Service":
            assert DNS_1035.match(child), child
        for value in obj["metadata"].get("labels", {}).values():
            assert len(value) <= 63, (kind, child, value)


@pytest.mark.parametrize("name", ["a" * (RESOURCE_NAME_MAX_LENGTH + 1), "team.search", "1team", "team-"])
def test_names_the_children_could_not_carry_are_refused(name: str) -> None:
    problem = resource_name_problem(name)
    assert problem is not None and problem.startswith("metadata.name: ")


@pytest.mark.parametrize("name", ["demo", "a" * RESOURCE_NAME_MAX_LENGTH, "team-search-2"])
def test_ordinary_names_are_accepted(name: str) -> None:
    assert resource_name_problem(name) is None


def test_a_resource_under_such_a_name_is_degraded_and_nothing_applied() -> None:
    kube = RecordingKube()
    body = {"metadata": {"name": "customer-support-agents-production-stack", "namespace": "agents",
                         "uid": "uid-1", "generation": 1}, "spec": {}}
    outcome = reconcile(kube, body, lambda: dt.datetime(2030, 1, 1, tzinfo=dt.UTC))  # type: ignore[arg-type]
    degraded = next(c for c in outcome.status.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "InvalidSpec")
    assert degraded.message.startswith("metadata.name: must be at most 38 characters")
    assert [m for m, _ in kube.calls if m not in ("patch_status", "get")] == [], kube.calls
    server.track(body)
    assert not [c for c in server.CONFIGS if c.namespace == "agents"], "nothing to inject: no stack to send to"


def test_the_crd_name_rule_reports_against_metadata_name() -> None:
    """Without a fieldPath the API server reports a root rule against no field, and kubectl shows
    the user `<nil>: Invalid value: ...`; the path must resolve in the schema to be accepted."""
    from agentobs.api.crd import make_crd
    schema = make_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    name_rules = [r for r in schema["x-kubernetes-validations"] if "metadata.name" in r["rule"]]
    assert [r.get("fieldPath") for r in name_rules] == [".metadata.name"]
    assert schema["properties"]["metadata"]["properties"]["name"]["type"] == "string"
