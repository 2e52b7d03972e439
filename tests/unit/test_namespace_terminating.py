"""`kubectl delete namespace` with a stack in it: the namespace controller deletes the children
(each deletion wakes the resource) before the resource. Passes meanwhile tried to put each child
back, every apply refused, and reported that as ApplyFailed: Degraded, Warning events that cannot be
posted there, and agentobs_apply_errors_total counts (AgentObsOperatorApplyErrors) for a deletion
the user asked for. They now stop at the first refusal and report nothing."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from agentobs import metrics
from agentobs.kube import KubeError, _kube_error
from agentobs.stack.reconcile import namespace_terminating, reconcile

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
TERMINATING = ('secrets "t2-ca" is forbidden: unable to create new content in namespace team2 because it is '
               "being terminated")


class TerminatingKube:
    """Reads find nothing; every write is refused as in a namespace being deleted."""

    def __init__(self, status_gone: bool = False) -> None:
        self.calls: list[str] = []
        self.status_gone = status_gone

    def __getattr__(self, method: str) -> Any:
        def call(*args: Any, **_: Any) -> Any:
            self.calls.append(method)
            if method in ("apply", "create", "patch"):
                raise KubeError(403, "NamespaceTerminating", TERMINATING)
            if method == "patch_status" and self.status_gone:
                raise KubeError(404, "NotFound", 'agentobservabilities.agentobs.io "t2" not found')
            return [] if method == "list" else None
        return call


def _body() -> dict[str, Any]:
    ready = {"type": "Ready", "status": "True", "reason": "AllComponentsReady", "message": "",
             "lastTransitionTime": "2029-12-31T00:00:00Z"}
    return {"metadata": {"name": "t2", "namespace": "team2", "uid": "uid-t2", "generation": 3},
            "spec": {}, "status": {"observedGeneration": 3, "conditions": [ready]}}


def _apply_errors() -> float:
    return sum(s.value for family in metrics.APPLY_ERRORS.collect() for s in family.samples
               if s.name.endswith("_total"))


def test_a_pass_in_a_namespace_being_deleted_reports_nothing() -> None:
    kube = TerminatingKube()
    errors = _apply_errors()
    outcome = reconcile(kube, _body(), lambda: NOW)  # type: ignore[arg-type]
    assert outcome.transitions == []
    assert "patch_status" not in kube.calls
    assert kube.calls.count("apply") <= 1
    assert _apply_errors() == errors
    assert [c.reason for c in outcome.status.conditions] == ["AllComponentsReady"]  # as it was


def test_a_resource_gone_before_its_status_is_written_is_no_failure() -> None:
    outcome = reconcile(TerminatingKube(status_gone=True), {**_body(), "spec": {"paused": True}},
                        lambda: NOW)  # type: ignore[arg-type]
    assert outcome.transitions == []


def test_the_refusal_is_recognised_for_a_secret_whose_message_is_withheld() -> None:
    # The API server's answer (a Status whose cause names the namespace's state).
    body = json.dumps({"kind": "Status", "code": 403, "reason": "Forbidden", "message": TERMINATING,
                       "details": {"name": "t2-ca", "kind": "secrets", "causes": [
                           {"reason": "NamespaceTerminating", "message": "namespace team2 is being terminated",
                            "field": "metadata.namespace"}]}})
    exc = _kube_error(403, "Forbidden", body, "Secret")
    assert namespace_terminating(exc) and "terminated" not in exc.message
    assert not namespace_terminating(_kube_error(403, "Forbidden", json.dumps({"reason": "Forbidden"}), "Secret"))
