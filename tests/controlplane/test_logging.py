"""The log pipeline on the control plane: one node collector for the cluster, one Fluentd
aggregator per resource in namespaces that enforce Pod Security `restricted`, routes that follow
the resources, and the index set-up Job run to completion by kwok's Job stage.

kwok runs no containers: what is asserted is what the API server admits and stores and how the
operator reacts; that records arrive once each is the kind e2e suite's (e2e/test_logging_on_kind.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from log_configs import fluent_bit_sections

from agentobs.kube import Kube
from agentobs.render import collector
from agentobs.stack import logroutes
from agentobs.stack.desired import stamp

from cluster_support import OperatorProcess, free_port
from conftest import COLLECTOR_NAMESPACE, SESSION_PREFIX, Operator, make_resource, wait_for, wait_ready

WORKLOADS = [("apps/v1", "StatefulSet"), ("apps/v1", "Deployment"), ("apps/v1", "DaemonSet")]


@pytest.fixture
def restricted_namespaces(kubectl: Callable[..., Any]) -> Iterator[list[str]]:
    names = [f"{SESSION_PREFIX}-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for name in names:
        kubectl("create", "namespace", name)
        kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted",
                "pod-security.kubernetes.io/enforce-version=latest")
    yield names
    for name in names:
        kubectl("delete", "namespace", name, "--wait=false", check=False)


def _routes(kube: Kube) -> tuple[str, str]:
    cm = kube.get("v1", "ConfigMap", COLLECTOR_NAMESPACE, collector.NAME)
    data = (cm or {}).get("data") or {}
    return data.get("routes.lua", ""), data.get("fluent-bit.conf", "")


def _hosts(conf: str) -> list[str]:
    """The aggregators the collector's outputs send to."""
    return [dict(params)["Host"] for section, params in fluent_bit_sections(conf) if section == "OUTPUT"]


def _collector_daemonsets(kube: Kube) -> list[dict[str, Any]]:
    """Every DaemonSet of this session's live namespaces that reads the nodes' log files. Another
    test's namespace, deleted without waiting, may still hold its collector for a while."""
    found = []
    for ds in kube.list("apps/v1", "DaemonSet", None):
        namespace = ds["metadata"]["namespace"]
        if not namespace.startswith(SESSION_PREFIX):
            continue
        if ((kube.get("v1", "Namespace", None, namespace) or {}).get("metadata") or {}).get("deletionTimestamp"):
            continue
        volumes = ds["spec"]["template"]["spec"].get("volumes", [])
        if any(v.get("hostPath", {}).get("path") == "/var/log" for v in volumes):
            found.append(ds)
    return found


def _every_workload_admitted(kube: Kube, namespace: str) -> None:
    """Each workload has all its pods (Pod Security refuses a pod at creation: it would have none),
    and the index set-up Job ran to completion."""
    for api, kind in WORKLOADS:
        for obj in kube.list(api, kind, namespace):
            status = obj.get("status") or {}
            desired = obj["spec"].get("replicas", status.get("desiredNumberScheduled"))
            ready = status.get("readyReplicas", status.get("numberReady", 0))
            assert desired and ready == desired, (kind, obj["metadata"]["name"], status)
    jobs = kube.list("batch/v1", "Job", namespace, "app.kubernetes.io/name=es-retention")
    assert len(jobs) == 1 and jobs[0]["metadata"]["name"].startswith("obs-es-setup-")
    refused = [e for e in kube.list("v1", "Event", namespace)
               if e.get("reason") == "FailedCreate" and "PodSecurity" in e.get("message", "")]
    assert refused == []


def test_two_restricted_stacks_share_one_collector_and_keep_their_routes(
        kube: Kube, operator: Operator, restricted_namespaces: list[str]) -> None:
    first, second = restricted_namespaces
    for namespace in restricted_namespaces:
        kube.apply(make_resource("obs", namespace, {}))
    for namespace in restricted_namespaces:
        wait_ready(kube, namespace, "obs", timeout=180)

    # The set-up Job completes (kwok's pod-complete stage for pods a Job owns), before anything else.
    for namespace in restricted_namespaces:
        wait_for(f"the index set-up Job in {namespace} to complete", lambda ns=namespace: [
            j for j in kube.list("batch/v1", "Job", ns, "app.kubernetes.io/name=es-retention")
            if (j.get("status") or {}).get("succeeded")], timeout=120)
        _every_workload_admitted(kube, namespace)
        aggregator = kube.get("apps/v1", "StatefulSet", namespace, "obs-fluentd")
        assert aggregator is not None and aggregator["status"].get("readyReplicas") == 2
        assert not kube.list("apps/v1", "DaemonSet", namespace)

    # One collector in the cluster, in the privileged namespace, with both routes.
    route_ids = [f"{ns}_obs" for ns in restricted_namespaces]

    def routes_with(present: list[str], absent: list[str]) -> tuple[str, str] | None:
        lua, conf = _routes(kube)
        ok = all(f'id = "{i}"' in lua for i in present) and not any(f'id = "{i}"' in lua for i in absent)
        return (lua, conf) if ok else None

    _, conf = wait_for("both routes in the collector", lambda: routes_with(route_ids, []), timeout=60)
    [daemonset] = _collector_daemonsets(kube)
    assert daemonset["metadata"]["namespace"] == COLLECTOR_NAMESPACE
    # (Other tests' resources of this session may have routes too: only ours are counted.)
    for namespace in restricted_namespaces:
        assert _hosts(conf).count(f"obs-fluentd.{namespace}.svc") == 1
    def collector_pods_ready() -> bool:
        status = (kube.get("apps/v1", "DaemonSet", COLLECTOR_NAMESPACE, collector.NAME) or {}).get("status") or {}
        return bool(status.get("desiredNumberScheduled", 0) > 0
                    and status.get("numberReady") == status["desiredNumberScheduled"])

    wait_for("the collector's pods on every node (admitted in the privileged namespace)", collector_pods_ready)

    # Deleting one resource removes its route; the other's stays, and its stack stays Ready.
    kube.delete("agentobs.io/v1alpha1", "AgentObservability", first, "obs")
    _, conf = wait_for("the deleted resource's route to go", lambda: routes_with(route_ids[1:], route_ids[:1]),
                       timeout=60)
    assert _hosts(conf).count(f"obs-fluentd.{second}.svc") == 1
    assert f"obs-fluentd.{first}.svc" not in _hosts(conf)
    assert len(_collector_daemonsets(kube)) == 1
    wait_ready(kube, second, "obs")
    assert kube.get("apps/v1", "StatefulSet", second, "obs-fluentd") is not None


def test_the_collector_is_not_placed_where_pod_security_would_refuse_it(kube: Kube, kubectl: Callable[..., Any],
                                                                       namespace: str) -> None:
    """The sync itself against the API server (no operator process): a collector namespace that
    enforces `baseline` gets no DaemonSet, and the reason names the label to set."""
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=baseline")
    body = make_resource("obs", namespace, {})
    body["metadata"]["uid"] = "uid-of-obs"
    result = logroutes.sync(kube, namespace, [body])
    assert "pod-security.kubernetes.io/enforce=privileged" in result.problem and not result.applied
    assert kube.get("apps/v1", "DaemonSet", namespace, collector.NAME) is None

    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=privileged", "--overwrite")
    result = logroutes.sync(kube, namespace, [body])
    # The resource exists only as a body here: no CA bundle, no client certificate, so no route yet.
    assert result.problem == "" and result.waiting == [f"{namespace}/obs"] and result.routes == []
    assert kube.get("apps/v1", "DaemonSet", namespace, collector.NAME) is None


def test_a_collector_switched_off_is_deleted_by_the_operator(kube: Kube, kubectl: Callable[..., Any],
                                                            namespace: str, tmp_path: Path) -> None:
    """`helm upgrade --set logCollector.enabled=false` restarts the operator without a collector
    namespace: the collector an earlier release ran (its DaemonSet on every node, each stack's
    client key) goes, and nothing else of the operator's namespace does."""
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=privileged")
    route = collector.Route("agents", "demo", ("agents",), {}, "demo-fluentd.agents.svc", 24224, "CA", "CERT", "KEY")
    left = [stamp(m) for m in collector.render(namespace, [route])]
    for manifest in left:
        kube.apply(manifest)
    kubectl("create", "configmap", "not-the-collectors", "-n", namespace)
    op = OperatorProcess({
        "AGENTOBS_LOG_COLLECTOR_NAMESPACE": "", "AGENTOBS_OPERATOR_NAMESPACE": namespace,
        "AGENTOBS_BIND_ADDRESS": "127.0.0.1", "AGENTOBS_NAMESPACES": f"{namespace}-served",
        "AGENTOBS_WEBHOOK_PORT": str(free_port()), "AGENTOBS_WEBHOOK_CONFIGURATION": f"agentobs-webhook-{namespace}",
        "AGENTOBS_METRICS_PORT": str(free_port()), "AGENTOBS_HEALTH_PORT": str(free_port()),
    }, tmp_path / "operator.log")
    op.start()
    try:
        def gone() -> bool:
            return all(kube.get(m["apiVersion"], m["kind"], m["metadata"].get("namespace"), m["metadata"]["name"])
                       is None for m in left)

        wait_for("the switched-off collector's objects to be deleted", gone, timeout=60)
        assert kube.get("v1", "ConfigMap", namespace, "not-the-collectors") is not None
        assert "log collector switched off: deleted" in op.log()  # said once, in the leader's log
    finally:
        op.stop()
        kube.delete("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None,
                    f"agentobs-webhook-{namespace}")
        for kind in ("clusterrole", "clusterrolebinding"):
            kubectl("delete", kind, f"agentobs-log-collector-{namespace}", "--ignore-not-found", check=False)
