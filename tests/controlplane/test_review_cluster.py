"""The review's fixes against the real API server and the operator: component switches prune and
report Disabled, agents in other namespaces get Prometheus discovery with a Role there, a pod the
scheduler cannot place is named in status, bad PromQL in extraRules leaves the stack Degraded
without reaching Prometheus, and a webhook that cannot start does not stop reconciling."""

from __future__ import annotations

import socket
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentobs.kube import Kube

from cluster_support import OperatorProcess, free_port
from conftest import SESSION_PREFIX, Operator, condition, get_resource, make_resource, wait_for, wait_ready

RBAC = "rbac.authorization.k8s.io/v1"


def _observed(kube: Kube, namespace: str, name: str, generation: int) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        res = get_resource(kube, namespace, name)
        return res if res and (res.get("status") or {}).get("observedGeneration") == generation else None
    return check


def test_switching_components_off_prunes_them_and_reports_disabled(kube: Kube, operator: Operator,
                                                                   namespace: str) -> None:
    kube.apply(make_resource("sw", namespace, {}))
    wait_ready(kube, namespace, "sw", generation=1)
    assert kube.get("apps/v1", "Deployment", namespace, "sw-grafana") is not None
    kube.apply(make_resource("sw", namespace, {"grafana": {"enabled": False}, "tracing": {"enabled": False},
                                               "prometheus": {"alertmanager": {"enabled": False}}}))
    res = wait_ready(kube, namespace, "sw", generation=2)
    for kind, name in [("Deployment", "sw-grafana"), ("Deployment", "sw-jaeger-collector"),
                       ("Deployment", "sw-jaeger-query"), ("StatefulSet", "sw-alertmanager")]:
        wait_for(f"{kind} {name} to be pruned", lambda kind=kind, name=name: kube.get(
            "apps/v1", kind, namespace, name) is None)
    for type_ in ("GrafanaReady", "TracingReady", "AlertmanagerReady"):
        assert condition(res, type_)["reason"] == "Disabled", condition(res, type_)
    assert "grafana" not in res["status"]["endpoints"] and "otlpGrpc" not in res["status"]["endpoints"]
    assert "grafana" not in res["status"]["components"]
    config = kube.get("v1", "ConfigMap", namespace, "sw-prometheus")
    assert config is not None and "alerting" not in yaml.safe_load(config["data"]["prometheus.yml"])


@pytest.fixture
def labelled_namespace(kubectl: Any) -> Iterator[tuple[str, str]]:
    """A namespace of this session carrying a label value no other test uses."""
    name, value = f"{SESSION_PREFIX}-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:10]
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, f"agentobs-test={value}")
    yield name, value
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_agents_in_selected_namespaces_are_discovered_with_a_role_there(
        kube: Kube, kubectl: Any, operator: Operator, namespace: str, labelled_namespace: tuple[str, str]) -> None:
    other, value = labelled_namespace
    kube.apply(make_resource("far", namespace, {"instrumentation": {
        "namespaceSelector": {"matchLabels": {"agentobs-test": value}}}}))
    role_name = f"agentobs-{namespace}-far-prometheus"
    role = wait_for("the Prometheus Role in the agents' namespace",
                    lambda: kube.get(RBAC, "Role", other, role_name))
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    binding = wait_for("its RoleBinding", lambda: kube.get(RBAC, "RoleBinding", other, role_name))
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "far-prometheus", "namespace": namespace}]
    config = yaml.safe_load(kube.get("v1", "ConfigMap", namespace, "far-prometheus")["data"]["prometheus.yml"])
    agents = next(j for j in config["scrape_configs"] if j["job_name"] == "agents")
    assert agents["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": [other]}}]
    # The namespace stops matching: its Role goes (pruned by labels; no owner reference can reach it).
    kubectl("label", "namespace", other, "agentobs-test-")
    wait_for("the Role to be pruned", lambda: kube.get(RBAC, "Role", other, role_name) is None, timeout=60)
    # One DELETE each, in turn: the binding may go a moment after the Role.
    wait_for("its RoleBinding to be pruned", lambda: kube.get(RBAC, "RoleBinding", other, role_name) is None,
             timeout=10)


def test_a_component_the_scheduler_cannot_place_is_named_with_its_message(
        kube: Kube, operator: Operator, namespace: str) -> None:
    # No node of any cluster this runs on has 4000 CPUs: honest, and independent of other objects.
    kube.apply(make_resource("big", namespace, {"grafana": {"resources": {"requests": {"cpu": "4000"}}}}))

    def unschedulable() -> dict[str, Any] | None:
        cond = condition(get_resource(kube, namespace, "big"), "GrafanaReady")
        return cond if cond.get("reason") == "Unschedulable" else None

    cond = wait_for("GrafanaReady to say Unschedulable", unschedulable, timeout=120)
    assert cond["status"] == "False" and "Insufficient cpu" in cond["message"], cond
    assert condition(get_resource(kube, namespace, "big"), "Ready")["status"] == "False"


def test_extra_rules_that_do_not_parse_leave_the_stack_degraded_and_prometheus_untouched(
        kube: Kube, operator: Operator, namespace: str) -> None:
    good = {"name": "team", "rules": [{"alert": "TeamDown", "expr": "up == 0"}]}
    bad = {"name": "typo", "rules": [{"record": "team:up:sum", "expr": "sum(up"}]}
    kube.apply(make_resource("rules", namespace, {"prometheus": {"extraRules": [good, bad]}}))

    def degraded() -> dict[str, Any] | None:
        cond = condition(get_resource(kube, namespace, "rules"), "Degraded")
        return cond if cond.get("reason") == "InvalidExtraRules" else None

    cond = wait_for("Degraded with InvalidExtraRules", degraded)
    assert cond["status"] == "True" and "extraRules[1].rules[0].expr" in cond["message"], cond
    rules = kube.get("v1", "ConfigMap", namespace, "rules-prometheus-rules")
    assert rules is not None
    written = yaml.safe_load(rules["data"]["extra.rules.yml"])
    assert [g["name"] for g in written["groups"]] == ["team"]  # the bad group never reaches Prometheus

    bad["rules"][0]["expr"] = "sum(up)"
    kube.apply(make_resource("rules", namespace, {"prometheus": {"extraRules": [good, bad]}}))
    wait_ready(kube, namespace, "rules", generation=2)
    rules = kube.get("v1", "ConfigMap", namespace, "rules-prometheus-rules")
    assert rules is not None
    assert [g["name"] for g in yaml.safe_load(rules["data"]["extra.rules.yml"])["groups"]] == ["team", "typo"]


# --- item 9: a webhook that cannot start does not stop reconciling -------------------------------

def _scrape(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return str(response.read().decode())


def test_a_new_resource_becomes_ready_while_the_webhook_port_is_taken(
        kube: Kube, kubectl: Any, tmp_path: Path) -> None:
    # An operator of its own, scoped to namespaces of its own prefix, whose webhook port is held.
    prefix = f"{SESSION_PREFIX}w{uuid.uuid4().hex[:4]}"
    namespace = f"{prefix}-ns"
    configuration = f"agentobs-webhook-{prefix}"
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    metrics_port, health_port = free_port(), free_port()
    op = OperatorProcess({
        "AGENTOBS_BIND_ADDRESS": "127.0.0.1", "AGENTOBS_RESYNC_SECONDS": "3",
        "AGENTOBS_NAMESPACES": f"{prefix}-*", "AGENTOBS_WEBHOOK_PORT": str(taken.getsockname()[1]),
        "AGENTOBS_WEBHOOK_CONFIGURATION": configuration,
        "AGENTOBS_METRICS_PORT": str(metrics_port), "AGENTOBS_HEALTH_PORT": str(health_port),
    }, tmp_path / "operator.log")
    kubectl("create", "namespace", namespace)
    op.start()
    try:
        kube.apply(make_resource("stack", namespace, {}))
        wait_ready(kube, namespace, "stack", generation=1)
        def degraded() -> str | None:
            text = _scrape(health_port, "/healthz")
            return text if "degraded" in text else None

        health = wait_for("/healthz to report the webhook degraded", degraded)
        assert "not serving" in health and "webhook" in health
        metrics = _scrape(metrics_port, "/metrics")
        assert "agentobs_webhook_serving 0.0" in metrics
        assert 'agentobs_webhook_start_failures_total{reason="OSError"}' in metrics
        events = wait_for("a WebhookNotServing Event", lambda: [
            e for e in kube.list("v1", "Event", "default")
            if e["involvedObject"].get("name") == configuration and e["reason"] == "WebhookNotServing"])
        assert events[0]["type"] == "Warning"
    finally:
        op.stop()
        taken.close()
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        kube.delete("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None, configuration)
        for event in kube.list("v1", "Event", "default"):
            if event["involvedObject"].get("name") == configuration:
                kube.delete("v1", "Event", "default", event["metadata"]["name"])
