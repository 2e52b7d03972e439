"""Prometheus alert rules: the agents' SLOs and the stack's own health, as rule-file data.

Pure. `rule_files(owner)` returns file name -> rule file (the Prometheus rule-file format as a
dict) for the rules ConfigMap that `render.prometheus` mounts. The built-in groups follow
`spec.prometheus.alertRules`; `spec.prometheus.extraRules` go, as given, into a file of their own.

Metric names are a contract, not a choice made here: the agent series are the SDK's
(`agentobs_sdk.series`, in the semantic-convention mode the webhook injects), the others are
listed in `STACK_SERIES` with who emits them, and
`tests/unit/test_series_contract.py` fails when an expression queries anything else. Thresholds are
module constants; a team that needs others turns `alertRules` off and brings its own in
`extraRules`. Every alert links to its section in `docs/runbooks.md`.
"""

from __future__ import annotations

from typing import Any

from agentobs.render.common import Owner

BUILT_IN_FILE = "agentobs.rules.yml"
EXTRA_FILE = "extra.rules.yml"
RUNBOOK_BASE = "docs/runbooks.md"
# Owner.extra key: where the operator's settings say docs/runbooks.md is published
# (AGENTOBS_RUNBOOK_URL). Without it the links stay repository-relative, which a notification
# cannot open.
RUNBOOK_URL = "runbook_url"

# Series the rules and dashboards query that the SDK does not emit, and who emits each.
STACK_SERIES: dict[str, str] = {
    "up": "Prometheus, one per scrape target (jobs prometheus, alertmanager, agents, agentobs-operator)",
    "ALERTS": "Prometheus, one per pending or firing alert of its rules",
    "alertmanager_cluster_members": "Alertmanager, peers it sees in its gossip cluster",
    "prometheus_notifications_dropped_total": "Prometheus, alerts it could not send to Alertmanager",
    "prometheus_rule_evaluation_failures_total": "Prometheus, rule evaluations that failed",
    "agentobs_certificate_expiry_timestamp_seconds":
        "the operator (agentobs.metrics), notAfter of each serving certificate it manages",
    "agentobs_resource_condition": "the operator (agentobs.metrics), 1 while a condition of the resource is True",
    "fluentd_output_status_buffer_available_space_ratio":
        "the Fluentd aggregator (fluent-plugin-prometheus output monitor), free buffer space in percent",
    "fluentd_output_status_retry_count": "the Fluentd aggregator (output monitor), flush retries of an output",
    "fluentd_dead_letter_records_total":
        "the Fluentd aggregator (its @ERROR label), records Elasticsearch refused",
    "fluentbit_output_chunk_available_capacity_percent":
        "the node log collector (Fluent Bit), free buffer capacity of one route's output in percent",
    "fluentbit_output_retries_total": "the node log collector (Fluent Bit), retries of one route's output",
    "fluentbit_output_dropped_records_total":
        "the node log collector (Fluent Bit), records of one route dropped (its buffer limit reached)",
    "fluentbit_output_retries_failed_total":
        "the node log collector (Fluent Bit), chunks of one route given up after their retries",
}

# Jobs of the Prometheus scrape config (render.prometheus) the stack rules select.
JOB_PROMETHEUS = "prometheus"
JOB_ALERTMANAGER = "alertmanager"
JOB_AGENTS = "agents"
JOB_LOG_AGGREGATOR = "logging-aggregator"
JOB_LOG_COLLECTOR = "log-collector"

# Log pipeline thresholds.
LOG_BUFFER_FREE_PERCENT = 20

# Agent SLO thresholds.
AGENT_RUN_P95_SECONDS = 120
AGENT_RUN_ERROR_RATIO = 0.05
TOOL_CALL_FAILURE_RATIO = 0.10
LLM_P95_SECONDS = 30
LLM_ERROR_RATIO = 0.05
TOKENS_PER_HOUR = 1_000_000
COST_USD_PER_HOUR = 10


def runbook_url(alert: str, base: str = RUNBOOK_BASE) -> str:
    """The alert's section of docs/runbooks.md (a Markdown heading `## <alert>` has this anchor)."""
    return f"{base}#{alert.lower()}"


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description, "runbook_url": runbook_url(name)},
    }


def _ratio(numerator: str, denominator: str, by: str, window: str) -> str:
    return f"sum by ({by}) (rate({numerator}[{window}])) / sum by ({by}) (rate({denominator}[{window}]))"


def agent_rules() -> dict[str, Any]:
    """SLOs of the agents, on the series the SDK emits with the latest GenAI names (the webhook
    injects OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental)."""
    p95_run = ("histogram_quantile(0.95, sum by (namespace, gen_ai_agent_name, le) "
               "(rate(gen_ai_invoke_agent_duration_seconds_bucket[10m])))")
    p95_llm = ("histogram_quantile(0.95, sum by (namespace, gen_ai_provider_name, gen_ai_request_model, le) "
               "(rate(gen_ai_client_inference_duration_seconds_bucket[10m])))")
    llm_by = "namespace, gen_ai_provider_name, gen_ai_request_model"
    tokens_in = "sum by (namespace, agent) (increase(gen_ai_client_inference_usage_input_tokens_total[1h]))"
    tokens_out = "sum by (namespace, agent) (increase(gen_ai_client_inference_usage_output_tokens_total[1h]))"
    # An agent with input tokens only (embeddings) has no output series; `+` alone would drop it.
    tokens = f"{tokens_in} + ({tokens_out} or {tokens_in} * 0)"
    return {
        "name": "agentobs-agents",
        "rules": [
            _alert("AgentObsAgentLoopLatencyHigh", f"{p95_run} > {AGENT_RUN_P95_SECONDS}", "15m", "warning",
                   "Agent runs are slow",
                   "The 95th percentile of agent {{ $labels.gen_ai_agent_name }} runs in {{ $labels.namespace }} "
                   "is {{ $value | humanizeDuration }} over the last 10 minutes "
                   f"(threshold {AGENT_RUN_P95_SECONDS}s)."),
            _alert("AgentObsAgentErrorRateHigh",
                   _ratio('gen_ai_invoke_agent_duration_seconds_count{error_type!=""}',
                          "gen_ai_invoke_agent_duration_seconds_count", "namespace, gen_ai_agent_name", "10m")
                   + f" > {AGENT_RUN_ERROR_RATIO}",
                   "10m", "critical", "Agent runs are failing",
                   "{{ $value | humanizePercentage }} of agent {{ $labels.gen_ai_agent_name }} runs in "
                   "{{ $labels.namespace }} ended in an error over the last 10 minutes "
                   f"(threshold {AGENT_RUN_ERROR_RATIO:.0%})."),
            _alert("AgentObsToolCallFailureRatioHigh",
                   _ratio('gen_ai_execute_tool_duration_seconds_count{error_type!=""}',
                          "gen_ai_execute_tool_duration_seconds_count",
                          "namespace, gen_ai_agent_name, gen_ai_tool_name", "10m")
                   + f" > {TOOL_CALL_FAILURE_RATIO}",
                   "10m", "warning", "A tool keeps failing",
                   "{{ $value | humanizePercentage }} of calls of tool {{ $labels.gen_ai_tool_name }} by agent "
                   "{{ $labels.gen_ai_agent_name }} in {{ $labels.namespace }} failed over the last 10 minutes "
                   f"(threshold {TOOL_CALL_FAILURE_RATIO:.0%})."),
            _alert("AgentObsTokenBurnHigh", f"({tokens}) > {TOKENS_PER_HOUR}",
                   "15m", "warning", "An agent is burning tokens fast",
                   "Agent {{ $labels.agent }} in {{ $labels.namespace }} used {{ $value | humanize }} "
                   f"tokens in the last hour (threshold {TOKENS_PER_HOUR:,})."),
            _alert("AgentObsCostBurnHigh",
                   "sum by (namespace, agent) (increase(agentobs_agent_cost_usd_total[1h]))"
                   f" > {COST_USD_PER_HOUR}",
                   "15m", "warning", "An agent is spending fast",
                   "Agent {{ $labels.agent }} in {{ $labels.namespace }} spent {{ $value | humanize }} USD "
                   f"on model calls in the last hour (threshold {COST_USD_PER_HOUR} USD)."),
            _alert("AgentObsLLMLatencyHigh", f"{p95_llm} > {LLM_P95_SECONDS}", "15m", "warning",
                   "Model calls are slow",
                   "The 95th percentile of {{ $labels.gen_ai_provider_name }} "
                   "{{ $labels.gen_ai_request_model }} calls from {{ $labels.namespace }} is "
                   "{{ $value | humanizeDuration }} over the last 10 minutes "
                   f"(threshold {LLM_P95_SECONDS}s)."),
            _alert("AgentObsLLMErrorRateHigh",
                   _ratio('gen_ai_client_inference_duration_seconds_count{error_type!=""}',
                          "gen_ai_client_inference_duration_seconds_count", llm_by, "10m")
                   + f" > {LLM_ERROR_RATIO}",
                   "10m", "warning", "Model calls are failing",
                   "{{ $value | humanizePercentage }} of {{ $labels.gen_ai_provider_name }} "
                   "{{ $labels.gen_ai_request_model }} calls from {{ $labels.namespace }} failed over the "
                   f"last 10 minutes (threshold {LLM_ERROR_RATIO:.0%})."),
        ],
    }


def stack_rules(owner: Owner) -> dict[str, Any]:
    """Health of the stack itself: Prometheus replicas, the Alertmanager cluster, scrapes, certificates."""
    # Half of the renewal window gone without a new certificate means renewal is stuck, and
    # still leaves half of that window to act.
    renew_before = owner.spec.tls.renewal_window.total_seconds()
    threshold = int(renew_before / 2)
    # Each operator replica is a target and only the leader has these series (an ex-leader drops
    # them): the max over targets is the leader's, and no target label splits an alert in two.
    certificate = (f'max without (instance) (agentobs_certificate_expiry_timestamp_seconds{{'
                   f'namespace="{owner.namespace}",resource="{owner.name}"}})')
    return {
        "name": "agentobs-stack",
        "rules": [
            _alert("AgentObsPrometheusReplicaDown", f'up{{job="{JOB_PROMETHEUS}"}} == 0', "5m", "warning",
                   "A Prometheus replica is down",
                   "Prometheus replica {{ $labels.pod }} cannot be scraped by its peer: the pair is not "
                   "highly available until it is back."),
            # Each peer reports the members it sees; fewer than the peers Prometheus discovers means a
            # peer is down or the gossip is split (and notifications may be duplicated or lost).
            _alert("AgentObsAlertmanagerClusterDegraded",
                   f'min(alertmanager_cluster_members{{job="{JOB_ALERTMANAGER}"}})'
                   f' < count(up{{job="{JOB_ALERTMANAGER}"}})',
                   "10m", "critical", "The Alertmanager cluster is degraded",
                   "An Alertmanager peer sees only {{ $value }} cluster members, fewer than the peers "
                   "that exist."),
            _alert("AgentObsAgentScrapeFailing", f'up{{job="{JOB_AGENTS}"}} == 0', "10m", "warning",
                   "Agent metrics cannot be scraped",
                   "Prometheus cannot scrape agent pod {{ $labels.pod }} in {{ $labels.namespace }}: its "
                   "metrics and alerts are blind."),
            _alert("AgentObsCertificateNearExpiry", f"{certificate} - time() < {threshold}", "10m", "critical",
                   "A certificate of the stack is about to expire",
                   "The {{ $labels.component }} certificate expires in {{ $value | humanizeDuration }} and "
                   "was not renewed when it was due."),
            # The operator's own view of this resource: what it could not apply or keep running.
            _alert("AgentObsStackDegraded",
                   f'max without (instance) (agentobs_resource_condition{{namespace="{owner.namespace}",'
                   f'resource="{owner.name}",condition="Degraded"}}) == 1', "15m", "warning",
                   "The observability stack is degraded",
                   f"The operator cannot bring AgentObservability {owner.namespace}/{owner.name} to its "
                   "desired state: its Degraded condition (kubectl describe agentobservability) says why."),
        ],
    }


def logging_rules(owner: Owner) -> dict[str, Any]:
    """Health of the log pipeline: this stack's Fluentd aggregator and its route through the
    cluster's node collector (whose outputs are named after the route, `<namespace>_<name>`)."""
    route = f'name="{owner.namespace}_{owner.name}"'
    aggregator = f'job="{JOB_LOG_AGGREGATOR}"'
    return {
        "name": "agentobs-logging",
        "rules": [
            _alert("AgentObsLogAggregatorDown", f'up{{job="{JOB_LOG_AGGREGATOR}"}} == 0', "5m", "warning",
                   "A Fluentd aggregator replica is down",
                   "Fluentd replica {{ $labels.pod }} cannot be scraped: agent logs of this stack wait in the "
                   "node collectors' buffers until a replica takes them."),
            _alert("AgentObsLogCollectorDown", f'up{{job="{JOB_LOG_COLLECTOR}"}} == 0', "10m", "warning",
                   "A node log collector is down",
                   "The log collector at {{ $labels.instance }} cannot be scraped: agent logs of its node are "
                   "not read until it is back (the kubelet may rotate them away meanwhile)."),
            _alert("AgentObsLogBufferFilling",
                   f"min by (pod, plugin_id) (fluentd_output_status_buffer_available_space_ratio{{{aggregator}}})"
                   f" < {LOG_BUFFER_FREE_PERCENT}",
                   "10m", "warning", "A Fluentd buffer is filling up",
                   "Output {{ $labels.plugin_id }} of Fluentd replica {{ $labels.pod }} has {{ $value }}% of its "
                   f"buffer left (threshold {LOG_BUFFER_FREE_PERCENT}%): Elasticsearch is not taking records fast "
                   "enough."),
            _alert("AgentObsLogCollectorBufferFilling",
                   f"min by (instance) (fluentbit_output_chunk_available_capacity_percent{{{route}}})"
                   f" < {LOG_BUFFER_FREE_PERCENT}",
                   "10m", "warning", "A node collector's buffer for this stack is filling up",
                   "The log collector at {{ $labels.instance }} has {{ $value }}% of this stack's buffer left "
                   f"(threshold {LOG_BUFFER_FREE_PERCENT}%): the Fluentd aggregator is not taking records."),
            _alert("AgentObsLogRetrying",
                   f"sum by (pod, plugin_id) (increase(fluentd_output_status_retry_count{{{aggregator}}}[10m]))"
                   " > 0",
                   "15m", "warning", "Fluentd keeps retrying",
                   "Output {{ $labels.plugin_id }} of Fluentd replica {{ $labels.pod }} retried "
                   "{{ $value | humanize }} times in 10 minutes: records wait in its buffer."),
            _alert("AgentObsLogCollectorRetrying",
                   f"sum by (instance) (increase(fluentbit_output_retries_total{{{route}}}[10m])) > 0",
                   "15m", "warning", "A node collector keeps retrying this stack",
                   "The log collector at {{ $labels.instance }} retried sending to this stack's Fluentd "
                   "{{ $value | humanize }} times in 10 minutes."),
            _alert("AgentObsLogDeadLetters",
                   f"sum by (pod) (increase(fluentd_dead_letter_records_total{{{aggregator}}}[10m]))"
                   " > 0",
                   "0m", "warning", "Elasticsearch refused log records",
                   "Fluentd replica {{ $labels.pod }} put {{ $value | humanize }} records Elasticsearch refused "
                   "into its dead-letter files in 10 minutes."),
            _alert("AgentObsLogRecordsDropped",
                   f"sum by (instance) (increase(fluentbit_output_dropped_records_total{{{route}}}[10m])"
                   f" + increase(fluentbit_output_retries_failed_total{{{route}}}[10m])) > 0",
                   "0m", "critical", "Agent log records were lost",
                   "The log collector at {{ $labels.instance }} dropped {{ $value | humanize }} records or chunks "
                   "of this stack in 10 minutes (its buffer for the stack was full)."),
        ],
    }


def built_in_rules(owner: Owner) -> dict[str, Any]:
    groups = [agent_rules(), stack_rules(owner)]
    if owner.spec.logging.enabled:
        groups.append(logging_rules(owner))
    base = str(owner.extra.get(RUNBOOK_URL) or "")
    if base:
        for group in groups:
            for rule in group["rules"]:
                if "alert" in rule:
                    rule["annotations"]["runbook_url"] = runbook_url(rule["alert"], base)
    return {"groups": groups}


def extra_rule_problems(owner: Owner) -> dict[str, str]:
    """Group name -> why Prometheus would refuse it, for each `extraRules` group whose PromQL does
    not parse. The CRD's schema already refuses malformed groups; expressions need a parser."""
    problems: dict[str, str] = {}
    if not owner.spec.prometheus.extra_rules:
        return problems
    # Imported on first use: its native library is 1.5 MiB of resident memory in every operator,
    # and most stacks have no extra rules.
    import promql_parser

    for index, group in enumerate(owner.spec.prometheus.extra_rules):
        for position, rule in enumerate(group.rules):
            try:
                promql_parser.parse(rule.expr)
            except ValueError as exc:
                problems[group.name] = (f"spec.prometheus.extraRules[{index}].rules[{position}].expr "
                                        f"(group {group.name!r}) does not parse: {exc}")
                break
    return problems


def rule_files(owner: Owner) -> dict[str, dict[str, Any]]:
    """File name -> rule file; empty when there are no rules at all.

    Extra groups whose PromQL does not parse are left out (reconcile reports them as Degraded):
    Prometheus refuses to start on a rule file with one bad expression, so writing it would turn a
    typo into a crash-looping pair.
    """
    spec = owner.spec.prometheus
    files: dict[str, dict[str, Any]] = {}
    if spec.alert_rules:
        files[BUILT_IN_FILE] = built_in_rules(owner)
    bad = extra_rule_problems(owner)
    groups = [g.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
              for g in spec.extra_rules if g.name not in bad]
    if groups:
        # A file of its own, so a user's group may reuse a built-in group's name.
        files[EXTRA_FILE] = {"groups": groups}
    return files
