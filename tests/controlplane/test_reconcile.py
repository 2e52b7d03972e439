"""The operator against the real API server: converge, follow edits, repair drift, clean up."""

from __future__ import annotations

import base64
import urllib.request
from collections.abc import Callable
from typing import Any

from agentobs.kube import Kube

from conftest import API, KIND, Operator, condition, get_resource, make_resource, wait_for, wait_ready

STS = ("apps/v1", "StatefulSet")


def _children(kube: Kube, namespace: str, name: str) -> dict[tuple[str, str], dict[str, Any]]:
    selector = f"agentobs.io/owner={name}"
    found = {}
    for api, kind in [("v1", "Secret"), ("v1", "ConfigMap"), ("v1", "Service"), ("v1", "ServiceAccount"),
                      STS, ("policy/v1", "PodDisruptionBudget"), ("rbac.authorization.k8s.io/v1", "Role"),
                      ("rbac.authorization.k8s.io/v1", "RoleBinding")]:
        for obj in kube.list(api, kind, namespace, selector):
            found[(kind, obj["metadata"]["name"])] = obj
    return found


def test_valid_resource_converges_to_ready(kube: Kube, operator: Operator, namespace: str) -> None:
    kube.apply(make_resource("stack", namespace, {}))
    res = wait_ready(kube, namespace, "stack", generation=1)
    status = res["status"]
    assert status["observedGeneration"] == 1
    assert status["components"]["prometheus"] == {"ready": 2, "desired": 2}
    assert condition(res, "PrometheusReady")["status"] == "True"
    assert condition(res, "TLSReady")["status"] == "True"
    assert condition(res, "Degraded")["status"] == "False"
    assert status["endpoints"]["prometheus"].startswith(f"https://stack-prometheus.{namespace}.svc")

    children = _children(kube, namespace, "stack")
    assert {("StatefulSet", "stack-prometheus"), ("Service", "stack-prometheus"),
            ("Service", "stack-prometheus-headless"), ("ConfigMap", "stack-prometheus"),
            ("Secret", "stack-ca"), ("PodDisruptionBudget", "stack-prometheus")} <= children.keys()
    for key, obj in children.items():
        if (obj["metadata"].get("annotations") or {}).get("agentobs.io/retained-on-delete") == "true":
            assert "ownerReferences" not in obj["metadata"], "generated credentials outlive the resource"
            continue
        assert obj["metadata"]["ownerReferences"][0]["uid"] == res["metadata"]["uid"], key
    ca = base64.b64decode(children[("Secret", "stack-ca")]["data"]["ca.crt"])
    assert ca.startswith(b"-----BEGIN CERTIFICATE-----")
    pods = kube.list("v1", "Pod", namespace, "app.kubernetes.io/name=prometheus")
    assert len(pods) == 2 and all(p["status"]["phase"] == "Running" for p in pods)


def test_spec_edit_converges(kube: Kube, operator: Operator, namespace: str) -> None:
    kube.apply(make_resource("edit", namespace, {}))
    wait_ready(kube, namespace, "edit", generation=1)
    kube.apply(make_resource("edit", namespace, {"prometheus": {"replicas": 3}}))
    res = wait_ready(kube, namespace, "edit", generation=2)
    assert res["status"]["components"]["prometheus"] == {"ready": 3, "desired": 3}
    sts = kube.get(*STS, namespace, "edit-prometheus")
    assert sts is not None and sts["spec"]["replicas"] == 3


def test_child_deleted_by_hand_is_recreated(kube: Kube, operator: Operator, namespace: str) -> None:
    kube.apply(make_resource("heal", namespace, {}))
    wait_ready(kube, namespace, "heal")
    before = {k: v["metadata"]["uid"] for k, v in _children(kube, namespace, "heal").items()}
    kube.delete(*STS, namespace, "heal-prometheus")
    kube.delete("v1", "Secret", namespace, "heal-ca")
    kube.delete("v1", "ConfigMap", namespace, "heal-prometheus")

    def recreated() -> bool:
        now = {k: v["metadata"]["uid"] for k, v in _children(kube, namespace, "heal").items()}
        return all(key in now and now[key] != before[key] for key in [
            ("StatefulSet", "heal-prometheus"), ("Secret", "heal-ca"), ("ConfigMap", "heal-prometheus")])

    wait_for("deleted children to be recreated", recreated)
    wait_ready(kube, namespace, "heal")


def test_child_edited_by_hand_is_put_back(kube: Kube, operator: Operator, namespace: str) -> None:
    kube.apply(make_resource("drift", namespace, {}))
    wait_ready(kube, namespace, "drift")
    cm = kube.get("v1", "ConfigMap", namespace, "drift-prometheus")
    assert cm is not None
    original = cm["data"]["prometheus.yml"]
    # Edits made by someone else, with their own field manager, as `kubectl edit` would.
    kube._call("PATCH", f"/apis/apps/v1/namespaces/{namespace}/statefulsets/drift-prometheus", "StatefulSet",
               {"spec": {"replicas": 5}}, query=[("fieldManager", "someone")],
               content_type="application/merge-patch+json")
    kube._call("PATCH", f"/api/v1/namespaces/{namespace}/configmaps/drift-prometheus", "ConfigMap",
               {"data": {"prometheus.yml": "global: {}\n"}}, query=[("fieldManager", "someone")],
               content_type="application/merge-patch+json")

    def restored() -> bool:
        sts = kube.get(*STS, namespace, "drift-prometheus")
        cm = kube.get("v1", "ConfigMap", namespace, "drift-prometheus")
        return bool(sts and cm and sts["spec"]["replicas"] == 2 and cm["data"]["prometheus.yml"] == original)

    wait_for("hand edits to be reverted", restored)


def test_deleting_the_resource_removes_children_but_keeps_data(kube: Kube, operator: Operator,
                                                               namespace: str) -> None:
    kube.apply(make_resource("gone", namespace, {}))
    wait_ready(kube, namespace, "gone")
    prometheus = "app.kubernetes.io/name=prometheus"
    wait_for("PVCs bound", lambda: len([p for p in kube.list("v1", "PersistentVolumeClaim", namespace, prometheus)
                                        if p["status"].get("phase") == "Bound"]) == 2)
    kube.delete(API, KIND, namespace, "gone")

    def owned_children() -> dict[tuple[str, str], Any]:
        return {k: v for k, v in _children(kube, namespace, "gone").items() if v["metadata"].get("ownerReferences")}

    wait_for("children garbage-collected", lambda: not owned_children())
    assert get_resource(kube, namespace, "gone") is None
    claims = kube.list("v1", "PersistentVolumeClaim", namespace, prometheus)
    assert len(claims) == 2, "data volumes are kept when the resource is deleted (keepOnDelete)"
    kept = _children(kube, namespace, "gone")
    assert ("Secret", "gone-prometheus-web-auth") in kept
    for key, obj in kept.items():
        assert key[0] == "Secret" and obj["metadata"]["annotations"]["agentobs.io/retained-on-delete"] == "true", \
            "only generated credentials outlive the resource"


def test_unsatisfiable_spec_is_degraded_not_a_crash(kube: Kube, operator: Operator, namespace: str,
                                                    kubectl: Callable[..., Any]) -> None:
    # A spec the CRD accepts that the namespace refuses: a ResourceQuota that allows no
    # StatefulSet, as a platform team may set on a namespace meant for agents only.
    kubectl("create", "quota", "no-statefulsets", "--hard=count/statefulsets.apps=0", "-n", namespace)
    kube.apply(make_resource("bad", namespace, {}))

    def degraded() -> dict[str, Any]:
        return condition(get_resource(kube, namespace, "bad"), "Degraded")

    cond = wait_for("Degraded condition", lambda: degraded().get("status") == "True" and degraded())
    assert cond["reason"] == "ApplyFailed"
    assert "no-statefulsets" in cond["message"] and "statefulsets" in cond["message"], cond["message"]
    assert operator.process is not None and operator.process.poll() is None, "the operator must keep running"
    # Lifting the refusal recovers, with no change to the resource.
    kubectl("delete", "quota", "no-statefulsets", "-n", namespace)
    res = wait_ready(kube, namespace, "bad", generation=1)
    assert condition(res, "Degraded")["status"] == "False"


def test_a_volume_size_change_says_how_to_resize_and_the_way_out_converges(kube: Kube, operator: Operator,
                                                                          namespace: str) -> None:
    """The API server refuses a new size in a StatefulSet's claim template; the status names the way
    out, and taking it (the StatefulSet deleted with its pods orphaned) converges to the new size."""
    only_prometheus = {"tracing": {"enabled": False}, "logging": {"enabled": False}, "grafana": {"enabled": False}}
    kube.apply(make_resource("resize", namespace, only_prometheus))
    wait_ready(kube, namespace, "resize", generation=1)
    kube.apply(make_resource("resize", namespace, {**only_prometheus, "prometheus": {"storage": {"size": "20Gi"}}}))

    def degraded() -> dict[str, Any]:
        return condition(get_resource(kube, namespace, "resize"), "Degraded")

    cond = wait_for("Degraded condition", lambda: degraded().get("status") == "True" and degraded())
    assert cond["reason"] == "ApplyFailed"
    assert "--cascade=orphan" in cond["message"] and "storage-resize" in cond["message"], cond["message"]
    sts = kube.get(*STS, namespace, "resize-prometheus")
    assert sts is not None
    kube.delete(*STS, namespace, "resize-prometheus", propagation="Orphan")
    res = wait_ready(kube, namespace, "resize", generation=2)
    assert condition(res, "Degraded")["status"] == "False"
    again = kube.get(*STS, namespace, "resize-prometheus")
    assert again is not None and again["metadata"]["uid"] != sts["metadata"]["uid"]
    assert again["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "20Gi"


def test_health_and_metrics_endpoints(kube: Kube, operator: Operator, namespace: str) -> None:
    kube.apply(make_resource("observed", namespace, {}))
    wait_ready(kube, namespace, "observed")
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.health_port}/healthz", timeout=5) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    ok = [line for line in text.splitlines() if line.startswith('agentobs_reconcile_total{result="ok"}')]
    assert ok and float(ok[0].split()[-1]) >= 1
    assert "agentobs_reconcile_duration_seconds_bucket" in text
    # Each stack's Prometheus alerts on its own Degraded through these; a deleted stack's go with it.
    ours = f'namespace="{namespace}",resource="observed"'
    # The exposition lists labels sorted by name.
    assert f'agentobs_resource_condition{{condition="Ready",{ours}}} 1.0' in text
    assert f'agentobs_resource_condition{{condition="Degraded",{ours}}} 0.0' in text
    kube.delete(API, KIND, namespace, "observed")

    def series_gone() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5) as resp:
            return ours not in resp.read().decode()

    wait_for("the deleted resource's series to go", series_gone)


def test_a_rotated_audit_key_is_kept(kube: Kube, operator: Operator, namespace: str,
                                     kubectl: Callable[..., Any]) -> None:
    """docs/operations.md, "Rotating the audit key": the user puts a new `key` and the old one as
    `previous-key` in the generated Secret; the operator's passes after that keep both."""
    kube.apply(make_resource("rotate", namespace, {}))
    wait_ready(kube, namespace, "rotate", generation=1)
    secret = kube.get("v1", "Secret", namespace, "rotate-audit-key")
    assert secret is not None
    old = secret["data"]["key"]
    new = base64.b64encode(b"a-new-key-of-32-characters-long!").decode()
    patch = f'{{"data":{{"key":"{new}","previous-key":"{old}"}}}}'
    kubectl("-n", namespace, "patch", "secret", "rotate-audit-key", "--type=merge", "-p", patch)
    # A spec edit: a whole pass runs after the patch (observedGeneration 2), besides the one the
    # Secret's own change wakes.
    kube.apply(make_resource("rotate", namespace, {"prometheus": {"retention": "10d"}}))
    wait_ready(kube, namespace, "rotate", generation=2)
    kept = kube.get("v1", "Secret", namespace, "rotate-audit-key")
    assert kept is not None and kept["data"] == {"key": new, "previous-key": old}
