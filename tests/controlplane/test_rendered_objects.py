"""Every object the operator renders is valid for the pinned Kubernetes: the real API server
accepts it under strict field validation (its OpenAPI schema: an unknown or misplaced field is an
error), in a namespace that enforces Pod Security `restricted`. Server-side dry run: nothing is
persisted, so no operator is involved."""

from __future__ import annotations

from typing import Any

import pytest

from agentobs.api.spec import AgentObservabilitySpec
from agentobs.kube import Kube, KubeError
from agentobs.render import Owner, collector, make_stack

from placeholders import placeholder_material

SPECS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "tuned": {
        "prometheus": {
            "replicas": 3,
            "retention": "30d",
            "extraRules": [{"name": "team", "rules": [{"alert": "X", "expr": "vector(1) > 2"}]}],
            "alertmanager": {"replicas": 5, "receiversSecret": {"name": "am", "key": "alertmanager.yml"}},
        },
        "tracing": {"collector": {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 8}}},
        "elasticsearch": {"nodes": 5, "heap": "2g"},
        "grafana": {
            "ingressHost": "grafana.example.com",
            "oidc": {
                "issuerUrl": "https://id.example.com",
                "authUrl": "https://id.example.com/auth",
                "tokenUrl": "https://id.example.com/token",
                "userinfoUrl": "https://id.example.com/userinfo",
                "clientId": "grafana",
                "clientSecret": {"name": "oidc", "key": "secret"},
            },
        },
        "instrumentation": {"namespaceSelector": {"matchLabels": {"team": "search"}}},
    },
    "external-es-no-logging": {
        "elasticsearch": {
            "external": {"url": "https://es.example.com:9200", "credentialsSecret": "es", "caSecret": "es-ca"}
        },
        "logging": {"enabled": False},
    },
}


@pytest.fixture
def restricted(kubectl: Any, namespace: str) -> str:
    kubectl(
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )
    return namespace


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_rendered_object_is_accepted_strictly(kube: Kube, restricted: str, name: str) -> None:
    owner = Owner(
        name="render",
        namespace=restricted,
        uid="00000000-0000-0000-0000-0000000000aa",
        spec=AgentObservabilitySpec.model_validate(SPECS[name]),
    )
    objects = make_stack(owner, placeholder_material(owner))
    refused = []
    for obj in objects:
        try:
            kube.apply(obj, dry_run=True)
        except KubeError as exc:
            refused.append(f"{obj['kind']} {obj['metadata']['name']}: {exc.message}")
    assert not refused, "\n".join(refused)
    assert len({o["kind"] for o in objects}) >= 8


def test_the_node_log_collector_is_accepted_strictly(kube: Kube, kubectl: Any, namespace: str) -> None:
    """The cluster's collector, in a namespace like the operator's (privileged), with two routes."""
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=privileged")
    routes = [collector.Route(ns, "obs", (ns, "shared"), {"agentobs.io/agent": "true"}, f"obs-fluentd.{ns}.svc",
                              24224, "-----BEGIN CERTIFICATE-----\n", "-----BEGIN CERTIFICATE-----\n",
                              "-----BEGIN PRIVATE KEY-----\n") for ns in ("team-a", "team-b")]
    objects = collector.render(namespace, routes)
    refused = []
    for obj in objects:
        try:
            kube.apply(obj, dry_run=True)
        except KubeError as exc:
            refused.append(f"{obj['kind']} {obj['metadata']['name']}: {exc.message}")
    assert not refused, "\n".join(refused)
    assert {o["kind"] for o in objects} == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
                                            "Secret", "DaemonSet", "Service", "NetworkPolicy"}
