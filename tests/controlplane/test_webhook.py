"""The pod webhook, called by the real API server over TLS: the injection contract, opt-outs,
idempotence, fail-open, and injection coverage when the operator was away."""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
import datetime as dt
import threading
import uuid
from typing import Any

import pytest

from agentobs import metrics
from agentobs.admission import server as admission
from agentobs.admission import webhook
from agentobs.admission.injection import ConfigIndex, InjectionConfig
from agentobs.kube import Kube

from conftest import Operator, condition, get_resource, make_resource, wait_for, wait_ready

AGENT = {"agentobs.io/agent": "true"}


def _pod(name: str, namespace: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
         containers: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels if labels is not None else AGENT,
                         "annotations": annotations or {}},
            "spec": {"containers": containers or [{"name": "agent", "image": "agent:1"}], **spec}}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.fixture
def stack(kube: Kube, operator: Operator, namespace: str) -> str:
    kube.apply(make_resource("obs", namespace, {}))
    wait_ready(kube, namespace, "obs")
    return namespace


def _create(kube: Kube, pod: dict[str, Any]) -> dict[str, Any]:
    return kube.apply(pod)


def test_pods_are_mutated_as_the_contract_says(kube: Kube, stack: str) -> None:
    pod = _create(kube, _pod("agent", stack, labels={**AGENT, "app.kubernetes.io/name": "planner"},
                             containers=[{"name": "agent", "image": "a"}, {"name": "tools", "image": "t"}],
                             initContainers=[{"name": "setup", "image": "s"}]))
    for container in pod["spec"]["containers"] + pod["spec"]["initContainers"]:
        env = _env(container)
        assert env["OTEL_SERVICE_NAME"] == "planner"
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"https://obs-jaeger-collector.{stack}.svc:4317"
        assert env["OTEL_EXPORTER_OTLP_CERTIFICATE"] == "/var/run/agentobs/ca/ca.crt"
        assert "k8s.pod.name=$(AGENTOBS_POD_NAME)" in env["OTEL_RESOURCE_ATTRIBUTES"]
        assert {"name": "agentobs-ca", "mountPath": "/var/run/agentobs/ca", "readOnly": True} in container[
            "volumeMounts"]
    annotations = pod["metadata"]["annotations"]
    assert annotations["agentobs.io/injected"] == f"{stack}/obs"
    assert annotations["prometheus.io/scrape"] == "true"
    assert kube.get("v1", "ConfigMap", stack, "obs-ca-bundle") is not None


def test_unselected_and_opted_out_pods_are_untouched(kube: Kube, stack: str, namespace: str) -> None:
    plain = _create(kube, _pod("web", stack, labels={"app": "web"}))
    opted = _create(kube, _pod("optout", stack, annotations={"agentobs.io/inject": "false"}))
    for pod in (plain, opted):
        assert "agentobs.io/injected" not in (pod["metadata"].get("annotations") or {})
        assert "env" not in pod["spec"]["containers"][0]


def test_pods_in_other_namespaces_are_untouched(kube: Kube, operator: Operator, stack: str,
                                                kubectl: Any) -> None:
    other = f"{stack}-other"
    kubectl("create", "namespace", other)
    try:
        pod = _create(kube, _pod("agent", other))
        assert "agentobs.io/injected" not in (pod["metadata"].get("annotations") or {})
    finally:
        kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_pod_values_win_and_a_second_pass_changes_nothing(kube: Kube, stack: str) -> None:
    first = _create(kube, _pod("own", stack, containers=[
        {"name": "agent", "image": "a", "env": [{"name": "OTEL_SERVICE_NAME", "value": "mine"}]}]))
    env = first["spec"]["containers"][0]["env"]
    assert _env(first["spec"]["containers"][0])["OTEL_SERVICE_NAME"] == "mine"
    assert [e["name"] for e in env].count("OTEL_SERVICE_NAME") == 1
    # Send the already mutated pod through the webhook again: nothing may be added twice.
    again = copy.deepcopy(first)
    again["metadata"] = {"name": "own-again", "namespace": stack, "labels": first["metadata"]["labels"],
                         "annotations": first["metadata"]["annotations"]}
    again["spec"] = {k: v for k, v in first["spec"].items() if k in ("containers", "volumes")}
    second = _create(kube, again)
    assert second["spec"]["containers"][0]["env"] == env
    assert second["spec"]["volumes"] == first["spec"]["volumes"]


def test_only_named_containers(kube: Kube, stack: str) -> None:
    pod = _create(kube, _pod("named", stack, annotations={"agentobs.io/container-names": "tools"},
                             containers=[{"name": "agent", "image": "a"}, {"name": "tools", "image": "t"}]))
    agent, tools = pod["spec"]["containers"]
    assert "env" not in agent and "OTEL_SERVICE_NAME" in _env(tools)


def test_fail_open_is_counted_and_reported(kube: Kube, stack: str) -> None:
    class BrokenConfigs(ConfigIndex):
        def candidates(self, pod: dict[str, Any], namespace: str) -> list[InjectionConfig]:
            raise RuntimeError("configs unavailable")

    before = metrics.WEBHOOK_FAIL_OPEN.labels(reason="RuntimeError")._value.get()
    request = {"uid": "1", "namespace": stack, "object": _pod("broken", stack)}
    ops = asyncio.run(admission.admit(request, BrokenConfigs()))
    assert ops == [], "a failing webhook admits the pod untouched"
    assert metrics.WEBHOOK_FAIL_OPEN.labels(reason="RuntimeError")._value.get() == before + 1
    events = kube.list("v1", "Event", stack)
    failed = [e for e in events if e.get("reason") == "InjectionFailed"]
    assert failed and failed[0]["involvedObject"]["name"] == "broken"


def test_operator_down_pods_admitted_then_covered_and_rolled_out(kube: Kube, operator: Operator,
                                                                  namespace: str) -> None:
    kube.apply(make_resource("obs", namespace, {"instrumentation": {"rolloutOnChange": True}}))
    wait_ready(kube, namespace, "obs")
    operator.stop()
    try:
        pod = _create(kube, _pod("early", namespace))
        assert "agentobs.io/injected" not in (pod["metadata"].get("annotations") or {}), "admitted as it came"
        kube.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "planner", "namespace": namespace},
                    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "planner"}},
                             "template": {"metadata": {"labels": {**AGENT, "app": "planner"}},
                                          "spec": {"containers": [{"name": "agent", "image": "a"}]}}}})
        wait_for("uninjected deployment pods", lambda: len(kube.list("v1", "Pod", namespace, "app=planner")) == 2)
    finally:
        operator.start()

    def coverage_reported() -> dict[str, Any] | None:
        res = get_resource(kube, namespace, "obs")
        cond = condition(res, "InjectionCoverage")
        return res if cond.get("status") == "False" and (res or {})["status"]["injection"]["missing"] >= 1 else None

    res = wait_for("coverage to report the uninjected pods", coverage_reported)
    assert condition(res, "InjectionCoverage")["reason"] == "PodsNotInstrumented"

    def rolled_out() -> bool:
        pods = [p for p in kube.list("v1", "Pod", namespace, "app=planner")
                if not p["metadata"].get("deletionTimestamp")]
        return len(pods) == 2 and all((p["metadata"].get("annotations") or {}).get("agentobs.io/injected")
                                      for p in pods)

    wait_for("the Deployment to be restarted into injected pods", rolled_out, timeout=120)
    deployment = kube.get("apps/v1", "Deployment", namespace, "planner")
    assert deployment is not None
    assert "agentobs.io/rollout-for-injection" in deployment["spec"]["template"]["metadata"]["annotations"]


def test_replicas_starting_together_serve_one_certificate(kube: Kube, namespace: str) -> None:
    """Found on the real node: two replicas that start at once each stored and served a pair of their
    own, so the API server's calls to one of them failed the TLS check. The first to store wins and
    the other serves what it stored."""
    settings = webhook.WebhookSettings(port=9443, bind="127.0.0.1", configuration=f"race-{uuid.uuid4().hex[:8]}",
                                       service=f"{namespace}/hook", operator_namespace=namespace, host="127.0.0.1")
    now = dt.datetime.now(dt.UTC)
    results: list[webhook.ServingMaterial] = []
    barrier = threading.Barrier(3)

    def replica() -> None:
        barrier.wait()
        results.append(webhook.ensure(kube, settings, None, now)[0])

    threads = [threading.Thread(target=replica) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert len(results) == 3
        assert len({r.cert.cert_pem for r in results}) == 1, "replicas serve different certificates"
        stored = webhook.load_stored(kube, settings)
        assert stored is not None and stored.cert.cert_pem == results[0].cert.cert_pem
        config = kube.get("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None,
                          settings.configuration)
        assert config is not None
        bundle = base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"])
        assert bundle == results[0].ca.cert_pem
    finally:
        kube.delete("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None, settings.configuration)


def test_a_configuration_follows_the_operator_that_made_it_and_only_the_ca_of_one_it_did_not(
        kube: Kube, namespace: str) -> None:
    """Found by the scale bench: an operator restarted out of cluster on another port patched only
    the CA into the configuration it had made, so the API server kept calling the old port and
    every pod was admitted uninstrumented (failing open). Now it points its own configuration at
    itself; a chart's configuration keeps its URL; and nothing is written when nothing changed."""
    api, kind = "admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"
    first = webhook.WebhookSettings(port=19443, bind="127.0.0.1", configuration=f"moved-{uuid.uuid4().hex[:8]}",
                                    service="", operator_namespace=namespace, host="127.0.0.1")
    chart_made = f"chart-{uuid.uuid4().hex[:8]}"
    now = dt.datetime.now(dt.UTC)

    def client_config(name: str) -> tuple[dict[str, Any], str]:
        config = kube.get(api, kind, None, name)
        assert config is not None
        return config["webhooks"][0]["clientConfig"], config["metadata"]["resourceVersion"]

    try:
        webhook.ensure(kube, first, None, now)
        assert client_config(first.configuration)[0]["url"] == "https://127.0.0.1:19443/mutate-pods"

        moved = dataclasses.replace(first, port=19444)
        material, _ = webhook.ensure(kube, moved, None, now)  # a new process, on another port
        config, version = client_config(first.configuration)
        assert config["url"] == "https://127.0.0.1:19444/mutate-pods"
        assert base64.b64decode(config["caBundle"]) == material.ca.cert_pem
        webhook.ensure(kube, moved, material, now)  # the hourly upkeep, nothing due
        assert client_config(first.configuration)[1] == version, "an unchanged configuration was written"

        kube.apply({"apiVersion": api, "kind": kind, "metadata": {"name": chart_made}, "webhooks": [{
            "name": webhook.WEBHOOK_NAME, "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"url": "https://hook.example.invalid:8443/mutate-pods"},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}]},
            field_manager="helm")
        other = dataclasses.replace(moved, configuration=chart_made)
        material, _ = webhook.ensure(kube, other, None, now)
        config, version = client_config(chart_made)
        assert config["url"] == "https://hook.example.invalid:8443/mutate-pods"
        assert base64.b64decode(config["caBundle"]) == material.ca.cert_pem
        webhook.ensure(kube, other, material, now)
        assert client_config(chart_made)[1] == version, "an unchanged CA was written again"
    finally:
        for name in (first.configuration, chart_made):
            kube.delete(api, kind, None, name)
