"""The cache's pure parts: what it keeps of an object, label matching, the in-place test, and the
verb and resource each request is counted under."""

from __future__ import annotations

from typing import Any

from agentobs.cache import OWNED, Cache, matches, trim
from agentobs.desired import stamp
from agentobs.kube import _verb_and_resource


def _sts(fields: dict[str, Any], annotations: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "s", "namespace": "n", "annotations": annotations, "resourceVersion": "7",
                         "labels": {"agentobs.io/owner": "r", "agentobs.io/owner-namespace": "n"},
                         "managedFields": [{"manager": "agentobs-operator", "operation": "Apply",
                                            "fieldsV1": fields}]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "x" * 1000}]}}},
            "status": {"readyReplicas": 2}}


def test_trim_keeps_what_a_pass_reads() -> None:
    kept = trim(_sts({"f:spec": {}}, {}))
    assert kept["spec"] == {"replicas": 2} and kept["status"] == {"readyReplicas": 2}
    assert "managedFields" not in kept["metadata"] and kept[OWNED]
    secret = trim({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}, "data": {"k": "dg=="},
                   "type": "Opaque"})
    assert secret["data"] == {"k": "dg=="}
    config = trim({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "v" * 10_000}})
    assert "data" not in config, "ConfigMap contents are compared by hash, not kept"


def test_label_selectors() -> None:
    labels = {"a": "1", "b": "2"}
    assert matches(labels, "a=1,b==2") and matches(labels, "a") and matches(labels, "!c")
    assert not matches(labels, "a=2") and not matches(labels, "c") and not matches(labels, "a!=1")


def test_in_place_needs_the_hash_and_the_fields_of_the_last_apply() -> None:
    cache = Cache(None, [], [], lambda ns, name: None)  # type: ignore[arg-type]  (no API use here)
    desired = stamp({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s", "namespace": "n"},
                     "spec": {"replicas": 2}})
    key = ("apps/v1", "StatefulSet", "n", "s")
    annotations = dict(desired["metadata"]["annotations"])
    live = trim(_sts({"f:spec": {"f:replicas": {}}}, annotations))
    assert cache.in_place(key, desired, live)
    assert not cache.in_place(key, desired, None), "a missing child is applied"
    assert not cache.in_place(key, desired, trim(_sts({"f:spec": {"f:replicas": {}}}, {}))), "no hash"
    edited = trim(_sts({"f:spec": {}}, annotations))  # someone else took spec.replicas
    assert not cache.in_place(key, desired, edited)
    other = stamp({**desired, "spec": {"replicas": 3}})
    assert not cache.in_place(key, other, live), "the desired state changed"


def test_request_verbs_and_resources() -> None:
    assert _verb_and_resource("GET", "/api/v1/namespaces/n/secrets/x", [], "") == ("get", "secrets")
    assert _verb_and_resource("GET", "/api/v1/namespaces/n/secrets", [], "") == ("list", "secrets")
    assert _verb_and_resource("GET", "/apis/apps/v1/statefulsets", [("watch", "true")], "") == \
        ("watch", "statefulsets")
    assert _verb_and_resource("GET", "/api/v1/namespaces/n", [], "") == ("get", "namespaces")
    assert _verb_and_resource("PATCH", "/apis/apps/v1/namespaces/n/deployments/d", [],
                              "application/apply-patch+yaml") == ("apply", "deployments")
    assert _verb_and_resource("PATCH", "/apis/agentobs.io/v1alpha1/namespaces/n/agentobservabilities/a/status",
                              [], "application/merge-patch+json") == ("patch", "agentobservabilities/status")
    assert _verb_and_resource("POST", "/api/v1/namespaces/n/events", [], "") == ("create", "events")
    assert _verb_and_resource("DELETE", "/apis/rbac.authorization.k8s.io/v1/clusterroles/c", [], "") == \
        ("delete", "clusterroles")
