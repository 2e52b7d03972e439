"""The three Grafana dashboards provisioned with the stack, built as data.

Pure. Every panel queries a series the SDK emits (`agentobs_sdk.series`) or one listed in
`render.rules.STACK_SERIES`; `tests/unit/test_series_contract.py` holds every query, template
variable included, to that. `DASHBOARDS` maps a file name to the dashboard model Grafana's file
provider loads.
"""

from __future__ import annotations

import json
from typing import Any

PROMETHEUS_UID = "agentobs-prometheus"
DATASOURCE = {"type": "prometheus", "uid": PROMETHEUS_UID}
FULL_WIDTH = 24

Panel = dict[str, Any]


def _target(expr: str, legend: str = "", *, table: bool = False, ref: str = "A") -> dict[str, Any]:
    target: dict[str, Any] = {"refId": ref, "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
    if table:
        target |= {"format": "table", "instant": True}
    return target


def stat(title: str, expr: str, unit: str = "short", description: str = "") -> Panel:
    return {"type": "stat", "title": title, "description": description, "datasource": DATASOURCE,
            "targets": [_target(expr)], "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"},
            "gridPos": {"w": 6, "h": 4}}


def series(title: str, queries: list[tuple[str, str]], unit: str = "short", description: str = "",
           width: int = 12) -> Panel:
    """A time series panel; `queries` are (expr, legend) pairs."""
    refs = "ABCDEFGH"
    return {"type": "timeseries", "title": title, "description": description, "datasource": DATASOURCE,
            "targets": [_target(expr, legend, ref=refs[i]) for i, (expr, legend) in enumerate(queries)],
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "gridPos": {"w": width, "h": 8}}


def table(title: str, expr: str, description: str = "") -> Panel:
    return {"type": "table", "title": title, "description": description, "datasource": DATASOURCE,
            "targets": [_target(expr, table=True)], "gridPos": {"w": FULL_WIDTH, "h": 7},
            "transformations": [{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}]}


def variable(name: str, label: str, metric: str, label_name: str) -> dict[str, Any]:
    """A multi-value template variable over the values of one label of one series."""
    query = f"label_values({metric}, {label_name})"
    return {"name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "query": {"query": query, "refId": name}, "definition": query, "refresh": 2,
            "includeAll": True, "multi": True, "allValue": ".*", "current": {}, "sort": 1}


def dashboard(uid: str, title: str, description: str, variables: list[dict[str, Any]],
              panels: list[Panel]) -> dict[str, Any]:
    """A dashboard with panels laid out left to right, top to bottom, in the order given."""
    x = y = row_height = 0
    placed = []
    for i, panel in enumerate(panels):
        w, h = panel["gridPos"]["w"], panel["gridPos"]["h"]
        if x + w > FULL_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        placed.append({**panel, "id": i + 1, "gridPos": {"x": x, "y": y, "w": w, "h": h}})
        x, row_height = x + w, max(row_height, h)
    return {
        "uid": uid, "title": title, "description": description, "tags": ["agentobs"],
        "editable": False, "schemaVersion": 39, "version": 1, "timezone": "browser",
        "time": {"from": "now-6h", "to": "now"}, "refresh": "1m",
        "templating": {"list": variables}, "annotations": {"list": []}, "panels": placed,
    }


def _q(metric: str, matchers: str) -> str:
    return f"{metric}{{{matchers}}}"


def agent_monitoring() -> dict[str, Any]:
    sel = 'agent=~"$agent"'
    # The GenAI agent and tool durations name the agent in gen_ai_agent_name; the SDK's own
    # agentobs_agent_* series in agent.
    gsel = 'gen_ai_agent_name=~"$agent"'
    runs = _q("gen_ai_invoke_agent_duration_seconds_count", gsel)
    runs_failed = _q("gen_ai_invoke_agent_duration_seconds_count", gsel + ',error_type!=""')
    tools = _q("gen_ai_execute_tool_duration_seconds_count", gsel)
    tool_failures = _q("gen_ai_execute_tool_duration_seconds_count", gsel + ',error_type!=""')
    run_buckets = _q("gen_ai_invoke_agent_duration_seconds_bucket", gsel)
    runs_by_agent = f'label_replace(rate({runs}[5m]), "agent", "$1", "gen_ai_agent_name", "(.*)")'
    return dashboard("agentobs-agent-monitoring", "Agent monitoring",
                     "What the agents are doing: runs, errors, tools, reasoning, and whether they are scraped.",
                     [variable("agent", "Agent", "gen_ai_invoke_agent_duration_seconds_count", "gen_ai_agent_name")], [
        stat("Agent pods scraped", 'sum(up{job="agents"})', description="Agent pods answering scrapes now."),
        stat("Runs per minute", f"sum(rate({runs}[5m])) * 60"),
        stat("Run error ratio", f"sum(rate({runs_failed}[5m])) / sum(rate({runs}[5m]))", "percentunit"),
        stat("Tool failure ratio", f"sum(rate({tool_failures}[5m])) / sum(rate({tools}[5m]))", "percentunit"),
        series("Agent runs by outcome", [(f"sum by (gen_ai_agent_name, error_type) (rate({runs}[5m]))",
                                          "{{gen_ai_agent_name}} {{error_type}}")], "ops",
               description="error_type is empty for runs that did not fail, cancelled ones included."),
        series("Agent run duration", [
            (f"histogram_quantile(0.5, sum by (gen_ai_agent_name, le) (rate({run_buckets}[5m])))",
             "{{gen_ai_agent_name}} p50"),
            (f"histogram_quantile(0.95, sum by (gen_ai_agent_name, le) (rate({run_buckets}[5m])))",
             "{{gen_ai_agent_name}} p95"),
        ], "s"),
        series("Errors by operation and type", [
            (f"sum by (agent, gen_ai_operation_name, error_type) (rate({_q('agentobs_agent_errors_total', sel)}"
             "[5m]))", "{{agent}} {{gen_ai_operation_name}} {{error_type}}")], "ops"),
        series("Tool calls by tool and outcome",
               [(f"sum by (gen_ai_tool_name, error_type) (rate({tools}[5m]))", "{{gen_ai_tool_name}} {{error_type}}")],
               "ops"),
        series("Tool failures by error type",
               [(f"sum by (gen_ai_tool_name, error_type) (rate({tool_failures}[5m]))",
                 "{{gen_ai_tool_name}} {{error_type}}")], "ops"),
        series("Reasoning steps per run", [
            (f"sum by (agent) (rate({_q('agentobs_agent_reasoning_steps_total', sel)}[5m]))"
             f" / on (agent) sum by (agent) ({runs_by_agent})", "{{agent}}")]),
        table("Instrumented agent processes", "agentobs_agent_sdk_info",
              "One row per process running the agentobs SDK."),
        series("Agent scrape health", [('up{job="agents"}', "{{pod}}")], width=FULL_WIDTH,
               description="1 when Prometheus scraped the pod, 0 when the scrape failed."),
    ])


def llm_performance() -> dict[str, Any]:
    sel = 'gen_ai_provider_name=~"$provider",gen_ai_request_model=~"$model"'
    calls = _q("gen_ai_client_inference_duration_seconds_count", sel)
    failed = _q("gen_ai_client_inference_duration_seconds_count", sel + ',error_type!=""')
    latency = _q("gen_ai_client_inference_duration_seconds_bucket", sel)
    first_chunk = _q("gen_ai_client_inference_time_to_first_chunk_seconds_bucket", sel)
    tokens_in = _q("gen_ai_client_inference_usage_input_tokens_total", sel)
    tokens_out = _q("gen_ai_client_inference_usage_output_tokens_total", sel)
    cached = _q("gen_ai_client_inference_usage_cache_read_input_tokens_total", sel)
    reasoning = _q("gen_ai_client_inference_usage_reasoning_output_tokens_total", sel)
    per_call_in = _q("gen_ai_client_inference_operation_input_tokens_bucket", sel)
    per_call_out = _q("gen_ai_client_inference_operation_output_tokens_bucket", sel)
    cost = _q("agentobs_agent_cost_usd_total", sel)

    def llm_quantile(q: str, name: str) -> tuple[str, str]:
        return (f"histogram_quantile({q}, sum by (gen_ai_request_model, le) (rate({latency}[5m])))",
                "{{gen_ai_request_model}} " + name)

    return dashboard("agentobs-llm-performance", "LLM and agent performance",
                     "Model calls (GenAI semantic conventions), tokens, spend, and agent and tool latency.", [
        variable("provider", "Provider", "gen_ai_client_inference_duration_seconds_count", "gen_ai_provider_name"),
        variable("model", "Model", "gen_ai_client_inference_duration_seconds_count", "gen_ai_request_model"),
    ], [
        stat("Model calls per minute", f"sum(rate({calls}[5m])) * 60"),
        stat("Model call error ratio", f"sum(rate({failed}[5m])) / sum(rate({calls}[5m]))", "percentunit"),
        stat("Tokens per minute",
             f"((sum(rate({tokens_in}[5m])) or vector(0)) + (sum(rate({tokens_out}[5m])) or vector(0))) * 60"),
        stat("Spend, last 24 hours", f"sum(increase({cost}[24h]))", "currencyUSD"),
        series("Model call latency", [llm_quantile("0.5", "p50"), llm_quantile("0.95", "p95"),
                                       llm_quantile("0.99", "p99")], "s"),
        series("Time to first chunk of streamed calls (p95)", [
            (f"histogram_quantile(0.95, sum by (gen_ai_request_model, le) (rate({first_chunk}[5m])))",
             "{{gen_ai_request_model}}")], "s"),
        series("Model calls by provider and model", [
            (f"sum by (gen_ai_provider_name, gen_ai_request_model) (rate({calls}[5m]))",
             "{{gen_ai_provider_name}} {{gen_ai_request_model}}")], "ops"),
        series("Model call errors by type", [
            (f"sum by (gen_ai_request_model, error_type) (rate({failed}[5m]))",
             "{{gen_ai_request_model}} {{error_type}}")], "ops"),
        series("Tokens per second by type", [
            (f"sum(rate({tokens_in}[5m]))", "input"), (f"sum(rate({tokens_out}[5m]))", "output"),
            (f"sum(rate({cached}[5m]))", "input from cache"), (f"sum(rate({reasoning}[5m]))", "reasoning")]),
        series("Tokens per second by model", [
            (f"sum by (gen_ai_request_model) (rate({tokens_in}[5m]))", "{{gen_ai_request_model}} input"),
            (f"sum by (gen_ai_request_model) (rate({tokens_out}[5m]))", "{{gen_ai_request_model}} output")]),
        series("Tokens per call (p95)", [
            (f"histogram_quantile(0.95, sum by (le) (rate({per_call_in}[5m])))", "input"),
            (f"histogram_quantile(0.95, sum by (le) (rate({per_call_out}[5m])))", "output")]),
        series("Spend per hour by agent", [(f"sum by (agent) (rate({cost}[1h])) * 3600", "{{agent}}")],
               "currencyUSD"),
        series("Spend per hour by model", [
            (f"sum by (gen_ai_request_model) (rate({cost}[1h])) * 3600", "{{gen_ai_request_model}}")],
               "currencyUSD"),
        series("Agent run duration (p95)", [
            ("histogram_quantile(0.95, sum by (gen_ai_agent_name, le) "
             "(rate(gen_ai_invoke_agent_duration_seconds_bucket[5m])))", "{{gen_ai_agent_name}}")], "s"),
        series("Tool call duration (p95)", [
            ("histogram_quantile(0.95, sum by (gen_ai_tool_name, le) "
             "(rate(gen_ai_execute_tool_duration_seconds_bucket[5m])))", "{{gen_ai_tool_name}}")], "s"),
    ])


def audit_compliance() -> dict[str, Any]:
    sel = 'agent=~"$agent"'
    decisions = _q("agentobs_agent_decisions_total", sel)
    confidence = _q("agentobs_agent_decision_confidence_bucket", sel)
    low = _q("agentobs_agent_decision_confidence_bucket", sel + ',le="0.5"')
    judged = _q("agentobs_agent_decision_confidence_count", sel)
    return dashboard("agentobs-audit-compliance", "Audit and compliance",
                     "The audit trail's progress, the decisions agents take and how sure they are, failed "
                     "actions, and the alerting pipeline's own health.",
                     [variable("agent", "Agent", "agentobs_agent_decisions_total", "agent")], [
        stat("Audit records written, 24 hours", "sum(delta(agentobs_agent_audit_last_seq[24h]))",
             description="Growth of the newest durable audit sequence number, summed over processes."),
        stat("Audit sequence resets, 24 hours", "sum(resets(agentobs_agent_audit_last_seq[24h]))",
             description="A trail whose sequence went backwards restarted empty or was truncated: verify it "
                         "with the SDK's audit verify command."),
        stat("Decisions, 24 hours", f"sum(increase({decisions}[24h]))"),
        stat("Alerts firing", 'count(ALERTS{alertstate="firing"}) or vector(0)'),
        series("Audit trail head by agent process",
               [("max by (agent_id) (agentobs_agent_audit_last_seq)", "{{agent_id}}")],
               description="The sequence number of each process's newest durable audit record."),
        series("Decisions by decision point",
               [(f"sum by (agent, decision) (rate({decisions}[5m]))", "{{agent}} {{decision}}")], "ops"),
        series("Decision confidence", [
            (f"histogram_quantile(0.1, sum by (decision, le) (rate({confidence}[1h])))", "{{decision}} p10"),
            (f"histogram_quantile(0.5, sum by (decision, le) (rate({confidence}[1h])))", "{{decision}} p50"),
        ], "percentunit"),
        series("Share of decisions at confidence 0.5 or less", [
            (f"sum by (agent, decision) (rate({low}[1h])) / sum by (agent, decision) (rate({judged}[1h]))",
             "{{agent}} {{decision}}")], "percentunit"),
        series("Failed tool calls by tool and error", [
            ("sum by (gen_ai_agent_name, gen_ai_tool_name, error_type) (increase("
             + _q("gen_ai_execute_tool_duration_seconds_count", 'gen_ai_agent_name=~"$agent",error_type!=""')
             + "[1h]))", "{{gen_ai_agent_name}} {{gen_ai_tool_name}} {{error_type}}")]),
        series("Alerting pipeline", [
            ("sum(increase(prometheus_notifications_dropped_total[1h]))", "notifications dropped"),
            ("sum(increase(prometheus_rule_evaluation_failures_total[1h]))", "rule evaluations failed"),
        ], description="Alerts that could not reach Alertmanager, and rules that could not be evaluated."),
        table("Firing alerts", 'ALERTS{alertstate="firing"}'),
        table("Agent versions in service", "count by (service, version) (agentobs_agent_sdk_info)"),
    ])


DASHBOARDS: dict[str, dict[str, Any]] = {
    "agent-monitoring.json": agent_monitoring(),
    "llm-performance.json": llm_performance(),
    "audit-compliance.json": audit_compliance(),
}


def dashboard_files() -> dict[str, str]:
    """File name -> dashboard JSON, for the dashboards ConfigMap."""
    return {name: json.dumps(model, indent=1, sort_keys=True) for name, model in DASHBOARDS.items()}


def queries(model: dict[str, Any]) -> list[str]:
    """Every PromQL expression a dashboard holds: panel targets and template variable queries."""
    out = [t["expr"] for panel in model["panels"] for t in panel.get("targets", [])]
    out += [v["query"]["query"] for v in model["templating"]["list"]]
    return out
