"""Conditions, counts and transitions computed from what a pass observed."""

from __future__ import annotations

import datetime as dt

from agentobs.stack.status import Observation, WorkloadState, make_status, workload_state

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=5)


def _conditions(obs: Observation, previous: list[dict[str, object]] | None = None,
                now: dt.datetime = NOW) -> dict[str, dict[str, object]]:
    status = make_status(obs, previous or [], now).model_dump(by_alias=True)
    return {c["type"]: c for c in status["conditions"]}


def test_all_ready_is_ready() -> None:
    obs = Observation(generation=3, tls_ready=True, workloads={"prometheus": WorkloadState(2, 2, True)})
    cond = _conditions(obs)
    assert cond["Ready"]["status"] == "True" and cond["Ready"]["reason"] == "AllComponentsReady"
    assert cond["Progressing"]["status"] == "False"
    assert cond["Degraded"]["status"] == "False"
    assert cond["PrometheusReady"]["status"] == "True" and cond["TLSReady"]["status"] == "True"
    assert all(c["observedGeneration"] == 3 for c in cond.values())


def test_pods_not_ready_is_progressing_and_names_the_component() -> None:
    obs = Observation(generation=1, tls_ready=True, workloads={"prometheus": WorkloadState(1, 2, True)})
    cond = _conditions(obs)
    assert cond["Ready"]["status"] == "False" and "PrometheusReady" in str(cond["Ready"]["message"])
    assert cond["Progressing"]["status"] == "True"
    assert cond["PrometheusReady"]["reason"] == "PodsNotReady"
    assert "1/2" in str(cond["PrometheusReady"]["message"])


def test_unsettled_rollout_is_not_ready_even_with_enough_pods() -> None:
    obs = Observation(generation=1, tls_ready=True, workloads={"prometheus": WorkloadState(2, 2, False)})
    assert _conditions(obs)["PrometheusReady"]["status"] == "False"


def test_apply_error_is_degraded_with_reason() -> None:
    obs = Observation(generation=2, tls_ready=True, apply_errors={"prometheus": "StatefulSet x: spec.replicas: bad"})
    cond = _conditions(obs)
    assert cond["Degraded"]["status"] == "True" and cond["Degraded"]["reason"] == "ApplyFailed"
    assert "spec.replicas" in str(cond["Degraded"]["message"])
    assert cond["Ready"]["status"] == "False" and cond["PrometheusReady"]["reason"] == "ApplyFailed"
    assert cond["Progressing"]["status"] == "False"


def test_transition_time_kept_while_status_unchanged() -> None:
    obs = Observation(generation=1, tls_ready=True, workloads={"prometheus": WorkloadState(2, 2, True)})
    first = make_status(obs, [], NOW).model_dump(by_alias=True)["conditions"]
    second = _conditions(obs, first, LATER)
    assert second["Ready"]["lastTransitionTime"] == "2026-01-02T03:04:05Z"
    obs.workloads["prometheus"] = WorkloadState(1, 2, True)
    third = _conditions(obs, first, LATER)
    assert third["Ready"]["lastTransitionTime"] == "2026-01-02T03:09:05Z"


def test_counts_and_components_ready() -> None:
    obs = Observation(generation=1, tls_ready=True, workloads={"prometheus": WorkloadState(1, 2, True)})
    status = make_status(obs, [], NOW)
    assert status.components["prometheus"].ready == 1 and status.components["prometheus"].desired == 2
    assert status.components_ready == "1/2"


def test_paused_keeps_component_conditions() -> None:
    before = make_status(Observation(generation=1, tls_ready=True,
                                     workloads={"prometheus": WorkloadState(2, 2, True)}), [], NOW)
    previous = before.model_dump(by_alias=True)["conditions"]
    cond = _conditions(Observation(generation=2, paused=True), previous, LATER)
    assert cond["Progressing"]["reason"] == "Paused"
    assert cond["Ready"]["status"] == "True"
    assert cond["PrometheusReady"]["status"] == "True"


def test_a_paused_pass_keeps_counts_and_endpoints() -> None:
    """`kubectl get aobs -o wide` of a paused stack showed blank COMPONENTS, OTLP and PROMETHEUS:
    the paused status kept the conditions but dropped what the printer columns read."""
    from typing import Any

    from agentobs.stack.reconcile import reconcile

    running = make_status(Observation(generation=1, tls_ready=True,
                                      workloads={"prometheus": WorkloadState(2, 2, True)}), [], NOW)
    running.endpoints.prometheus = "https://demo-prometheus.agents.svc:9090"
    body = {"metadata": {"name": "demo", "namespace": "agents", "uid": "u", "generation": 2},
            "spec": {"paused": True}, "status": running.model_dump(by_alias=True, exclude_none=True, mode="json")}

    class Kube:
        def __getattr__(self, method: str) -> Any:
            return lambda *args, **kwargs: None

    paused = reconcile(Kube(), body, lambda: LATER).status  # type: ignore[arg-type]
    assert paused.components_ready == "2/2" and paused.components["prometheus"].ready == 2
    assert paused.endpoints.prometheus == "https://demo-prometheus.agents.svc:9090"
    assert paused.observed_generation == 2


def test_workload_state_reads_statefulset_status() -> None:
    sts = {"kind": "StatefulSet", "metadata": {"generation": 4}, "spec": {"replicas": 3},
           "status": {"observedGeneration": 4, "readyReplicas": 3, "updatedReplicas": 3,
                      "currentRevision": "a", "updateRevision": "a"}}
    assert workload_state(sts).is_ready
    sts["status"]["updateRevision"] = "b"
    assert not workload_state(sts).is_ready
    sts["status"].update(updateRevision="a", observedGeneration=3)
    assert not workload_state(sts).is_ready


def test_components_ready_counts_components_not_coverage() -> None:
    from agentobs.api.status import InjectionStatus

    obs = Observation(generation=1, tls_ready=True, workloads={"prometheus": WorkloadState(2, 2, True)},
                      injection=InjectionStatus(selected=3, current=1, missing=2))
    status = make_status(obs, [], NOW)
    assert status.components_ready == "2/2"
    conditions = {c.type: c for c in status.conditions}
    assert conditions["InjectionCoverage"].status == "False" and conditions["Ready"].status == "True"


def test_a_job_that_cannot_run_makes_its_condition_false() -> None:
    # The retention set-up Job has no replicas to count: only the cause its pod shows. Seen on the
    # real node with an external store: its image could not be pulled, and the stack said Ready.
    obs = Observation(generation=1, tls_ready=True, workloads={"jaeger-collector": WorkloadState(2, 2, True)},
                      causes={"es-retention": ("ImagePullBackOff", "Job x-es-setup-1: pod p: image y not pulled")})
    cond = _conditions(obs)
    assert cond["ElasticsearchReady"]["status"] == "False"
    assert cond["ElasticsearchReady"]["reason"] == "ImagePullBackOff"
    assert "x-es-setup-1" in str(cond["ElasticsearchReady"]["message"])
    assert cond["Ready"]["status"] == "False" and cond["TracingReady"]["status"] == "True"


def test_a_job_with_nothing_wrong_adds_no_condition() -> None:
    obs = Observation(generation=1, tls_ready=True, workloads={"jaeger-collector": WorkloadState(2, 2, True)})
    cond = _conditions(obs)
    assert "ElasticsearchReady" not in cond and cond["Ready"]["status"] == "True"


def test_a_new_cause_is_an_event_once_and_pull_errors_are_one_cause() -> None:
    from agentobs.stack.reconcile import _transitions

    def status(reason: str | None) -> list[dict[str, object]]:
        causes = {"alertmanager": (reason, f"pod am-0, container alertmanager: {reason}: x")} if reason else {}
        obs = Observation(generation=1, tls_ready=True, workloads={"alertmanager": WorkloadState(0, 1, True)},
                          causes=causes)
        dumped: list[dict[str, object]] = make_status(obs, [], NOW).model_dump(by_alias=True)["conditions"]
        return dumped

    def events(before: list[dict[str, object]], reason: str | None) -> list[tuple[str, str, str]]:
        obs = Observation(generation=1, tls_ready=True, workloads={"alertmanager": WorkloadState(0, 1, True)},
                          causes={"alertmanager": (reason, f"pod am-0: {reason}")} if reason else {})
        return [t for t in _transitions(before, make_status(obs, before, NOW)) if t[0] == "AlertmanagerReady"]

    assert events(status(None), "ErrImagePull") == [("AlertmanagerReady", "ErrImagePull",
                                                     "alertmanager: 0/1 ready (pod am-0: ErrImagePull)")]
    # The kubelet's back-off flips the reason; the cause is the same and is not said again.
    assert events(status("ErrImagePull"), "ImagePullBackOff") == []
    assert events(status("ImagePullBackOff"), "ErrImagePull") == []
    assert events(status("ImagePullBackOff"), "ImagePullBackOff") == []
    assert [t[1] for t in events(status("ImagePullBackOff"), "CrashLoopBackOff")] == ["CrashLoopBackOff"]
    assert events(status("CrashLoopBackOff"), None) == []  # only waiting again: no cause, no event


def test_turning_degraded_is_one_event_not_two() -> None:
    """Ready and Degraded change in the same pass with the same reason: the user saw the message
    twice, once as a Warning and once as a Normal event."""
    from agentobs.stack.reconcile import _transitions

    ready = make_status(Observation(generation=1, tls_ready=True), [], NOW)
    before = [c.model_dump(by_alias=True) for c in ready.conditions]
    bad = make_status(Observation(generation=2, tls_ready=True, rule_problems={"g": "expr does not parse"}),
                      before, NOW)
    said = [t for t in _transitions(before, bad) if t[1] == "InvalidExtraRules"]
    assert [t[0] for t in said] == ["Degraded"], said
