"""Status that says why, with a real kubelet (issue 12, item 6): an image the node cannot pull.

A small stack (one Prometheus, one Alertmanager; tracing, Grafana and logging off, Elasticsearch
`external` at an address nothing answers, so none of it runs) in a Pod Security `restricted`
namespace on the real node, reconciled by the operator as a local process. `spec.images.alertmanager`
names a tag the node's containerd does not hold; the node has no registry to pull it from, so the
kubelet's pull fails for real (ErrImagePull, then ImagePullBackOff), and:
- the AlertmanagerReady condition gives the kubelet's reason and names the image, Ready says what
  it waits for, and a Warning Event on the resource says the same;
- the operator keeps running and reconciling (no failed pass);
- with the image put right, the condition and Ready recover.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cluster_support import wait_for
from conftest import Kubectl, get_json, namespaced_operator

NAME = "pull"
# The tag hack/images.py imports is the spec's default; this one exists nowhere.
MISSING = "quay.io/prometheus/alertmanager:v0.0.0-not-on-this-node"
SMALL = {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}}
PULL_REASONS = ("ErrImagePull", "ImagePullBackOff")


def _condition(resource: dict[str, Any], type_: str) -> dict[str, Any]:
    for cond in (resource.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def _resource(kubectl: Kubectl, namespace: str) -> dict[str, Any]:
    got: dict[str, Any] = get_json(kubectl, "aobs", NAME, "-n", namespace)
    return got


def _pull_events(kubectl: Kubectl, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(kubectl, "events", "-n", namespace)["items"]
    return [e for e in items if e["involvedObject"].get("kind") == "AgentObservability"
            and e["involvedObject"].get("name") == NAME and e.get("reason") in PULL_REASONS]


def test_an_image_the_node_cannot_pull_is_named_in_status_and_recovers(
        real_node: str, kubectl: Kubectl, real_namespace: Callable[..., str],
        tmp_path_factory: pytest.TempPathFactory) -> None:
    namespace = real_namespace("aobs-pull", {"pod-security.kubernetes.io/enforce": "restricted"})
    work = tmp_path_factory.mktemp("pull")
    configuration = f"agentobs-webhook-{namespace}"
    operator = namespaced_operator(namespace, work / "operator.log", 5)
    # As in test_stack_flows: the local provisioner's directories are root-only, so Prometheus'
    # claim binds to a volume made here, writable by its non-root user.
    volume = work / "prometheus-0"
    volume.mkdir()
    volume.chmod(0o777)
    pv = f"{namespace}-prometheus-0"
    kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                 "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(volume), "type": "Directory"},
                 "claimRef": {"namespace": namespace, "name": f"data-{NAME}-prometheus-0"}}}))
    kubectl("create", "secret", "generic", "nowhere-es", "-n", namespace,
            "--from-literal=username=none", "--from-literal=password=none")
    resource = {
        "apiVersion": "agentobs.io/v1alpha1", "kind": "AgentObservability",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "prometheus": {"highAvailability": False, "replicas": 1, "resources": SMALL, "storage": {"size": "1Gi"},
                           "alertmanager": {"replicas": 1, "resources": SMALL}},
            "images": {"alertmanager": MISSING},
            "tracing": {"enabled": False}, "grafana": {"enabled": False}, "logging": {"enabled": False},
            "elasticsearch": {"external": {"url": "https://nowhere.invalid:9200", "credentialsSecret": "nowhere-es"}},
        },
    }
    operator.start()
    try:
        kubectl("apply", "-f", "-", input=json.dumps(resource))

        def pull_failure() -> dict[str, Any] | None:
            cond = _condition(_resource(kubectl, namespace), "AlertmanagerReady")
            return cond if cond.get("status") == "False" and cond.get("reason") in PULL_REASONS else None

        cond = wait_for("AlertmanagerReady to give the kubelet's pull failure", pull_failure, timeout=300, interval=3)
        print(f"AlertmanagerReady: {cond['reason']}: {cond['message']}")
        assert MISSING in cond["message"], cond
        assert f"pod {NAME}-alertmanager-0, container alertmanager" in cond["message"], cond
        # The pod really is in that state on the real node (not a status the test wrote).
        pod = get_json(kubectl, "pod", f"{NAME}-alertmanager-0", "-n", namespace)
        assert pod["spec"]["nodeName"] == "agentobs-node"
        waiting = pod["status"]["containerStatuses"][0]["state"].get("waiting") or {}
        assert waiting.get("reason") in PULL_REASONS, pod["status"]
        ready = _condition(_resource(kubectl, namespace), "Ready")
        assert ready["status"] == "False" and "AlertmanagerReady" in ready["message"], ready

        events = wait_for("a Warning Event naming the pull failure", lambda: _pull_events(kubectl, namespace),
                          timeout=60, interval=2)
        assert all(e["type"] == "Warning" for e in events), events
        print("events:", [(e["type"], e["reason"], e["message"]) for e in events])
        assert any(MISSING in e["message"] for e in events), events

        assert operator.process is not None and operator.process.poll() is None, operator.log()[-3000:]
        assert "pass failed" not in operator.log(), operator.log()[-3000:]

        # Put the image right: the StatefulSet rolls its stuck pod, and the stack recovers.
        kubectl("patch", "aobs", NAME, "-n", namespace, "--type=json", "-p",
                json.dumps([{"op": "remove", "path": "/spec/images/alertmanager"}]))
        recovered = wait_for(
            "AlertmanagerReady and Ready true again",
            lambda: (r := _resource(kubectl, namespace)) and _condition(r, "AlertmanagerReady").get("status") == "True"
            and _condition(r, "Ready").get("status") == "True" and r, timeout=300, interval=3)
        assert _condition(recovered, "AlertmanagerReady")["reason"] == "AllReplicasReady"
        pod = get_json(kubectl, "pod", f"{NAME}-alertmanager-0", "-n", namespace)
        assert pod["spec"]["containers"][0]["image"] != MISSING
        assert operator.process is not None and operator.process.poll() is None, operator.log()[-3000:]
        assert "pass failed" not in operator.log(), operator.log()[-3000:]
    finally:
        operator.stop()
        kubectl("delete", "aobs", NAME, "-n", namespace, "--ignore-not-found", "--wait=false", check=False)
        kubectl("delete", "mutatingwebhookconfiguration", configuration, "--ignore-not-found", check=False)
        kubectl("delete", "pv", pv, "--wait=false", "--ignore-not-found", check=False)
        log = Path(operator.log_path)
        if log.exists():
            print(log.read_text(errors="replace")[-4000:])
