"""Rendered manifests: golden files, and the properties every child must have.

Regenerate the golden files after an intended change with AGENTOBS_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentobs.api.spec import AgentObservabilitySpec
from agentobs.render import Owner, make_stack

from placeholders import placeholder_material

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
EXAMPLES: dict[str, dict[str, Any]] = {
    "minimal": {},
    "tuned": {"prometheus": {"replicas": 3, "retention": "30d", "storage": {"size": "100Gi",
              "storageClassName": "fast", "keepOnDelete": False}},
              "instrumentation": {"podSelector": {"matchLabels": {"team": "search", "tier": "agent"}}}},
    # The switches: Alertmanager, tracing, logging and Grafana off (bring your own).
    "switched-off": {"prometheus": {"alertmanager": {"enabled": False}}, "tracing": {"enabled": False},
                     "logging": {"enabled": False}, "grafana": {"enabled": False}},
}


def _owner(spec: dict[str, Any]) -> Owner:
    return Owner(name="demo", namespace="agents", uid="00000000-0000-0000-0000-000000000001",
                 spec=AgentObservabilitySpec.model_validate(spec))


def _render(spec: dict[str, Any]) -> list[dict[str, Any]]:
    owner = _owner(spec)
    return make_stack(owner, placeholder_material(owner))


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_golden(example: str) -> None:
    rendered = yaml.safe_dump_all(_render(EXAMPLES[example]), sort_keys=True)
    path = GOLDEN / f"{example}.yaml"
    if os.environ.get("AGENTOBS_UPDATE_GOLDEN"):
        path.write_text(rendered)
    assert path.exists(), f"missing {path}; run with AGENTOBS_UPDATE_GOLDEN=1"
    assert rendered == path.read_text(), f"{path.name} differs; if intended, run with AGENTOBS_UPDATE_GOLDEN=1"


def test_rendering_is_deterministic() -> None:
    assert _render(EXAMPLES["tuned"]) == _render(EXAMPLES["tuned"])


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_every_child_is_owned_labelled_and_named_uniquely(example: str) -> None:
    objects = _render(EXAMPLES[example])
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys))
    for obj in objects:
        meta = obj["metadata"]
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            # Cluster-scoped: no owner reference can point at a namespaced owner; the labels find it.
            assert "namespace" not in meta and "ownerReferences" not in meta
            assert meta["labels"]["agentobs.io/owner"] == "demo"
            continue
        assert meta["namespace"] == "agents"
        if meta.get("annotations", {}).get("agentobs.io/retained-on-delete") == "true":
            # Generated credentials outlive the resource, like the volumes whose data they unlock.
            assert obj["kind"] == "Secret" and "ownerReferences" not in meta
            continue
        assert meta["ownerReferences"][0]["uid"] == "00000000-0000-0000-0000-000000000001"
        assert meta["ownerReferences"][0]["controller"] is True
        for label in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by"):
            assert label in meta["labels"], (obj["kind"], label)


def test_workloads_are_hardened_for_restricted_pod_security() -> None:
    for obj in _render({}):
        if obj["kind"] not in ("StatefulSet", "Deployment", "DaemonSet"):
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_prometheus_follows_the_spec() -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in _render(EXAMPLES["tuned"])}
    sts = objects[("StatefulSet", "demo-prometheus")]
    assert sts["spec"]["replicas"] == 3
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--storage.tsdb.retention.time=30d" in args
    claim = sts["spec"]["volumeClaimTemplates"][0]["spec"]
    assert claim["resources"]["requests"]["storage"] == "100Gi" and claim["storageClassName"] == "fast"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
    config = yaml.safe_load(objects[("ConfigMap", "demo-prometheus")]["data"]["prometheus.yml"])
    assert config["global"]["external_labels"]["replica"] == "${POD_NAME}"
    agents = next(j for j in config["scrape_configs"] if j["job_name"] == "agents")
    keeps = [r for r in agents["relabel_configs"] if r.get("action") == "keep"]
    assert {"__meta_kubernetes_pod_label_team", "__meta_kubernetes_pod_label_tier"} <= {
        r["source_labels"][0] for r in keeps}


def test_config_change_rolls_the_pods() -> None:
    def config_hash(spec: dict[str, Any]) -> str:
        sts = next(o for o in _render(spec) if o["kind"] == "StatefulSet")
        return str(sts["spec"]["template"]["metadata"]["annotations"]["agentobs.io/config-hash"])

    assert config_hash({}) != config_hash({"prometheus": {"scrapeInterval": "15s"}})
    assert config_hash({}) == config_hash({"prometheus": {"replicas": 4}})


def test_container_resources_come_from_the_spec() -> None:
    spec = {"grafana": {"resources": {"limits": {"memory": "1Gi"}}},
            "logging": {"resources": {"requests": {"cpu": "300m"}}},
            "tracing": {"collector": {"resources": {"limits": {"memory": "3Gi"}}},
                        "queryResources": {"limits": {"memory": "768Mi"}}}}
    objects = {(o["kind"], o["metadata"]["name"]): o for o in _render(spec)}

    def first(kind: str, name: str) -> dict[str, Any]:
        return dict(objects[(kind, name)]["spec"]["template"]["spec"]["containers"][0]["resources"])

    assert first("Deployment", "demo-grafana") == {"limits": {"memory": "1Gi"}}
    assert first("StatefulSet", "demo-fluentd") == {"requests": {"cpu": "300m"}}
    assert first("Deployment", "demo-jaeger-collector") == {"limits": {"memory": "3Gi"}}
    assert first("Deployment", "demo-jaeger-query") == {"limits": {"memory": "768Mi"}}


SINGLE = {"prometheus": {"highAvailability": False, "replicas": 1, "alertmanager": {"replicas": 1}},
          "tracing": {"queryReplicas": 1}, "logging": {"replicas": 1}, "grafana": {"replicas": 1},
          "elasticsearch": {"external": {"url": "https://es.example:9200", "credentialsSecret": "es"}}}
SEVERAL = {"prometheus": {"replicas": 2, "alertmanager": {"replicas": 3}}, "tracing": {"queryReplicas": 2},
           "logging": {"replicas": 2}, "grafana": {"replicas": 2}, "elasticsearch": {"nodes": 3}}
AUTOSCALED = {"tracing": {"collector": {"autoscaling": {"enabled": True}}}}


@pytest.mark.parametrize("spec", [SINGLE, SEVERAL, AUTOSCALED], ids=["single", "several", "autoscaled"])
def test_a_disruption_budget_guards_each_workload_of_more_than_one_replica(spec: dict[str, Any]) -> None:
    objects = _render(spec)
    budgets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PodDisruptionBudget"}
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    assert workloads
    for workload in workloads:
        name, replicas = workload["metadata"]["name"], workload["spec"].get("replicas")
        if replicas is not None and replicas < 2:
            # maxUnavailable 1 over one pod protects nothing, and costs the disruption controller
            # a selector match on every pod change in the namespace.
            assert name not in budgets, f"{name} runs one replica but has a budget"
            continue
        budget = budgets.pop(name, None)
        assert budget is not None, f"{name} runs {replicas or 'autoscaled'} replicas without a budget"
        assert budget["spec"] == {"maxUnavailable": 1,
                                  "selector": {"matchLabels": workload["spec"]["selector"]["matchLabels"]}}
    assert not budgets, f"budgets for no workload: {sorted(budgets)}"


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_replicas_are_spread_softly_without_pod_affinity(example: str) -> None:
    """Pod (anti-)affinity makes every placement check the pods of every node; a soft spread
    constraint over the component's own pods gives the same preference."""
    for workload in (o for o in _render(EXAMPLES[example]) if o["kind"] in ("Deployment", "StatefulSet")):
        pod = workload["spec"]["template"]["spec"]
        assert "podAntiAffinity" not in pod.get("affinity", {}) and "podAffinity" not in pod.get("affinity", {})
        [spread] = pod["topologySpreadConstraints"]
        assert spread == {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                          "labelSelector": {"matchLabels": workload["spec"]["selector"]["matchLabels"]}}
