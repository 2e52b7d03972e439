"""The operator's own alerts in the chart's PrometheusRule, checked by the real promtool: the rules
parse, each alert fires on its symptom and stays silent when healthy, and each has a runbook section.

promtool comes from `tools/ensure.sh prometheus` (the release the stacks run).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from chart_support import SERVICE_MONITOR_API, Render, kind_of, one
from cluster_support import ROOT

JOB = 'job="agentobs-metrics",namespace="agentobs"'  # the metrics Service of release `agentobs`
OTHER_JOB = 'job="other-metrics",namespace="agentobs"'
RUNBOOKS = ROOT / "docs" / "runbooks.md"


def _s(selector: str, values: str) -> dict[str, str]:
    return {"series": selector, "values": values}


# Alert -> (eval time, firing input, healthy input); labels and annotations are checked as rendered.
CASES: dict[str, tuple[str, list[dict[str, str]], list[dict[str, str]]]] = {
    "AgentObsOperatorDown": ("15m", [_s(f"up{{{JOB},pod=\"op-0\"}}", "0x20"), _s(f"up{{{JOB},pod=\"op-1\"}}", "0x20")],
                             [_s(f"up{{{JOB},pod=\"op-0\"}}", "0x20"), _s(f"up{{{JOB},pod=\"op-1\"}}", "1x20")]),
    "AgentObsWebhookNotServing": ("10m", [_s(f"agentobs_webhook_serving{{{JOB},pod=\"op-1\"}}", "0x20")],
                                  [_s(f"agentobs_webhook_serving{{{JOB},pod=\"op-1\"}}", "1x20")]),
    "AgentObsWebhookFailingOpen": ("10m", [_s(f"agentobs_webhook_failopen_total{{{JOB},error=\"x\"}}", "0+1x20")],
                                   [_s(f"agentobs_webhook_failopen_total{{{JOB},error=\"x\"}}", "3x20")]),
    "AgentObsOperatorApplyErrors": ("40m", [_s(f"agentobs_apply_errors_total{{{JOB},kind=\"Service\"}}", "0+1x40")],
                                    [_s(f"agentobs_apply_errors_total{{{JOB},kind=\"Service\"}}", "2x40")]),
    "AgentObsOperatorReconcileFailing": ("40m", [_s(f"agentobs_reconcile_failures_total{{{JOB}}}", "0+1x40")],
                                         [_s(f"agentobs_reconcile_failures_total{{{JOB}}}", "5x40")]),
    "AgentObsOperatorBacklog": ("20m", [_s(f"agentobs_queue_depth{{{JOB},priority=\"new\"}}", "4x20")],
                                [_s(f"agentobs_queue_depth{{{JOB},priority=\"new\"}}", "4 0 4 0 4 0 4 0 4 0 4 0 4 0 "
                                                                                      "4 0 4 0 4 0 4"),
                                 _s(f"agentobs_queue_depth{{{OTHER_JOB},priority=\"new\"}}", "9x20")]),
    "AgentObsStacksDegraded": ("40m", [_s(f"agentobs_resource_condition{{{JOB},resource=\"a\",condition=\"Degraded\"}}",
                                          "1x40")],
                               [_s(f"agentobs_resource_condition{{{JOB},resource=\"a\",condition=\"Degraded\"}}",
                                   "0x40"),
                                _s(f"agentobs_resource_condition{{{JOB},resource=\"a\",condition=\"Ready\"}}",
                                   "1x40")]),
}


@pytest.fixture(scope="module")
def promtool() -> str:
    built = subprocess.run([str(ROOT / "tools" / "ensure.sh"), "prometheus"], capture_output=True, text=True,
                           check=True)
    return built.stdout.strip() + "/promtool"


@pytest.fixture(scope="module")
def operator_rules(render: Render) -> dict[str, Any]:
    return dict(one(render({}, api_versions=(SERVICE_MONITOR_API,)), "PrometheusRule")["spec"])


def _alerts(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in spec["groups"] for r in g["rules"]}


def test_rendered_only_with_its_api_and_the_service_monitor(render: Render) -> None:
    assert not kind_of(render({}), "PrometheusRule")
    assert not kind_of(render({"metrics.prometheusRule.enabled": False}, api_versions=(SERVICE_MONITOR_API,)),
                       "PrometheusRule")
    assert not kind_of(render({"metrics.serviceMonitor.enabled": False}, api_versions=(SERVICE_MONITOR_API,)),
                       "PrometheusRule"), "without the scrapes it reads, every alert would be silent or absent"


def test_every_alert_has_a_case_and_a_runbook_section(operator_rules: dict[str, Any]) -> None:
    anchors = {re.sub(r"[^a-z0-9-]", "", h.lower()) for h in re.findall(r"^## (.+)$", RUNBOOKS.read_text(), re.M)}
    alerts = _alerts(operator_rules)
    assert set(alerts) == set(CASES)
    for name, rule in alerts.items():
        assert rule["annotations"]["runbook_url"] == f"docs/runbooks.md#{name.lower()}"
        assert name.lower() in anchors, f"docs/runbooks.md has no section for {name}"


def test_runbook_links_point_where_the_runbooks_are_published(render: Render) -> None:
    base = "https://git.example.com/platform/agentobs/blob/main/docs/runbooks.md"
    objects = render({"metrics.runbookURL": base}, api_versions=(SERVICE_MONITOR_API,))
    alerts = _alerts(one(objects, "PrometheusRule")["spec"])
    assert {r["annotations"]["runbook_url"] for r in alerts.values()} == {f"{base}#{n.lower()}" for n in alerts}
    env = {e["name"]: e.get("value") for c in one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
           for e in c.get("env", [])}
    assert env["AGENTOBS_RUNBOOK_URL"] == base, "each stack's alerts link there too"


def test_each_alert_fires_on_its_symptom_and_stays_silent_when_healthy(promtool: str, operator_rules: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    rule_file = tmp_path / "operator.rules.yml"
    rule_file.write_text(yaml.safe_dump(operator_rules))
    checked = subprocess.run([promtool, "check", "rules", str(rule_file)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tests = []
    for name, (at, firing, healthy) in CASES.items():
        # Any alert at all: labels beyond severity depend on the series, the annotations on values.
        fired = {"name": f"{name} fires", "interval": "1m", "input_series": firing,
                 "promql_expr_test": [{"expr": f'count(ALERTS{{alertname="{name}",alertstate="firing"}}) > 0',
                                       "eval_time": at, "exp_samples": [{"labels": "{}", "value": 1}]}]}
        tests.append(fired)
        tests.append({"name": f"{name} stays silent", "interval": "1m", "input_series": healthy,
                      "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": []}]})
    test_file = tmp_path / "operator.test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(rule_file)], "evaluation_interval": "1m", "tests": tests},
                                        sort_keys=False))
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
