"""Every series an alert rule or a dashboard queries is one that something really emits.

The SDK's series are its contract (`agentobs_sdk.series`), in the semantic-convention mode the
webhook injects into agent pods; everything else must be in `rules.STACK_SERIES`, which says who
emits it, and be listed in `docs/series.md` for users.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from agentobs.admission import injection
from agentobs.api.spec import AgentObservabilitySpec
from agentobs.render import dashboards, rules
from agentobs.render.common import Owner
from agentobs_sdk import semconv, series

DOC = Path(__file__).resolve().parents[2] / "docs" / "series.md"
# Grafana's label_values(<series selector>, <label>) is not PromQL; its selector is.
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def _owner() -> Owner:
    return Owner(name="demo", namespace="agents", uid="u", spec=AgentObservabilitySpec())


def rule_expressions() -> list[str]:
    return [r["expr"] for g in rules.built_in_rules(_owner())["groups"] for r in g["rules"]]


def dashboard_expressions() -> list[str]:
    out = []
    for model in dashboards.DASHBOARDS.values():
        for expr in dashboards.queries(model):
            match = LABEL_VALUES.match(expr)
            out.append(match.group("selector") if match else expr)
    return out


def injected_mode() -> semconv.Mode:
    """The semantic-convention mode of the agent pods the webhook instruments."""
    config = injection.make_config(_owner())
    assert config is not None
    return semconv.parse_mode(config.env.get(semconv.ENV_OPT_IN))


def unknown(exprs: list[str]) -> set[str]:
    return series.unknown_series(exprs, prefixes=None, known=rules.STACK_SERIES, mode=injected_mode())


def test_the_webhook_injects_the_projects_chosen_names() -> None:
    assert injected_mode() is semconv.PROJECT_DEFAULT_MODE is semconv.Mode.LATEST


def test_rules_and_dashboards_would_break_on_the_old_names() -> None:
    # The check is mode-aware: the same queries against a v1.41.0 emitter find missing series.
    exprs = rule_expressions() + dashboard_expressions()
    old = series.unknown_series(exprs, prefixes=None, known=rules.STACK_SERIES, mode=semconv.Mode.OLD)
    assert "gen_ai_client_inference_duration_seconds_bucket" in old
    assert "gen_ai_invoke_agent_duration_seconds_count" in old
    dup = series.unknown_series(exprs, prefixes=None, known=rules.STACK_SERIES, mode=semconv.Mode.DUP)
    assert dup == set()


def test_rules_query_only_emitted_series() -> None:
    exprs = rule_expressions()
    assert exprs
    assert unknown(exprs) == set()


def test_dashboards_query_only_emitted_series() -> None:
    exprs = dashboard_expressions()
    assert len(exprs) > 20
    assert unknown(exprs) == set()


@pytest.mark.parametrize("expr, missing", [
    ("rate(agentobs_agent_runs_total[5m])", {"agentobs_agent_runs_total"}),
    ("gen_ai_client_inference_duration_seconds > 0", {"gen_ai_client_inference_duration_seconds"}),  # bare
    ("gen_ai_client_token_usage_sum", {"gen_ai_client_token_usage_sum"}),  # a v1.41.0 name the pods no longer emit
    ('sum by (job) (up{job="x"}) / prometheus_tsdb_head_series', {"prometheus_tsdb_head_series"}),
])
def test_the_check_catches_a_series_nothing_emits(expr: str, missing: set[str]) -> None:
    assert unknown([expr]) == missing


def test_every_stack_series_is_used_and_documented() -> None:
    used: set[str] = set()
    for expr in rule_expressions() + dashboard_expressions():
        used |= series.promql_metric_names(expr)
    assert set(rules.STACK_SERIES) <= used, "drop stack series nothing queries any more"
    doc = DOC.read_text()
    undocumented = {name for name in used if f"`{name}`" not in doc}
    assert not undocumented, f"list these in {DOC.name}: {sorted(undocumented)}"


def test_every_sdk_series_the_doc_lists_is_emitted() -> None:
    doc = DOC.read_text().split("## Emitted by the stack")[0]
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", doc, flags=re.M))
    assert len(listed) > 15
    assert listed <= series.emitted_series(injected_mode()), listed - series.emitted_series(injected_mode())


def _panels() -> list[tuple[str, dict[str, Any]]]:
    return [(name, panel) for name, model in dashboards.DASHBOARDS.items() for panel in model["panels"]]


def test_every_panel_has_a_query_on_the_provisioned_datasource() -> None:
    for name, panel in _panels():
        assert panel["targets"], (name, panel["title"])
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == dashboards.PROMETHEUS_UID, (name, panel["title"])
            assert target["expr"].strip(), (name, panel["title"])
