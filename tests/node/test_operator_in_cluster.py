"""The operator as users run it: `helm install` of the chart, the operator image built by
hack/images.py, two replicas on the real node with the chart's own ServiceAccount and RBAC, and
the API server calling the webhook through the chart's Service.

The stack resource itself lives in a namespace on the kwok nodes (its Prometheus, Elasticsearch and
the rest are simulated: the data flows are tests/node/test_stack_flows.py's); the agent pods it
selects run for real on the real node, in a namespace of their own.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from cluster_support import ROOT, tool_dir, wait_for
from conftest import Kubectl, agent_image, get_json, pod_logs

AGENT_IMAGE = agent_image()


@dataclass
class Install:
    release: str
    operator_ns: str
    stack_ns: str
    agents_ns: str
    agents_label: str


def helm(kubeconfig: str, *args: str) -> str:
    result = subprocess.run([tool_dir("helm") + "/helm", "--kubeconfig", kubeconfig, *args], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, f"helm {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def operator_pods(kubectl: Kubectl, namespace: str, terminating: bool = False) -> list[dict[str, Any]]:
    """The operator's pods; those being deleted only with `terminating` (their containers may still
    run, and serve the webhook, until their grace period ends)."""
    items: list[dict[str, Any]] = get_json(kubectl, "pods", "-n", namespace, "-l",
                                           "app.kubernetes.io/component=operator")["items"]
    return [p for p in items if terminating or not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def lease_holder(kubectl: Kubectl, namespace: str) -> str | None:
    leases = get_json(kubectl, "leases", "-n", namespace)["items"]
    for lease in leases:
        if lease["metadata"]["name"].endswith("leader"):
            holder: str | None = lease["spec"].get("holderIdentity")
            return holder
    return None


def condition(resource: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in resource.get("status", {}).get("conditions", []):
        if c["type"] == type_:
            return dict(c)
    return {}


@pytest.fixture(scope="module")
def install(real_node: str, kubectl: Kubectl) -> Iterator[Install]:
    suffix = uuid.uuid4().hex[:6]
    operator_ns, stack_ns, agents_ns = f"aobs-op-{suffix}", f"aobs-stack-{suffix}", f"aobs-agents-{suffix}"
    on_node = {"scheduler.alpha.kubernetes.io/node-selector": "agentobs.io/real-node=true",
               "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(
                   [{"key": "agentobs.io/real-node", "operator": "Exists", "effect": "NoSchedule"}])}
    agents_label = f"agents-{suffix}"
    for name, notes, labels in ((operator_ns, on_node, {}), (stack_ns, {}, {}),
                                (agents_ns, on_node, {"agentobs.io/test-agents": agents_label})):
        kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "annotations": notes, "labels": labels}}))
    release = f"aobs-{suffix}"
    helm(real_node, "install", release, str(ROOT / "charts" / "agentobs"), "-n", operator_ns,
         "--set", f"operator.watchNamespaces={{{stack_ns},{agents_ns}}}",
         "--set", "operator.image.pullPolicy=Never",
         "--set", "webhook.timeoutSeconds=10")
    try:
        yield Install(release, operator_ns, stack_ns, agents_ns, agents_label)
    finally:
        helm(real_node, "uninstall", release, "-n", operator_ns, "--wait", "--timeout", "120s")
        for name in (stack_ns, agents_ns, operator_ns):
            kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def stack(install: Install, kubectl: Kubectl) -> dict[str, Any]:
    """An AgentObservability whose stack is simulated (kwok) and whose agents run for real."""
    resource = {
        "apiVersion": "agentobs.io/v1alpha1", "kind": "AgentObservability",
        "metadata": {"name": "team", "namespace": install.stack_ns},
        "spec": {"instrumentation": {
            "namespaceSelector": {"matchLabels": {"agentobs.io/test-agents": install.agents_label}},
            "podSelector": {"matchLabels": {"app": "example-agent"}}},
            # Its collector DaemonSet would put a pod on every node, the real one included, whose
            # image cannot be had here: logging is not what this module tests.
            "logging": {"enabled": False}},
    }
    kubectl("apply", "-f", "-", input=json.dumps(resource))

    def is_ready() -> dict[str, Any] | None:
        got = get_json(kubectl, "aobs", "team", "-n", install.stack_ns)
        return got if condition(got, "Ready").get("status") == "True" else None

    result: dict[str, Any] = wait_for("the stack reconciled by the in-cluster operator to be Ready", is_ready,
                                      timeout=300, interval=2)
    return result


def test_both_operator_pods_run_one_leads_and_the_other_takes_over(install: Install, kubectl: Kubectl,
                                                                    stack: dict[str, Any]) -> None:
    pods = wait_for("two Ready operator pods on the real node",
                    lambda: (p := operator_pods(kubectl, install.operator_ns)) and len(p) == 2
                    and all(ready(x) for x in p) and p, timeout=240, interval=2)
    assert {p["spec"]["nodeName"] for p in pods} == {"agentobs-node"}
    names = {p["metadata"]["name"] for p in pods}
    leader = wait_for("a leader Lease held by one of the pods",
                      lambda: (h := lease_holder(kubectl, install.operator_ns)) in names and h, timeout=120)

    # A full reconcile (the stack became Ready) with the chart's ServiceAccount: nothing refused.
    for pod in names:
        log = pod_logs(kubectl, install.operator_ns, pod)
        assert log, f"no log from {pod} (kubectl logs through the kubelet)"
        refused = [line for line in log.splitlines() if " 403" in line or "Forbidden" in line or "forbidden" in line]
        assert not refused, f"{pod} was refused by the API server:\n" + "\n".join(refused[:10])

    kubectl("delete", "pod", "-n", install.operator_ns, leader, "--wait=false")
    # The deleted leader releases the Lease as it stops, so a running replica takes over at once:
    # the standing one, or the Deployment's replacement when that starts first (seen both ways).
    def new_leader() -> str | None:
        holder = lease_holder(kubectl, install.operator_ns)
        live = {p["metadata"]["name"] for p in operator_pods(kubectl, install.operator_ns) if ready(p)}
        return holder if holder and holder != leader and holder in live else None

    wait_for(f"a running replica to take over the Lease from the deleted {leader}", new_leader,
             timeout=90, interval=1)


def _agent_pod(name: str, namespace: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "example-agent"},
                     "annotations": annotations or {}},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "agent", "image": AGENT_IMAGE, "imagePullPolicy": "Never",
                "env": [{"name": "EXAMPLE_AGENT_INTERVAL", "value": "1"}],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }],
            "terminationGracePeriodSeconds": 2,
        },
    }


def _running(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any] | None:
    pod = get_json(kubectl, "pod", name, "-n", namespace)
    return pod if pod.get("status", {}).get("phase") == "Running" and ready(pod) else None


def _env_in_container(kubectl: Kubectl, namespace: str, pod: str) -> dict[str, str]:
    out = kubectl("exec", "-n", namespace, pod, "-c", "agent", "--", "python3", "-c",
                  "import json, os; print(json.dumps(dict(os.environ)))").stdout
    env: dict[str, str] = json.loads(out)
    return env


def test_webhook_injects_through_the_service_and_the_pod_uses_it(install: Install, kubectl: Kubectl,
                                                                  stack: dict[str, Any]) -> None:
    ns = install.agents_ns
    kubectl("apply", "-f", "-", input=json.dumps(_agent_pod("agent", ns)))
    kubectl("apply", "-f", "-", input=json.dumps(_agent_pod("opted-out", ns, {"agentobs.io/inject": "false"})))
    agent = wait_for("the injected agent pod running on the real node", lambda: _running(kubectl, ns, "agent"),
                     timeout=180, interval=1)
    assert agent["spec"]["nodeName"] == "agentobs-node"
    assert agent["metadata"]["annotations"].get("agentobs.io/injected", "").startswith(f"{install.stack_ns}/team")

    env = _env_in_container(kubectl, ns, "agent")
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("https://") and install.stack_ns in env[
        "OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert env["OTEL_SERVICE_NAME"]
    assert "k8s.pod.name=agent" in env["OTEL_RESOURCE_ATTRIBUTES"]
    assert "k8s.namespace.name=" + ns in env["OTEL_RESOURCE_ATTRIBUTES"]
    ca_path = env["OTEL_EXPORTER_OTLP_CERTIFICATE"]
    pem = kubectl("exec", "-n", ns, "agent", "-c", "agent", "--", "python3", "-c",
                  f"print(open({ca_path!r}).read())").stdout
    assert pem.startswith("-----BEGIN CERTIFICATE-----"), f"CA bundle at {ca_path} not readable: {pem[:200]!r}"
    # The agent itself runs with what it was given: its loop logs JSON lines carrying trace ids.
    def traced_line() -> dict[str, Any] | None:
        for line in pod_logs(kubectl, ns, "agent").splitlines():
            if line.startswith("{") and '"trace_id"' in line:
                record: dict[str, Any] = json.loads(line)
                return record
        return None

    record = wait_for("the example agent to log a JSON line with a trace id", traced_line, timeout=90, interval=2)
    assert len(record["trace_id"]) == 32 and record["logger"] == "example_agent"

    wait_for("the opted-out pod running", lambda: _running(kubectl, ns, "opted-out"), timeout=180, interval=1)
    plain = _env_in_container(kubectl, ns, "opted-out")
    assert not [k for k in plain if k.startswith("OTEL_") or k.startswith("AGENTOBS_")], plain


def test_agent_pods_start_while_the_operator_is_gone_and_coverage_reports_them(
        install: Install, kubectl: Kubectl, stack: dict[str, Any]) -> None:
    ns = install.agents_ns
    deployments = get_json(kubectl, "deploy", "-n", install.operator_ns, "-l", "app.kubernetes.io/component=operator")
    deploy = "deploy/" + deployments["items"][0]["metadata"]["name"]
    kubectl("scale", deploy, "-n", install.operator_ns, "--replicas=0")
    try:
        wait_for("both operator pods gone, terminating ones included",
                 lambda: not operator_pods(kubectl, install.operator_ns, terminating=True) or None,
                 timeout=120, interval=1)
        started = time.monotonic()
        kubectl("apply", "-f", "-", input=json.dumps(_agent_pod("while-down", ns)))
        pod = wait_for("an agent pod admitted and running with no operator at all",
                       lambda: _running(kubectl, ns, "while-down"), timeout=180, interval=1)
        assert "agentobs.io/injected" not in pod["metadata"].get("annotations", {})
        assert time.monotonic() - started < 170
    finally:
        kubectl("scale", deploy, "-n", install.operator_ns, "--replicas=2")

    def missing_reported() -> dict[str, Any] | None:
        got = get_json(kubectl, "aobs", "team", "-n", install.stack_ns)
        injection = got.get("status", {}).get("injection") or {}
        return injection if injection.get("missing", 0) >= 1 else None

    injection = wait_for("coverage to report the pod admitted without injection", missing_reported,
                         timeout=240, interval=2)
    assert injection["selected"] >= injection["missing"] >= 1
