"""The real API server refuses invalid resources with a message that names the field."""

from __future__ import annotations

from typing import Any

import pytest

from agentobs.api.formats import RESOURCE_NAME_MAX_LENGTH
from agentobs.kube import Kube, KubeError

from cases import INVALID_SPECS, VALID_BOUNDARY_SPECS
from conftest import API, KIND, make_resource


@pytest.mark.parametrize(("spec", "field"), [(s, f) for _, s, f in INVALID_SPECS],
                         ids=[i for i, _, _ in INVALID_SPECS])
def test_invalid_resource_is_refused_naming_the_field(kube: Kube, namespace: str, spec: dict[str, Any],
                                                      field: str) -> None:
    with pytest.raises(KubeError) as refused:
        kube.apply(make_resource("bad", namespace, spec))
    assert refused.value.status == 422, refused.value
    assert field in refused.value.message, refused.value.message
    assert kube.get(API, KIND, namespace, "bad") is None


@pytest.mark.parametrize("spec", [s for _, s in VALID_BOUNDARY_SPECS], ids=[i for i, _ in VALID_BOUNDARY_SPECS])
def test_the_sensible_values_at_each_bound_are_stored(kube: Kube, namespace: str, spec: dict[str, Any]) -> None:
    created = kube.apply(make_resource("edge", namespace, spec))
    assert _holds(created["spec"], spec), created["spec"]


def _holds(stored: Any, given: Any) -> bool:
    """Whether `stored` carries every value of `given` (defaults may fill in the rest)."""
    if isinstance(given, dict):
        return isinstance(stored, dict) and all(k in stored and _holds(stored[k], v) for k, v in given.items())
    if isinstance(given, list):
        return isinstance(stored, list) and len(stored) == len(given) and all(map(_holds, stored, given))
    return bool(stored == given)


@pytest.mark.parametrize("name", ["a" * (RESOURCE_NAME_MAX_LENGTH + 1), "team.search", "team-"])
def test_a_name_the_children_cannot_carry_is_refused_naming_metadata_name(kube: Kube, namespace: str,
                                                                          name: str) -> None:
    with pytest.raises(KubeError) as refused:
        kube.apply(make_resource(name, namespace, {}))
    assert refused.value.status == 422, refused.value
    assert "metadata.name" in refused.value.message, refused.value.message
    assert kube.get(API, KIND, namespace, name) is None


def test_the_longest_name_allowed_is_stored(kube: Kube, namespace: str) -> None:
    name = "a" * RESOURCE_NAME_MAX_LENGTH
    assert kube.apply(make_resource(name, namespace, {}))["metadata"]["name"] == name


def test_server_fills_defaults(kube: Kube, namespace: str) -> None:
    created = kube.apply(make_resource("defaults", namespace, {"prometheus": {"replicas": 3}}))
    spec = created["spec"]
    assert spec["prometheus"]["replicas"] == 3
    assert spec["prometheus"]["retention"] == "15d"
    assert spec["elasticsearch"]["nodes"] == 3
    assert spec["elasticsearch"]["storage"]["size"] == "50Gi"
    assert spec["instrumentation"]["podSelector"]["matchLabels"] == {"agentobs.io/agent": "true"}
    assert "images" not in spec, "images left unset follow the operator that runs, through upgrades"


def test_a_storage_class_alone_keeps_each_component_s_default_size(kube: Kube, namespace: str) -> None:
    """Setting only where a volume lives must not change how big it is."""
    classed = {"storageClassName": "fast"}
    created = kube.apply(make_resource("classed", namespace, {
        "elasticsearch": {"storage": classed}, "logging": {"storage": classed},
        "prometheus": {"storage": classed}}))
    spec = created["spec"]
    sizes = {c: spec[c]["storage"]["size"] for c in ("elasticsearch", "logging", "prometheus")}
    assert sizes == {"elasticsearch": "50Gi", "logging": "5Gi", "prometheus": "10Gi"}
    assert all(spec[c]["storage"]["storageClassName"] == "fast" for c in sizes)


def test_explain_teaches_the_fields(kubectl: Any) -> None:
    out = kubectl("explain", "agentobservability.spec.elasticsearch.nodes").stdout
    assert "odd, at least 3" in out
    out = kubectl("explain", "aobs.spec.prometheus").stdout
    assert "highAvailability" in out and "retention" in out


def test_strict_fields_accept_what_is_valid(kube: Kube, namespace: str) -> None:
    """The stricter rules refuse only what is wrong: real image references, host names, label and
    attribute keys, a heap under the limit and well-formed rule groups are stored as given."""
    spec = {
        "images": {"prometheus": "registry.example.com:5000/mirror/prometheus:v3.5.0",
                   "grafana": "grafana/grafana@sha256:" + "0" * 64},
        "grafana": {"ingressHost": "grafana.team-a.example.com"},
        "instrumentation": {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "agents", "tier": ""}},
                            "resourceAttributes": {"deployment.environment": "prod", "team_name": "a=b"}},
        "logging": {"podLabels": {"example.com/logs": "on"}},
        "elasticsearch": {"heap": "1536m", "resources": {"limits": {"memory": "3Gi"}}},
        "prometheus": {"extraRules": [
            {"name": "team", "interval": "1m", "rules": [
                {"alert": "TeamSlow", "expr": "up == 0", "for": "5m", "keep_firing_for": "1m",
                 "labels": {"severity": "page"}, "annotations": {"summary": "slow"}},
                {"record": "team:up:sum", "expr": "sum(up)"}]},
            {"name": "other", "rules": [{"alert": "Other", "expr": "vector(1)"}]}]},
    }
    created = kube.apply(make_resource("valid", namespace, spec))
    assert created["spec"]["prometheus"]["extraRules"][0]["rules"][0]["keep_firing_for"] == "1m"
    assert created["spec"]["images"]["grafana"] == spec["images"]["grafana"]
