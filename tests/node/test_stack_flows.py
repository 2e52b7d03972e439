"""The metrics side of a stack running for real on the real node: the Prometheus HA pair and the
three-peer Alertmanager cluster the operator renders, from the images hack/images.py builds, and the
example agent injected by the webhook.

Asserted against the running processes, through their own HTTPS APIs (the stack's CA, the generated
basic-auth credentials), reached at the pods' addresses from the host:
- both Prometheus replicas scrape the agent pod, each other and every Alertmanager peer (`up` is 1
  for every target);
- the Alertmanager peers form one cluster of 3 over their mutual-TLS gossip;
- an alert both replicas fire arrives in Alertmanager exactly once (the `replica` label dropped);
- a deleted Prometheus pod comes back and its targets with it.

What this does not run: Jaeger, Elasticsearch, Fluentd and Grafana are switched off (no usable
build of the last three here; the trace path with an Elasticsearch-API stand-in is still to come),
and Elasticsearch is `external` at an address nothing answers, so none of it is rendered.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster_support import wait_for
from conftest import Kubectl, agent_pod, get_json, namespace_manifest, namespaced_operator, pod_ready

ALERT = "AgentObsNodeFlowProbe"
SMALL = {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}}


def _secret(kubectl: Kubectl, namespace: str, name: str, key: str) -> str:
    data = get_json(kubectl, "secret", name, "-n", namespace)["data"]
    return base64.b64decode(data[key]).decode()


class Stack:
    def __init__(self, kubectl: Kubectl, namespace: str) -> None:
        self.kubectl, self.namespace = kubectl, namespace
        ca = _secret(kubectl, namespace, "flows-ca", "ca.crt")
        self.context = ssl.create_default_context(cadata=ca)
        # Pods are reached by address; the certificate names the Services, which the CA check covers.
        self.context.check_hostname = False

    def pods(self, component: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = get_json(self.kubectl, "pods", "-n", self.namespace, "-l",
                                               f"app.kubernetes.io/component={component}")["items"]
        return [p for p in items if p.get("status", {}).get("podIP") and not p["metadata"].get("deletionTimestamp")]

    def get(self, pod: dict[str, Any], port: int, path: str, component: str) -> Any:
        password = _secret(self.kubectl, self.namespace, f"flows-{component}-web-auth", "password")
        request = urllib.request.Request(f"https://{pod['status']['podIP']}:{port}{path}")
        token = base64.b64encode(f"agentobs:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, context=self.context, timeout=10) as response:
            return json.loads(response.read())

    def query(self, pod: dict[str, Any], promql: str) -> list[dict[str, Any]]:
        body = self.get(pod, 9090, "/api/v1/query?query=" + urllib.parse.quote(promql), "prometheus")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


@pytest.fixture(scope="module")
def stack(real_node: str, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    namespace = f"aobs-flows-{uuid.uuid4().hex[:6]}"
    kubectl("apply", "-f", "-", input=json.dumps(
        namespace_manifest(namespace, {"pod-security.kubernetes.io/enforce": "restricted"})))
    log_path = Path(tmp_path_factory.mktemp("flows")) / "operator.log"
    configuration = f"agentobs-webhook-{namespace}"
    operator = namespaced_operator(namespace, log_path, 10)
    operator.start()
    # The local cluster's host-path provisioner makes root-only directories, which no non-root pod
    # can write (hostPath ignores fsGroup); a real cluster's provisioners honour fsGroup. So the
    # Prometheus claims bind to volumes made here, writable by the pods' user.
    volumes = tmp_path_factory.mktemp("volumes")
    pv_names = []
    for ordinal in range(2):
        path = volumes / f"prometheus-{ordinal}"
        path.mkdir()
        path.chmod(0o777)
        pv_names.append(f"{namespace}-prometheus-{ordinal}")
        kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_names[-1]},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "standard", "persistentVolumeReclaimPolicy": "Retain",
                     "hostPath": {"path": str(path), "type": "Directory"},
                     "claimRef": {"namespace": namespace, "name": f"data-flows-prometheus-{ordinal}"}}}))
    kubectl("create", "secret", "generic", "nowhere-es", "-n", namespace,
            "--from-literal=username=none", "--from-literal=password=none")
    resource = {
        "apiVersion": "agentobs.io/v1alpha1", "kind": "AgentObservability",
        "metadata": {"name": "flows", "namespace": namespace},
        "spec": {
            "instrumentation": {"podSelector": {"matchLabels": {"app": "example-agent"}}},
            "prometheus": {"replicas": 2, "resources": SMALL, "storage": {"size": "1Gi"},
                           "extraRules": [{"name": "node-flows", "interval": "5s", "rules": [
                               {"alert": ALERT, "expr": "vector(1)", "labels": {"severity": "info"}}]}],
                           "alertmanager": {"replicas": 3, "resources": SMALL}},
            "tracing": {"enabled": False}, "grafana": {"enabled": False}, "logging": {"enabled": False},
            "elasticsearch": {"external": {"url": "https://nowhere.invalid:9200",
                                           "credentialsSecret": "nowhere-es"}},
        },
    }
    try:
        wait_for("the operator's webhook configuration",
                 lambda: kubectl("get", "mutatingwebhookconfiguration", configuration, check=False).returncode == 0,
                 timeout=120)
        kubectl("apply", "-f", "-", input=json.dumps(resource))
        wait_for("the stack's CA", lambda: kubectl("get", "secret", "flows-ca", "-n", namespace,
                                                  check=False).returncode == 0, timeout=120)
        kubectl("apply", "-f", "-", input=json.dumps(agent_pod(namespace, "1")))
        yield Stack(kubectl, namespace)
    finally:
        operator.stop()
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        kubectl("delete", "mutatingwebhookconfiguration", configuration, "--ignore-not-found", check=False)
        for name in pv_names:
            kubectl("delete", "pv", name, "--wait=false", "--ignore-not-found", check=False)


def _all_ready(stack: Stack, component: str, count: int) -> list[dict[str, Any]] | None:
    pods = stack.pods(component)
    return pods if len(pods) == count and all(pod_ready(p) for p in pods) else None


def _targets_up(stack: Stack, pod: dict[str, Any], peers: list[str]) -> dict[str, float] | None:
    """`up` of every target of one replica, once the agent and every named peer are among them and
    all are 1; None until then."""
    try:
        result = stack.query(pod, "up")
    except OSError:
        return None
    values = {f"{r['metric'].get('job')}/{r['metric'].get('instance')}": float(r["value"][1]) for r in result}
    instances = " ".join(values)
    if not any(key.startswith("agents/") for key in values) or any(f"/{p}." not in instances for p in peers):
        return None
    return values if all(v == 1.0 for v in values.values()) else None


def test_prometheus_pair_scrapes_the_agent_each_other_and_alertmanager(stack: Stack) -> None:
    prometheus = wait_for("both Prometheus replicas running and ready on the real node",
                          lambda: _all_ready(stack, "prometheus", 2), timeout=300, interval=3)
    wait_for("all three Alertmanager peers ready", lambda: _all_ready(stack, "alertmanager", 3),
             timeout=300, interval=3)
    # Stack peers are scraped by their stable DNS names, the agent by its pod address.
    peers = [p["metadata"]["name"] for p in [*prometheus, *stack.pods("alertmanager")]]
    for pod in prometheus:
        assert pod["spec"]["nodeName"] == "agentobs-node"
        up = wait_for(f"every target of {pod['metadata']['name']} up: the agent, both replicas, 3 Alertmanagers",
                      lambda p=pod: _targets_up(stack, p, peers), timeout=240, interval=5)
        assert len(up) >= len(peers) + 1, up


def test_alertmanager_peers_form_one_cluster(stack: Stack) -> None:
    peers = wait_for("three Alertmanager peers", lambda: _all_ready(stack, "alertmanager", 3), timeout=300, interval=3)
    for pod in peers:
        status = wait_for(f"{pod['metadata']['name']} to see 3 peers",
                          lambda p=pod: (s := stack.get(p, 9093, "/api/v2/status", "alertmanager"))
                          and len(s["cluster"]["peers"]) == 3 and s, timeout=120, interval=3)
        assert status["cluster"]["status"] == "ready"


def test_an_alert_both_replicas_fire_arrives_once(stack: Stack) -> None:
    prometheus = wait_for("both Prometheus replicas", lambda: _all_ready(stack, "prometheus", 2), timeout=300)
    for pod in prometheus:
        wait_for(f"{pod['metadata']['name']} firing {ALERT}",
                 lambda p=pod: stack.query(p, f'ALERTS{{alertname="{ALERT}",alertstate="firing"}}'),
                 timeout=180, interval=3)
    peers = stack.pods("alertmanager")
    path = "/api/v2/alerts?filter=" + urllib.parse.quote(f'alertname="{ALERT}"')
    alerts = wait_for(f"{ALERT} in Alertmanager", lambda: stack.get(peers[0], 9093, path, "alertmanager"),
                      timeout=180, interval=3)
    time.sleep(15)  # both replicas have had time to send theirs again (evaluation every 5 s)
    for pod in peers:
        alerts = stack.get(pod, 9093, path, "alertmanager")
        assert len(alerts) == 1, f"{pod['metadata']['name']} shows {len(alerts)} copies: {alerts}"
        assert "replica" not in alerts[0]["labels"]


def test_a_deleted_prometheus_pod_comes_back_with_its_targets(stack: Stack) -> None:
    first, _second = wait_for("both Prometheus replicas", lambda: _all_ready(stack, "prometheus", 2), timeout=300)
    stack.kubectl("delete", "pod", "-n", stack.namespace, first["metadata"]["name"], "--wait=true", timeout=120)
    back = wait_for("the deleted replica back and ready",
                    lambda: (p := _all_ready(stack, "prometheus", 2))
                    and first["metadata"]["uid"] not in {x["metadata"]["uid"] for x in p} and p,
                    timeout=300, interval=3)
    peers = [p["metadata"]["name"] for p in [*back, *stack.pods("alertmanager")]]
    for pod in back:
        wait_for(f"every target of {pod['metadata']['name']} up again", lambda p=pod: _targets_up(stack, p, peers),
                 timeout=240, interval=5)
