"""The metrics side against the real API server: Alertmanager and Grafana converge, their objects
are accepted, generated credentials are kept, and the user's receivers Secret is mounted."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from agentobs.kube import Kube

from conftest import Operator, condition, make_resource, wait_for, wait_ready

STS = ("apps/v1", "StatefulSet")
DEPLOY = ("apps/v1", "Deployment")
NETPOL = ("networking.k8s.io/v1", "NetworkPolicy")


def test_default_resource_is_ready_with_alertmanager_and_grafana(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    kube.apply(make_resource("obs", namespace, {}))
    res = wait_ready(kube, namespace, "obs", generation=1)

    assert condition(res, "AlertmanagerReady")["status"] == "True"
    assert condition(res, "GrafanaReady")["status"] == "True"
    assert condition(res, "Degraded")["status"] == "False"
    assert res["status"]["components"]["alertmanager"] == {"ready": 3, "desired": 3}
    assert res["status"]["components"]["grafana"] == {"ready": 1, "desired": 1}
    assert res["status"]["endpoints"]["grafana"] == f"https://obs-grafana.{namespace}.svc:3000"
    policies = {p["metadata"]["name"] for p in kube.list(*NETPOL, namespace, "agentobs.io/owner=obs")}
    assert {"obs-prometheus", "obs-alertmanager", "obs-grafana"} <= policies
    rules = kube.get("v1", "ConfigMap", namespace, "obs-prometheus-rules")
    assert rules is not None and "AgentObsAlertmanagerClusterDegraded" in rules["data"]["agentobs.rules.yml"]


def test_metrics_stack_pods_are_admitted_under_restricted_pod_security(
    kube: Kube, kubectl: Callable[..., Any], operator: Operator, namespace: str
) -> None:
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    # Log collection reads the nodes' log files (hostPath), which the restricted profile forbids.
    kube.apply(make_resource("strict", namespace, {"logging": {"enabled": False}}))
    res = wait_ready(kube, namespace, "strict", generation=1)
    assert condition(res, "AlertmanagerReady")["status"] == "True"
    assert condition(res, "GrafanaReady")["status"] == "True"
    # The pods exist, so the restricted profile admitted them.
    assert len(kube.list("v1", "Pod", namespace, "app.kubernetes.io/name=alertmanager")) == 3
    assert len(kube.list("v1", "Pod", namespace, "app.kubernetes.io/name=grafana")) == 1


def _admin(kube: Kube, namespace: str, name: str) -> dict[str, str]:
    secret = kube.get("v1", "Secret", namespace, f"{name}-grafana-admin")
    assert secret is not None
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_grafana_admin_secret_is_generated_once_and_kept_across_spec_changes(
    kube: Kube, operator: Operator, namespace: str
) -> None:
    kube.apply(make_resource("keep", namespace, {}))
    wait_ready(kube, namespace, "keep", generation=1)
    first = _admin(kube, namespace, "keep")
    assert first["admin-user"] == "admin" and len(first["admin-password"]) >= 24

    kube.apply(
        make_resource("keep", namespace, {"grafana": {"replicas": 2}, "prometheus": {"alertmanager": {"replicas": 5}}})
    )
    res = wait_ready(kube, namespace, "keep", generation=2)
    assert res["status"]["components"]["grafana"] == {"ready": 2, "desired": 2}
    assert res["status"]["components"]["alertmanager"] == {"ready": 5, "desired": 5}
    assert _admin(kube, namespace, "keep") == first
    grafana = kube.get(*DEPLOY, namespace, "keep-grafana")
    assert grafana is not None
    env = {e["name"]: e for e in grafana["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GF_SECURITY_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "keep-grafana-admin"


def test_receivers_secret_is_mounted_when_given(kube: Kube, operator: Operator, namespace: str) -> None:
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "team-alerting", "namespace": namespace},
            "stringData": {"am.yml": "route: {receiver: team}\nreceivers: [{name: team}]\n"},
        }
    )
    spec = {
        "prometheus": {"alertmanager": {"replicas": 2, "receiversSecret": {"name": "team-alerting", "key": "am.yml"}}}
    }
    kube.apply(make_resource("recv", namespace, spec))
    wait_ready(kube, namespace, "recv", generation=1)
    sts = kube.get(*STS, namespace, "recv-alertmanager")
    assert sts is not None
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["secret"]["secretName"] == "team-alerting"
    assert volumes["config"]["secret"]["items"] == [{"key": "am.yml", "path": "alertmanager.yml"}]
    assert kube.get("v1", "ConfigMap", namespace, "recv-alertmanager") is None


def test_ingress_and_oidc_are_accepted(kube: Kube, operator: Operator, namespace: str) -> None:
    spec = {
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
        }
    }
    kube.apply(make_resource("sso", namespace, spec))
    res = wait_ready(kube, namespace, "sso", generation=1)
    assert res["status"]["endpoints"]["grafana"] == "https://grafana.example.com"
    ingress = wait_for(
        "the Grafana Ingress", lambda: kube.get("networking.k8s.io/v1", "Ingress", namespace, "sso-grafana")
    )
    assert ingress["spec"]["tls"][0]["secretName"] == "sso-grafana-tls"
