"""Two resources whose selections overlap: the webhook gives each pod to one of them. The other
used to count nothing and say AllPodsInstrumented, so its owner saw no data and no reason; it now
names the resource that instruments its selected pods, once as an event and in its condition."""
from __future__ import annotations

import datetime as dt
from typing import Any

from agentobs.api.crd import make_crd
from agentobs.stack.reconcile import _transitions, reconcile

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def _pod(name: str, injected_by: str | None) -> dict[str, Any]:
    annotations = {"agentobs.io/injected": injected_by} if injected_by else {}
    return {"metadata": {"name": name, "namespace": "agents", "labels": {"agentobs.io/agent": "true"},
                         "annotations": annotations}, "status": {"phase": "Running"}}


class PodsKube:
    """Lists the given agent pods; finds the resources named in `existing` (namespace/name) and
    their agents' workloads; other reads find nothing; an apply returns what was sent."""

    def __init__(self, pods: list[dict[str, Any]], existing: tuple[str, ...],
                 specs: dict[str, dict[str, Any]] | None = None) -> None:
        self.pods = pods
        self.existing = existing
        self.specs = specs or {}  # namespace/name -> the spec of an existing resource, when it matters
        self.patched: list[str] = []

    def __getattr__(self, method: str) -> Any:
        def call(*args: Any, **_: Any) -> Any:
            if method == "apply":
                return args[0]
            if method == "list":
                return self.pods if args[1] == "Pod" else []
            if method == "get" and args[1] == "AgentObservability":
                key = f"{args[2]}/{args[3]}"
                if key in self.specs:
                    return {"metadata": {"name": args[3], "namespace": args[2], "uid": "uid"}, "spec": self.specs[key]}
                return {} if key in self.existing else None
            if method == "get" and args[1] == "Deployment":
                return {"spec": {"template": {}}}
            if method == "patch":
                self.patched.append(f"{args[1]} {args[2]}/{args[3]}")
            return None
        return call


def _pass(pods: list[dict[str, Any]], existing: tuple[str, ...] = ("agents/minimal", "agents/other"),
          spec: dict[str, Any] | None = None,
          specs: dict[str, dict[str, Any]] | None = None) -> tuple[Any, Any, PodsKube]:
    body = {"metadata": {"name": "small", "namespace": "agents", "uid": "uid-small", "generation": 1},
            "spec": spec or {}, "status": {"conditions": []}}
    kube = PodsKube(pods, existing, specs)
    outcome = reconcile(kube, body, lambda: NOW)  # type: ignore[arg-type]
    coverage = next(c for c in outcome.status.conditions if c.type == "InjectionCoverage")
    return coverage, outcome, kube


def test_pods_another_resource_instruments_are_named() -> None:
    coverage, outcome, _ = _pass([_pod("a", "agents/minimal"), _pod("b", "agents/minimal")])
    assert (coverage.status, coverage.reason) == ("True", "PodsInstrumentedElsewhere")
    assert "2 by agents/minimal" in coverage.message and "agentobs.io/inject" in coverage.message
    assert outcome.status.injection.selected == 0  # not this resource's to count
    assert [t[1] for t in outcome.transitions if t[0] == "InjectionCoverage"] == ["PodsInstrumentedElsewhere"]
    # Said once: the next pass finds the same condition and posts nothing more.
    before = [c.model_dump(by_alias=True) for c in outcome.status.conditions]
    assert not [t for t in _transitions(before, outcome.status) if t[0] == "InjectionCoverage"]


def test_lacking_pods_of_its_own_still_decide_the_condition() -> None:
    # Its own pod carries no digest (injected with earlier settings): that is what is wrong here.
    coverage, _, _ = _pass([_pod("a", "agents/small"), _pod("b", "agents/other")])
    assert (coverage.status, coverage.reason) == ("False", "PodsNotInstrumented")
    assert coverage.message.startswith("1 of 1 selected pods lack") and "1 by agents/other" in coverage.message
    alone, _, _ = _pass([_pod("a", "agents/small")])
    assert "another resource" not in alone.message


def test_pods_of_a_deleted_resource_are_this_ones_to_bring_up_to_date() -> None:
    """The resource that instrumented them was deleted: they send to nothing (and no Prometheus
    scrapes them) until restarted, so they count as lacking, and rolloutOnChange restarts them."""
    pod = _pod("agent-7d4b9c-x2x", "agents/gone")
    pod["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "agent-7d4b9c", "controller": True}]
    pod["metadata"]["labels"]["pod-template-hash"] = "7d4b9c"
    coverage, outcome, kube = _pass([pod], spec={"instrumentation": {"rolloutOnChange": True}})
    assert (coverage.status, coverage.reason) == ("False", "PodsNotInstrumented")
    assert "agents/gone" not in coverage.message
    assert (outcome.status.injection.selected, outcome.status.injection.stale) == (1, 1)
    assert kube.patched == ["Deployment agents/agent"]


def test_pods_a_resource_no_longer_selects_are_this_ones_to_bring_up_to_date() -> None:
    """The resource that instrumented them still exists but no longer selects them (its
    instrumentation turned off, or its podSelector or namespaceSelector narrowed): they are taken
    over as after a deletion, not reported as instrumented elsewhere for ever."""
    def pod() -> dict[str, Any]:
        made = _pod("agent-7d4b9c-x2x", "agents/minimal")
        made["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "name": "agent-7d4b9c", "controller": True}]
        made["metadata"]["labels"]["pod-template-hash"] = "7d4b9c"
        return made

    rollout = {"instrumentation": {"rolloutOnChange": True}}
    for other in ({"instrumentation": {"enabled": False}},
                  {"instrumentation": {"podSelector": {"matchLabels": {"agentobs.io/agent": "true", "tier": "x"}}}},
                  {"instrumentation": {"namespaceSelector": {"matchLabels": {"team": "elsewhere"}}}}):
        coverage, outcome, kube = _pass([pod()], spec=rollout, specs={"agents/minimal": other})
        assert (coverage.status, coverage.reason) == ("False", "PodsNotInstrumented"), other
        assert "agents/minimal" not in coverage.message
        assert (outcome.status.injection.selected, outcome.status.injection.stale) == (1, 1)
        assert kube.patched == ["Deployment agents/agent"]
    # Still selecting them (its selection only changed elsewhere, or the pod names it): still its own.
    for other, annotation in (({"instrumentation": {"podSelector": {"matchLabels": {"agentobs.io/agent": "true"}}}},
                               None),
                              ({"instrumentation": {"podSelector": {"matchLabels": {"tier": "x"}}}}, "agents/minimal")):
        shared = pod()
        if annotation:
            shared["metadata"]["annotations"]["agentobs.io/inject"] = annotation
        coverage, outcome, kube = _pass([shared], spec=rollout, specs={"agents/minimal": other})
        assert coverage.reason == "PodsInstrumentedElsewhere", other
        assert outcome.status.injection.selected == 0 and kube.patched == []


def test_explain_says_which_resource_a_shared_pod_goes_to() -> None:
    versions = make_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    pod_selector = versions["spec"]["properties"]["instrumentation"]["properties"]["podSelector"]["description"]
    assert "own namespace first" in pod_selector and "agentobs.io/inject" in pod_selector
    assert "InjectionCoverage" in versions["status"]["properties"]["injection"]["properties"]["selected"]["description"]
