"""A failed retention set-up Job is run again, some minutes after it failed; a refused volume
change is reported with what to do (tests/controlplane/test_reconcile.py provokes it for real).

The local control plane cannot produce a failed Job (kwok's stages make every Job's pod succeed),
so this drives the reconcile step with a recording stand-in for the API client: what is checked
is the decision (when to delete, what the status says), not the API call's effect, which the
control-plane tests cover for every child ("a deleted child is repaired").
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from agentobs.api.spec import AgentObservabilitySpec
from agentobs.kube import KubeError
from agentobs.render import Owner
from agentobs.stack import reconcile
from agentobs.stack.reconcile import JOB_RERUN_AFTER

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
OWNER = Owner(name="demo", namespace="agents", uid="00000000-0000-0000-0000-000000000042",
              spec=AgentObservabilitySpec())


class RecordingKube:
    """Records deletes; lists no pods. `fail_delete` makes the delete fail as the API would."""

    def __init__(self, fail_delete: bool = False) -> None:
        self.deleted: list[tuple[str, str, str | None, str]] = []
        self.fail_delete = fail_delete

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        if self.fail_delete:
            raise KubeError(503, "ServiceUnavailable", "try later")
        self.deleted.append((api_version, kind, namespace, name))

    def list(self, api_version: str, kind: str, namespace: str | None, selector: str = "") -> list[Any]:
        return []


def failed_job(failed_at: dt.datetime | None) -> dict[str, Any]:
    condition: dict[str, Any] = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                 "message": "Job has reached the specified backoff limit"}
    if failed_at is not None:
        condition["lastTransitionTime"] = failed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"metadata": {"name": "demo-es-setup-abc"}, "status": {"failed": 13, "conditions": [condition]}}


def causes(kube: RecordingKube, job: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return reconcile._job_causes(kube, OWNER, {"es-retention": job}, NOW)  # type: ignore[arg-type]


def test_a_job_that_failed_recently_is_reported_with_when_it_runs_again() -> None:
    kube = RecordingKube()
    found = causes(kube, failed_job(NOW - dt.timedelta(minutes=3)))
    assert kube.deleted == []
    reason, message = found["es-retention"]
    assert reason == "JobFailed"
    assert "backoff limit" in message
    assert (NOW - dt.timedelta(minutes=3) + JOB_RERUN_AFTER).strftime("%H:%M:%S") in message


def test_a_job_that_failed_long_enough_ago_is_deleted_so_the_next_pass_runs_it_again() -> None:
    kube = RecordingKube()
    found = causes(kube, failed_job(NOW - JOB_RERUN_AFTER))
    assert kube.deleted == [("batch/v1", "Job", "agents", "demo-es-setup-abc")]
    assert found["es-retention"][0] == "JobFailed"
    assert "running it again" in found["es-retention"][1]


def test_a_failure_with_no_time_is_run_again_rather_than_never() -> None:
    kube = RecordingKube()
    causes(kube, failed_job(None))
    assert len(kube.deleted) == 1


def test_a_delete_the_api_refuses_leaves_the_failure_reported_and_raises_nothing() -> None:
    found = causes(RecordingKube(fail_delete=True), failed_job(NOW - dt.timedelta(hours=1)))
    assert found["es-retention"][0] == "JobFailed"
    assert "running it again" not in found["es-retention"][1]


def test_a_job_that_succeeded_or_runs_is_left_alone() -> None:
    kube = RecordingKube()
    assert causes(kube, {"metadata": {"name": "demo-es-setup-abc"}, "status": {"succeeded": 1}}) == {}
    assert causes(kube, {"metadata": {"name": "demo-es-setup-abc"}, "status": {"active": 1}}) == {}
    assert kube.deleted == []


def test_a_refused_volume_change_says_how_to_resize() -> None:
    """The API server refuses a StatefulSet whose volume size changed, and its text names no way out."""
    sts = {"kind": "StatefulSet", "metadata": {"name": "demo-prometheus"}}
    refused = KubeError(422, "Invalid", 'StatefulSet.apps "demo-prometheus" is invalid: spec: Forbidden: updates to '
                                        "statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                                        "'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
                                        "'minReadySeconds' are forbidden")
    message = reconcile.apply_error_message(sts, refused)
    assert message.startswith("StatefulSet demo-prometheus: StatefulSet.apps")
    assert "--cascade=orphan" in message and "storage-resize" in message
    other = reconcile.apply_error_message(sts, KubeError(409, "Conflict", "field manager conflict"))
    assert other == "StatefulSet demo-prometheus: field manager conflict"
