"""The cache's pure parts: what it keeps of an object, label matching, the in-place test, and the
verb and resource each request is counted under."""

from __future__ import annotations

import json
import sys
from typing import Any

from agentobs.kube import KubeError, _verb_and_resource
from agentobs.stack import cache as cache_module
from agentobs.stack.cache import Cache, Informer
from agentobs.stack.cache_entry import Entry, Selector, matches
from agentobs.stack.desired import stamp
from agentobs.stack.status import workload_state


def _sts(fields: dict[str, Any], annotations: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "s", "namespace": "n", "annotations": {**annotations, "note": "x" * 500},
                         "resourceVersion": "7", "generation": 3,
                         "labels": {"agentobs.io/owner": "r", "agentobs.io/owner-namespace": "n", "team": "a"},
                         "managedFields": [{"manager": "agentobs-operator", "operation": "Apply",
                                            "fieldsV1": fields}]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "x" * 1000}]}}},
            "status": {"readyReplicas": 2}}


def test_entry_keeps_what_a_pass_reads() -> None:
    entry = Entry(_sts({"f:spec": {}}, {}))
    kept = entry.manifest()
    assert kept["spec"] == {"replicas": 2} and kept["status"] == {"readyReplicas": 2}
    assert kept["metadata"]["generation"] == 3 and kept["metadata"]["resourceVersion"] == "7"
    assert kept["metadata"]["labels"] == {"agentobs.io/owner": "r", "agentobs.io/owner-namespace": "n"}
    assert "annotations" not in kept["metadata"] and entry.owned
    secret = Entry({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "annotations": {
        "cert-manager.io/issuer-name": "ca", "other": "y"}}, "data": {"k": "dg=="}, "type": "Opaque"}).manifest()
    assert secret["data"] == {"k": "dg=="}
    assert secret["metadata"]["annotations"] == {"cert-manager.io/issuer-name": "ca"}
    config = Entry({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "v" * 9999}})
    assert "data" not in config.manifest(), "ConfigMap contents are compared by hash, not kept"
    waiting = {"reason": "ImagePullBackOff", "message": "no such image"}
    pod = Entry({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "p", "labels": {"any": "label"},
        "annotations": {"agentobs.io/injected": "n/r", "kubectl.kubernetes.io/last-applied-configuration": "x" * 999},
        "ownerReferences": [{"kind": "ReplicaSet", "name": "d-1", "controller": True, "uid": "u"},
                            {"kind": "Other", "name": "o"}]},
        "spec": {"containers": []},
        "status": {"phase": "Pending", "podIP": "10.0.0.9",
                   "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": None},
                                  {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                   "message": "0/3 nodes", "lastTransitionTime": "t"}],
                   "containerStatuses": [{"name": "a", "state": {"waiting": waiting}, "image": "i"},
                                         {"name": "b", "state": {"running": {}}, "ready": True}]}}).manifest()
    assert pod["metadata"]["labels"] == {"any": "label"} and "spec" not in pod
    assert pod["metadata"]["annotations"] == {"agentobs.io/injected": "n/r"}, "only the operator's own"
    assert pod["metadata"]["ownerReferences"] == [{"kind": "ReplicaSet", "name": "d-1", "controller": True}]
    assert pod["status"] == {"phase": "Pending",
                             "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                             "message": "0/3 nodes"}],
                             "containerStatuses": [{"name": "a", "state": {"waiting": waiting}}]}
    assert sys.getsizeof(entry) < 200


def test_children_share_their_label_sets() -> None:
    first, second = Entry(_sts({}, {})), Entry(_sts({}, {}))
    assert first.labels is second.labels
    assert Entry(_sts({}, {})).labels == {"agentobs.io/owner": "r", "agentobs.io/owner-namespace": "n"}


def test_label_selectors() -> None:
    labels = {"a": "1", "b": "2"}
    assert matches(labels, "a=1,b==2") and matches(labels, "a") and matches(labels, "!c")
    assert not matches(labels, "a=2") and not matches(labels, "c") and not matches(labels, "a!=1")
    assert matches(labels, " a = 1 , b!=3 ,!c") and matches(labels, "c!=1") and not matches(labels, "!a")
    assert matches(labels, "")  # no terms: everything


def test_a_parsed_selector_answers_as_the_selector_does() -> None:
    wanted = Selector("app=x,tier!=db,ready,!legacy")
    assert wanted({"app": "x", "ready": ""}) and wanted({"app": "x", "ready": "1", "tier": "web"})
    assert not wanted({"app": "x", "ready": "", "tier": "db"}) and not wanted({"app": "y", "ready": ""})
    assert not wanted({"app": "x"}) and not wanted({"app": "x", "ready": "", "legacy": "1"})


def test_in_place_needs_the_hash_and_the_fields_of_the_last_apply() -> None:
    desired = stamp({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s", "namespace": "n"},
                     "spec": {"replicas": 2}})
    annotations = dict(desired["metadata"]["annotations"])
    applied = Entry(_sts({"f:spec": {"f:replicas": {}}}, annotations))
    applied.baseline = applied.owned  # as Cache.remember records an apply
    assert Cache.in_place(desired, applied)
    assert not Cache.in_place(desired, None), "a missing child is applied"
    assert not Cache.in_place(desired, Entry(_sts({"f:spec": {"f:replicas": {}}}, {}))), "no hash"
    edited = Entry(_sts({"f:spec": {}}, annotations))  # someone else took spec.replicas
    edited.baseline = applied.owned
    assert not Cache.in_place(desired, edited)
    assert not Cache.in_place(stamp({**desired, "spec": {"replicas": 3}}), applied), "the desired state changed"
    restarted = Entry(_sts({"f:spec": {"f:replicas": {}}}, annotations))
    assert Cache.in_place(desired, restarted) and restarted.baseline == restarted.owned, "first sight is the baseline"


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


def test_cached_lists_answer_only_what_the_cache_holds() -> None:
    cache = Cache(None, [], ["t-*"], lambda ns, name: None)  # type: ignore[arg-type]  (no API use here)
    informer = Informer(None, "v1", "ConfigMap", "t-1", "app.kubernetes.io/managed-by=agentobs-operator",  # type: ignore[arg-type]
                        lambda before, after: None)
    informer.synced.set()
    cache.informers[("v1", "ConfigMap", "t-1")] = informer
    for name, owner in (("a", "r"), ("b", "other")):
        labels = {"agentobs.io/owner": owner, "agentobs.io/owner-namespace": "t-1",
                  "app.kubernetes.io/managed-by": "agentobs-operator"}
        informer.put(Entry({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": name, "namespace": "t-1", "labels": labels}}))
    found = cache.list("v1", "ConfigMap", "t-1", "agentobs.io/owner=r,agentobs.io/owner-namespace=t-1")
    assert found is not None and [o["metadata"]["name"] for o in found] == ["a"]
    assert cache.list("v1", "ConfigMap", "t-1", "team=x") is None, "not selected by the informer: ask the API"
    assert cache.list("v1", "ConfigMap", None, "agentobs.io/owner=r") is None, "other namespaces are not cached"
    assert cache.list("v1", "Secret", "t-1", "agentobs.io/owner=r") is None, "no informer for Secrets here"


def test_a_write_never_takes_the_cache_back_in_time() -> None:
    informer = Informer(None, "apps/v1", "StatefulSet", "n", "", lambda before, after: None)  # type: ignore[arg-type]
    written = _sts({"f:spec": {"f:replicas": {}}}, {})  # resourceVersion 7, readyReplicas 2
    newer = {**written, "metadata": {**written["metadata"], "resourceVersion": "9"}, "status": {"readyReplicas": 1}}
    informer.put(Entry(newer))  # the controller's status update, seen by the watch first
    kept = informer.put_written(Entry(written))
    assert kept.version == "9" and kept.manifest()["status"] == {"readyReplicas": 1}
    assert kept.baseline == Entry(written).owned and kept.echo == 7, "the write is still recorded"
    later = {**written, "metadata": {**written["metadata"], "resourceVersion": "12"}}
    assert informer.put_written(Entry(later)).version == "12"


def _stack_pod(name: str, extra_labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "namespace": "t-1",
        "labels": {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/instance": "r",
                   "app.kubernetes.io/managed-by": "agentobs-operator", "agentobs.io/owner": "r", **extra_labels},
        "annotations": {"agentobs.io/config-hash": "abc", "agentobs.io/cert-hash": "def"},
        "ownerReferences": [{"kind": "StatefulSet", "name": "r-prometheus", "controller": True}]},
        "status": {"phase": "Running"}}


def test_entries_keep_nothing_of_the_parsed_manifest() -> None:
    """At 1,000 stacks the cache is most of the operator's memory: an entry must not hold on to the
    parsed object's dicts (a workload's whole status, a Secret's data, a pod's status)."""
    data = {"tls.crt": "LS0t" + "QUJD" * 400, "tls.key": "S0VZ" * 80, "ca.crt": "Q0E=" * 200}
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "namespace": "n"},
           "type": "kubernetes.io/tls", "data": dict(data)}
    entry = Entry(obj)
    obj["data"]["tls.key"] = "changed"
    kept = entry.manifest()
    assert kept["data"] == data and kept["type"] == "kubernetes.io/tls", "the data reads back exactly"
    assert kept["data"] is not entry.manifest()["data"], "every reader gets its own copy"
    packed = entry.extra.packed  # type: ignore[union-attr]
    assert len(packed) < 0.8 * sum(map(len, data.values())), "stored deflated"
    assert Entry({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "e"}}).manifest()["data"] == {}

    status = {"observedGeneration": 3, "readyReplicas": 1, "updatedReplicas": 2, "replicas": 2,
              "currentRevision": "a", "updateRevision": "b", "collisionCount": 0,
              "conditions": [{"type": "Available", "status": "True", "message": "x" * 300}]}
    sts = {**_sts({}, {}), "status": status}
    kept_sts = Entry(sts).manifest()
    assert kept_sts["status"] == {k: status[k] for k in ("observedGeneration", "readyReplicas", "updatedReplicas",
                                                          "currentRevision", "updateRevision")}
    assert workload_state(kept_sts) == workload_state(sts), "readiness is judged the same"
    for st in ({"readyReplicas": 2, "updatedReplicas": 2, "observedGeneration": 3},
               {"readyReplicas": 2, "updatedReplicas": 1, "observedGeneration": 3},
               {"readyReplicas": 2, "updatedReplicas": 2, "observedGeneration": 2}):
        whole = {**_sts({}, {}), "status": st}
        assert workload_state(Entry(whole).manifest()) == workload_state(whole)

    done = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
            "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True", "message": "m" * 99}]}}
    assert Entry(done).manifest()["status"] == {"succeeded": 1}
    failed = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "status": {
        "failed": 6, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                     "message": "too many", "lastTransitionTime": "t"},
                                    {"type": "FailureTarget", "status": "True"}]}}
    assert Entry(failed).manifest()["status"] == {"conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "too many"}]}


def test_stack_pods_share_what_selects_them() -> None:
    a = Entry(_stack_pod("r-prometheus-0", {"statefulset.kubernetes.io/pod-name": "r-prometheus-0",
                                            "controller-revision-hash": "r-prometheus-1"}))
    b = Entry(_stack_pod("r-prometheus-1", {"statefulset.kubernetes.io/pod-name": "r-prometheus-1",
                                            "controller-revision-hash": "r-prometheus-2"}))
    assert a.labels is b.labels and a.annotations is b.annotations, "one label and annotation set per component"
    assert "statefulset.kubernetes.io/pod-name" not in a.labels
    kept = a.manifest()
    assert kept["metadata"]["ownerReferences"] == [{"kind": "StatefulSet", "name": "r-prometheus", "controller": True}]
    assert kept["status"] == {"phase": "Running"}
    deleting = _stack_pod("r-prometheus-2", {})
    deleting["metadata"]["deletionTimestamp"] = "2026-12-03T10:00:00Z"
    assert Entry(deleting).manifest()["metadata"]["deletionTimestamp"] == "2026-12-03T10:00:00Z"
    agent = Entry({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "agent-0", "namespace": "t-1",
        "labels": {"app": "agent", "statefulset.kubernetes.io/pod-name": "agent-0"}}})
    assert agent.labels == {"app": "agent", "statefulset.kubernetes.io/pod-name": "agent-0"}, "agents keep all"

    cache = Cache(None, [], ["t-*"], lambda ns, name: None)  # type: ignore[arg-type]  (no API use here)
    informer = Informer(None, "v1", "Pod", "t-1", "", lambda before, after: None)  # type: ignore[arg-type]
    informer.synced.set()
    cache.informers[("v1", "Pod", "t-1")] = informer
    for entry in (a, b, agent):
        informer.put(entry)

    def names(selector: str) -> list[str]:
        found = cache.list("v1", "Pod", "t-1", selector)
        assert found is not None
        return sorted(p["metadata"]["name"] for p in found)

    assert names("app.kubernetes.io/name=prometheus,app.kubernetes.io/instance=r") == ["r-prometheus-0",
                                                                                       "r-prometheus-1"]
    assert names("statefulset.kubernetes.io/pod-name") == ["agent-0"], "a selector on other labels finds agents"
    assert names("!app.kubernetes.io/instance") == ["agent-0"]


def test_the_echo_of_a_write_keeps_one_copy_of_what_it_records() -> None:
    informer = Informer(None, "apps/v1", "StatefulSet", "n", "", lambda before, after: None)  # type: ignore[arg-type]
    written = _sts({"f:spec": {"f:replicas": {}}}, {})
    informer.put_written(Entry(written))
    echo = Entry(json.loads(json.dumps(written)))  # the watch's copy: equal strings, other objects
    informer.put(echo)
    assert echo.echo is echo.rv and echo.baseline is echo.owned, "no second copy of equal values"
    edited = Entry({**written, "metadata": {**written["metadata"], "resourceVersion": "8",
                                            "managedFields": [{"manager": "agentobs-operator", "operation": "Apply",
                                                               "fieldsV1": {"f:spec": {}}}]}})
    informer.put(edited)
    assert edited.echo == 7 and edited.baseline == echo.owned != edited.owned, "a hand edit is still told apart"


def test_label_sets_are_found_by_their_hash_alone(monkeypatch: Any) -> None:
    from agentobs.stack import cache_entry

    labels = Entry(_sts({}, {})).labels
    # The registry's keys are plain ints, not tuples of the pairs (which took more than the set).
    assert all(type(k) is int for k in cache_entry._LABEL_SETS)
    assert Entry(_sts({}, {})).labels is labels
    # Two different sets with one hash: each entry still gets its own labels, never the other's.
    monkeypatch.setattr(cache_entry, "_set_key", lambda items: 0)
    first = cache_entry._shared({"app.kubernetes.io/name": "a"})
    other = cache_entry._shared({"app.kubernetes.io/name": "b"})
    assert first == {"app.kubernetes.io/name": "a"} and other == {"app.kubernetes.io/name": "b"}
    assert cache_entry._shared({"app.kubernetes.io/name": "a"}) is first


def test_hashes_are_kept_as_raw_bytes_and_read_back_as_written() -> None:
    applied = stamp(_sts({}, {}))
    written = applied["metadata"]["annotations"]["agentobs.io/applied-hash"]
    entry = Entry({**applied, "metadata": {**applied["metadata"], "managedFields": [
        {"manager": "agentobs-operator", "operation": "Apply", "fieldsV1": {"f:spec": {}}}]}})
    assert isinstance(entry.hash, bytes) and len(entry.hash) == 32
    assert isinstance(entry.owned, bytes) and len(entry.owned) == 16
    assert entry.applied_hash == written
    assert entry.manifest()["metadata"]["annotations"]["agentobs.io/applied-hash"] == written
    # A hash edited by hand into something that is not 64 lowercase hex digits reads back unchanged.
    for odd in ("ABC", "A" * 64, "z" * 64):
        edited = Entry({**applied, "metadata": {**applied["metadata"], "annotations": {
            "agentobs.io/applied-hash": odd}}})
        assert edited.applied_hash == odd and not Cache.in_place(applied, edited)


def test_versions_are_kept_as_integers_and_read_back_as_written() -> None:
    big = Entry({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": "123456789"}})
    assert big.rv == 123456789 and big.version == "123456789"
    assert big.manifest()["metadata"]["resourceVersion"] == "123456789"
    for opaque in ("0012", "abc", "", "12a"):  # not etcd's decimal: kept as the server wrote it
        entry = Entry({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": opaque}})
        assert entry.rv == opaque and entry.version == opaque


def _cm(namespace: str, name: str, owner: str = "r") -> Entry:
    labels = {"agentobs.io/owner": owner, "agentobs.io/owner-namespace": namespace,
              "app.kubernetes.io/managed-by": "agentobs-operator"}
    return Entry({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace,
                                                                      "labels": labels}})


def test_an_informer_keeps_its_objects_by_namespace_then_name() -> None:
    """No (namespace, name) key per entry, and one namespace's objects without a scan of all."""
    every = Informer(None, "v1", "ConfigMap", None, "", lambda before, after: None)  # type: ignore[arg-type]
    every.put(_cm("n", "a"))
    every.put(_cm("m", "a"))
    every.put(_cm("n", "b"))
    assert {ns: sorted(names) for ns, names in every.store.items()} == {"n": ["a", "b"], "m": ["a"]}
    assert every.get("m", "a") is not every.get("n", "a"), "the same name in two namespaces"
    assert sorted(e.name for e in every.entries("n")) == ["a", "b"]
    assert sorted((e.namespace, e.name) for e in every.entries()) == [("m", "a"), ("n", "a"), ("n", "b")]
    assert every.entries("elsewhere") == []
    assert every.pop("m", "a") is not None and "m" not in every.store, "an emptied namespace goes"
    assert every.pop("m", "a") is None


def test_a_cluster_wide_cache_lists_one_namespace() -> None:
    cache = Cache(None, [], [], lambda ns, name: None)  # type: ignore[arg-type]  (no API use here)
    informer = Informer(None, "v1", "ConfigMap", None, "app.kubernetes.io/managed-by=agentobs-operator",  # type: ignore[arg-type]
                        lambda before, after: None)
    informer.synced.set()
    cache.informers[("v1", "ConfigMap", None)] = informer
    for namespace in ("t-1", "t-2"):
        informer.put(_cm(namespace, "a"))
    found = cache.list("v1", "ConfigMap", "t-2", "agentobs.io/owner=r")
    assert found is not None and [o["metadata"]["namespace"] for o in found] == ["t-2"]
    everywhere = cache.list("v1", "ConfigMap", None, "agentobs.io/owner=r")
    assert everywhere is not None and sorted(o["metadata"]["namespace"] for o in everywhere) == ["t-1", "t-2"]


KINDS_OF_CHILD = [("v1", "ConfigMap"), ("v1", "Secret"), ("rbac.authorization.k8s.io/v1", "ClusterRole")]


def _started(patterns: list[str], monkeypatch: Any, *ensured: str) -> set[tuple[str, str | None]]:
    monkeypatch.setattr(Informer, "start", lambda self: None)
    cache = Cache(None, KINDS_OF_CHILD, patterns, lambda ns, name: None)  # type: ignore[arg-type]
    cache.start()
    for namespace in ensured:
        cache.ensure_namespace(namespace)
    return {(kind, namespace) for (_, kind, namespace) in cache.informers}


def test_which_informers_run_for_the_namespaces_served(monkeypatch: Any) -> None:
    """A glob cannot be bound per namespace, so the chart grants its permissions cluster-wide, and
    children are watched once per kind: a watch per kind and namespace cost a thread and a
    connection each. Literal names keep their watches per namespace, where their RoleBindings are."""
    assert _started([], monkeypatch, "a") == {("ConfigMap", None), ("Secret", None), ("ClusterRole", None),
                                               ("Pod", None), ("Namespace", None)}
    assert _started(["team-*"], monkeypatch, "team-a", "team-b") == {
        ("ConfigMap", None), ("Secret", None), ("ClusterRole", None), ("Namespace", None),
        ("Pod", "team-a"), ("Pod", "team-b")}
    assert _started(["team-a", "team-b"], monkeypatch, "team-a") == {
        ("ClusterRole", None), ("Namespace", None), ("ConfigMap", "team-a"), ("Secret", "team-a"), ("Pod", "team-a")}


def test_a_cluster_wide_watch_wakes_nothing_for_namespaces_not_served() -> None:
    woken: list[tuple[str, str]] = []
    unowned: list[int] = []
    cache = Cache(None, KINDS_OF_CHILD, ["team-*"], lambda ns, name: woken.append((ns, name)))  # type: ignore[arg-type]
    cache.wake_unowned = lambda: unowned.append(1)
    cache._changed(None, _cm("other", "a", owner="x"))
    assert woken == []
    cache._changed(None, _cm("team-a", "a", owner="r"))
    assert woken == [("team-a", "r")]

    def collector(namespace: str) -> Entry:
        return Entry({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": "c", "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "agentobs-operator"}}})

    cache._changed(None, collector("agentobs-system"))
    assert unowned == [], "another operator's node collector"
    cache.ensure_namespace("agentobs-system", [])  # this operator's own namespace, served for its collector
    cache._changed(None, collector("agentobs-system"))
    assert unowned == [1]


def test_secret_data_is_kept_decoded_and_reads_back_as_the_api_server_sent_it() -> None:
    """A TLS Secret's values are base64 of PEM: deflated as they come they shrank to about 60%;
    decoded first, the same data takes about a third less again, and reads back byte for byte."""
    import base64
    import datetime as dt
    import zlib

    from agentobs import pki

    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    ca = pki.make_ca("unit", now, dt.timedelta(days=365))
    leaf = pki.issue(ca, "p.n.svc", ["p", "p.n.svc"], now, dt.timedelta(days=90))

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    tls = {"ca.crt": b64(ca.cert_pem), "tls.crt": b64(leaf.cert_pem), "tls.key": b64(leaf.key_pem)}
    odd = {"empty": "", "binary": b64(bytes(range(256))), "text": b64(b"user: admin\n")}
    for data in (tls, odd):
        entry = Entry({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "namespace": "n"},
                       "type": "Opaque", "data": dict(data)})
        assert entry.manifest()["data"] == data
        assert list(entry.manifest()["data"]) == list(data), "keys keep their order"
    packed = Entry({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}, "data": tls}).extra.packed  # type: ignore[union-attr]
    as_json = zlib.compress(json.dumps(tls, separators=(",", ":")).encode(), 9)
    assert len(packed) < 0.8 * len(as_json), (len(packed), len(as_json))

    # Not canonical base64 (no padding, a line break): never from the API server, still kept whole.
    for value in ("QUJD\nREVG", "QQ", "not base64!"):
        data = {"k": value, "ok": b64(b"x")}
        entry = Entry({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}, "data": data})
        assert entry.manifest()["data"] == data


def _retry_waits(monkeypatch: Any, errors: list[KubeError]) -> list[float]:
    """The waits of an informer whose lists fail with `errors`, one after the other."""
    waits: list[float] = []
    informer = Informer(None, "v1", "ConfigMap", "n", "", lambda before, after: None)  # type: ignore[arg-type]

    class Failing:
        def list_page(self, *_: Any, **__: Any) -> Any:
            if len(waits) == len(errors) - 1:
                informer.stopped = True
            raise errors[len(waits)]

    informer.kube = Failing()  # type: ignore[assignment]
    monkeypatch.setattr(cache_module.time, "sleep", waits.append)
    monkeypatch.setattr(cache_module.random, "uniform", lambda low, high: 1.0)
    informer._run()
    return waits


def test_an_api_server_back_from_an_outage_is_watched_again_within_30_s(monkeypatch: Any) -> None:
    """The waits between failed lists used to double up to 5 minutes (7.5 with jitter): after a
    long outage, the caches the passes read stayed stale that long after the API server was back."""
    unreachable = KubeError(0, "Unreachable", "ConnectionRefusedError")
    assert _retry_waits(monkeypatch, [unreachable] * 12) == [1, 2, 4, 8, 16, 30, 30, 30, 30, 30, 30, 30]
    # A kind the cluster lacks (or the operator may not list) is still tried again rarely.
    forbidden = KubeError(403, "Forbidden", "no")
    assert _retry_waits(monkeypatch, [forbidden, unreachable, forbidden]) == [300, 300, 300]
