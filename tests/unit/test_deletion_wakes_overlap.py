"""Deleting a resource wakes the resources whose selection may overlap its own: the pods it
instrumented that they also select are theirs now (counted stale, restarted with
rolloutOnChange). They used to learn of it only at their next routine resync, a minute or more."""
from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest

from agentobs import handlers
from agentobs.admission import server as admission
from agentobs.admission.coverage import may_overlap
from agentobs.admission.injection import InjectionConfig


def _body(namespace: str, name: str, instrumentation: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "agentobs.io/v1alpha1", "kind": "AgentObservability",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "generation": 1},
            "spec": {"instrumentation": instrumentation or {}}, "status": {}}


def _config(namespace: str, pods: dict[str, str], namespaces: dict[str, str] | None = None) -> InjectionConfig:
    return InjectionConfig(namespace=namespace, name="x", pod_selector=pods, namespace_selector=namespaces or {},
                           env={}, metrics_port=9464, ca_configmap="ca")


def test_may_overlap() -> None:
    agent = {"agentobs.io/agent": "true"}
    assert may_overlap(_config("a", agent), _config("a", {}))
    assert not may_overlap(_config("a", agent), _config("b", agent))
    assert not may_overlap(_config("a", {"app": "x"}), _config("a", {"app": "y"}))
    assert may_overlap(_config("a", agent), _config("b", agent, {"team": "t"}))
    assert may_overlap(_config("c", agent, {"team": "t"}), _config("d", {}, {"tier": "agents"}))
    assert not may_overlap(_config("c", agent, {"team": "t"}), _config("d", {}, {"team": "u"}))


def _woken(monkeypatch: pytest.MonkeyPatch, bodies: list[dict[str, Any]], event: str,
           changed: dict[str, Any]) -> set[tuple[str, str]]:
    """The resources queued when `changed` arrives in a watch `event`, once `bodies` were added
    and their first passes taken, as the workers would take them."""
    async def scenario() -> set[tuple[str, str]]:
        monkeypatch.setattr(handlers, "scheduler", handlers.Scheduler())
        monkeypatch.setattr(admission, "CONFIGS", type(admission.CONFIGS)())
        for body in bodies:
            await handlers.resource_event(event={"type": "ADDED", "object": body}, body=kopf.Body(body))
        while handlers.scheduler.queue:
            handlers.scheduler.queue.done(await handlers.scheduler.queue.get())
        await handlers.resource_event(event={"type": event, "object": changed}, body=kopf.Body(changed))
        woken = set()
        while handlers.scheduler.queue:
            woken.add(await handlers.scheduler.queue.get())
        return woken

    return asyncio.run(scenario())


def _edited(name: str, instrumentation: dict[str, Any]) -> dict[str, Any]:
    changed = _body("agents", name, instrumentation)
    changed["metadata"]["generation"] = 2
    return changed


def test_deleting_a_resource_wakes_those_that_select_its_pods(monkeypatch: pytest.MonkeyPatch) -> None:
    bodies = [_body("agents", "first"), _body("agents", "second"), _body("elsewhere", "own"),
              _body("platform", "all", {"namespaceSelector": {"matchLabels": {"agents": "true"}}}),
              _body("agents", "off", {"enabled": False})]
    woken = _woken(monkeypatch, bodies, "DELETED", _body("agents", "first"))
    assert woken == {("agents", "second"), ("platform", "all")}


@pytest.mark.parametrize("change", [{"enabled": False}, {"podSelector": {"matchLabels": {"tier": "gold"}}},
                                    {"namespaceSelector": {"matchLabels": {"team": "t"}}}])
def test_no_longer_selecting_wakes_those_that_select_its_pods(monkeypatch: pytest.MonkeyPatch,
                                                              change: dict[str, Any]) -> None:
    """Instrumentation turned off or the selection narrowed, the resource not deleted: the pods it
    instrumented are the others' as after a deletion, and they hear of it at once."""
    bodies = [_body("agents", "first"), _body("agents", "second"), _body("elsewhere", "own")]
    woken = _woken(monkeypatch, bodies, "MODIFIED", _edited("first", change))
    assert woken == {("agents", "first"), ("agents", "second")}


def test_a_change_that_keeps_the_selection_wakes_no_other(monkeypatch: pytest.MonkeyPatch) -> None:
    bodies = [_body("agents", "first"), _body("agents", "second")]
    woken = _woken(monkeypatch, bodies, "MODIFIED", _edited("first", {"samplingRatio": 0.5}))
    assert woken == {("agents", "first")}
