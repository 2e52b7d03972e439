"""A stack applied in a namespace the webhook never serves (the operator's own, kube-system) is
told so: it gets Ready like any other, and would otherwise never say why no agent is instrumented."""
from __future__ import annotations

import datetime as dt
from typing import Any

from agentobs.stack.reconcile import WEBHOOK_EXCLUDED_EXTRA, _transitions, reconcile
from agentobs.stack.status import Observation, make_status

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


class EmptyKube:
    """Reads find nothing; an apply returns what was sent."""

    def __getattr__(self, method: str) -> Any:
        def call(*args: Any, **_: Any) -> Any:
            if method == "apply":
                return args[0]  # as the API server stores it
            return [] if method.startswith("list") else None
        return call


def _coverage(namespace: str, spec: dict[str, Any]) -> tuple[Any, list[tuple[str, str, str]]]:
    body = {"metadata": {"name": "stack", "namespace": namespace, "uid": f"uid-{namespace}", "generation": 1},
            "spec": spec}
    outcome = reconcile(EmptyKube(), body, lambda: NOW,  # type: ignore[arg-type]
                        {WEBHOOK_EXCLUDED_EXTRA: "agentobs,kube-system"})
    return next(c for c in outcome.status.conditions if c.type == "InjectionCoverage"), outcome.transitions


def test_a_stack_in_the_operators_namespace_says_it_instruments_nothing() -> None:
    coverage, transitions = _coverage("agentobs", {})
    assert (coverage.status, coverage.reason) == ("False", "NamespaceExcluded")
    assert "namespace agentobs" in coverage.message and "namespaceSelector" in coverage.message
    assert [t[1] for t in transitions if t[0] == "InjectionCoverage"] == ["NamespaceExcluded"]


def test_elsewhere_or_selecting_other_namespaces_it_is_not_flagged() -> None:
    assert _coverage("agents", {})[0].reason == "AllPodsInstrumented"
    selector = {"instrumentation": {"namespaceSelector": {"matchLabels": {"team": "a"}}}}
    assert _coverage("agentobs", selector)[0].reason == "AllPodsInstrumented"


def test_the_warning_is_said_once() -> None:
    status = make_status(Observation(generation=1, tls_ready=True, excluded_namespace="agentobs"), [],
                         NOW)
    before = [c.model_dump(by_alias=True) for c in status.conditions]
    assert not [t for t in _transitions(before, status) if t[1] == "NamespaceExcluded"]
