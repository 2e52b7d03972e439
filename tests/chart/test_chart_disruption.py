"""The operator's PodDisruptionBudget protects at least one replica, or the install fails saying so."""

from __future__ import annotations

import pytest

from chart_support import CHART, Render, Run, one, set_args


@pytest.mark.parametrize(("replicas", "max_unavailable"), [(2, 2), (3, 3), (3, 5)])
def test_a_budget_that_protects_no_replica_fails_the_render_naming_the_values(
        helm: Run, replicas: int, max_unavailable: int) -> None:
    values = {"operator.replicas": replicas, "operator.podDisruptionBudget.maxUnavailable": max_unavailable}
    result = helm("template", "agentobs", str(CHART), *set_args(values), check=False)
    assert result.returncode != 0, "a drain could take every operator pod"
    assert "operator.podDisruptionBudget.maxUnavailable" in result.stderr, result.stderr
    assert "operator.replicas" in result.stderr, result.stderr


def test_a_budget_one_below_the_replicas_is_rendered(render: Render) -> None:
    docs = render({"operator.replicas": 3, "operator.podDisruptionBudget.maxUnavailable": 2})
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 2


@pytest.mark.parametrize("values", [
    {"operator.replicas": 1, "operator.podDisruptionBudget.maxUnavailable": 1},
    {"operator.replicas": 2, "operator.podDisruptionBudget.maxUnavailable": 2,
     "operator.podDisruptionBudget.enabled": False},
])
def test_no_budget_rendered_means_nothing_to_refuse(render: Render, values: dict[str, object]) -> None:
    assert not [d for d in render(values) if d["kind"] == "PodDisruptionBudget"]
