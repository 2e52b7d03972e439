"""What a pass sends: normalised manifests, their hash, the in-place test and the status patch."""

from __future__ import annotations

import datetime as dt
from typing import Any

from agentobs.stack.desired import (
    HASH_ANNOTATION,
    applied_hash,
    merge_patch,
    normalise,
    owned_fields,
    stamp,
    whole_patch,
)
from agentobs.stack.status import Observation, WorkloadState, make_status

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _dump(obs: Observation, previous: list[dict[str, Any]], now: dt.datetime) -> dict[str, Any]:
    return make_status(obs, previous, now).model_dump(by_alias=True, exclude_none=True, mode="json")


def test_normalise_drops_what_the_server_would_not_store() -> None:
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": "p", "labels": {}, "annotations": None},
              "spec": {"podSelector": {"matchLabels": {}}, "policyTypes": ["Ingress"], "ingress": []}}
    assert normalise(policy) == {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                 "metadata": {"name": "p"},
                                 "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}


def test_normalise_keeps_empty_structs_that_mean_something() -> None:
    pod_spec = {"volumes": [{"name": "tmp", "emptyDir": {}}],
                "containers": [{"name": "c", "resources": {"requests": {}, "limits": {"memory": "1Gi"}},
                                "args": []}]}
    egress = {"egress": [{}], "ingress": [{"from": [{"namespaceSelector": {}}]}]}
    assert normalise(pod_spec) == {"volumes": [{"name": "tmp", "emptyDir": {}}],
                                   "containers": [{"name": "c", "resources": {"limits": {"memory": "1Gi"}}}]}
    assert normalise(egress) == egress, "an egress rule {} admits all; a namespaceSelector {} selects all"


def test_stamp_hash_follows_content_only() -> None:
    a = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "labels": {"a": "1"}},
         "data": {"k": "v"}}
    reordered = {"data": {"k": "v"}, "metadata": {"labels": {"a": "1"}, "name": "x"}, "kind": "ConfigMap",
                 "apiVersion": "v1", "binaryData": {}}
    changed = {**a, "data": {"k": "w"}}
    assert applied_hash(stamp(a)) == applied_hash(stamp(reordered))
    assert applied_hash(stamp(a)) != applied_hash(stamp(changed))
    assert applied_hash(stamp(stamp(a))) == applied_hash(stamp(a)), "restamping is stable"
    assert "annotations" not in a["metadata"], "the input is not modified"
    assert len(stamp(a)["metadata"]["annotations"][HASH_ANNOTATION]) == 64


def test_owned_fields_reads_the_apply_entry_of_the_object_only() -> None:
    def obj(fields: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"managedFields": [
            {"manager": "agentobs-operator", "operation": "Apply", "fieldsV1": fields},
            {"manager": "agentobs-operator", "operation": "Update", "subresource": "status", "fieldsV1": {"x": {}}},
            {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:status": {}}},
        ]}}

    before = owned_fields(obj({"f:spec": {"f:replicas": {}}}), "agentobs-operator")
    after_edit = owned_fields(obj({"f:spec": {}}), "agentobs-operator")
    assert before is not None and before != after_edit
    assert owned_fields(obj({"f:spec": {"f:replicas": {}}}), "agentobs-operator") == before
    assert owned_fields(obj({}), "someone-else") is None


def test_merge_patch_is_empty_when_equal_and_removes_what_went() -> None:
    old = {"components": {"prometheus": {"ready": 2}, "fluentd": {"ready": 1}}, "conditions": [{"type": "A"}]}
    assert merge_patch(old, old) == {}
    new = {"components": {"prometheus": {"ready": 2}}, "conditions": [{"type": "B"}]}
    assert merge_patch(old, new) == {"components": {"fluentd": None}, "conditions": [{"type": "B"}]}


def test_unchanged_observation_patches_nothing_later() -> None:
    obs = Observation(generation=2, tls_ready=True, workloads={"prometheus": WorkloadState(2, 2, True)})
    first = _dump(obs, [], NOW)
    second = _dump(obs, first["conditions"], NOW + dt.timedelta(hours=3))
    assert merge_patch(first, second) == {}, "only a status change moves lastTransitionTime"
    obs.workloads["prometheus"] = WorkloadState(1, 2, True)
    third = _dump(obs, first["conditions"], NOW + dt.timedelta(hours=3))
    patch = merge_patch(first, third)
    assert patch["components"] == {"prometheus": {"ready": 1}}
    ready = next(c for c in patch["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["lastTransitionTime"] == "2026-01-02T06:04:05Z"


def _apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies a merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _apply_merge_patch(out.get(key), value)
    return out


def test_a_status_written_from_a_stale_body_is_the_new_status_whole() -> None:
    """The watch's body can be older than the stored status (the echo of the last patch is on its
    way): a patch of only the differences from it would leave the stored status half one pass's,
    half another's, e.g. Ready from one and 4/5 replicas from the other."""
    stale = {"components": {"alertmanager": {"ready": 3, "desired": 5}},
             "conditions": [{"type": "Ready", "status": "False", "message": "alertmanager: 4/5 ready"}],
             "observedGeneration": 2}
    stored = {"components": {"alertmanager": {"ready": 4, "desired": 5}, "grafana": {"ready": 1, "desired": 1}},
              "conditions": [{"type": "Ready", "status": "True"}], "observedGeneration": 2}
    new = {"components": {"alertmanager": {"ready": 4, "desired": 5}},
           "conditions": [{"type": "Ready", "status": "False", "message": "alertmanager: 4/5 ready"}],
           "observedGeneration": 2}
    diff = merge_patch(stale, new)
    assert diff == {"components": {"alertmanager": {"ready": 4}}}
    assert _apply_merge_patch(stored, diff)["conditions"][0]["status"] == "True", "the mix a diff leaves"
    result = _apply_merge_patch(stored, whole_patch(new, diff))
    assert result["conditions"] == new["conditions"] and result["components"]["alertmanager"] == {"ready": 4,
                                                                                                 "desired": 5}
    assert whole_patch(new, merge_patch({"components": {"x": {"ready": 1}}}, new))["components"]["x"] is None, \
        "what went is still removed"
