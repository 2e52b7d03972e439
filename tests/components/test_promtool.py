"""The real promtool on what the operator renders: config, web config, rules, and rule unit tests.

promtool is built by `tools/ensure.sh prometheus` from the Prometheus release the operator deploys
(Debian's promtool, the fallback, lacks the Kubernetes service discovery the config uses, so only
its rule checks pass).

The Prometheus pod's mounts are laid out in a temporary directory from the rendered objects (with
real certificates) and the config's paths pointed there, so `promtool check config` also proves
that every file the config names is one the pod gets. The rule unit tests give each built-in alert
a synthetic series it must fire on and a healthy one it must stay silent on.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentobs.api.spec import AgentObservabilitySpec
from agentobs.render import Owner, collector, make_stack, rules
from agentobs.render.prometheus import OPERATOR_METRICS_TARGET

from rendered_files import lay_out_mounts, real_material, rewrite_paths

ROOT = Path(__file__).resolve().parents[2]

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
NS, NAME = "agents", "demo"
SPECS: dict[str, dict[str, Any]] = {
    "default": {},
    "extra-rules": {"prometheus": {"extraRules": [{"name": "team", "rules": [
        {"alert": "TeamAgentSlow", "expr": "vector(1)", "for": "5m", "labels": {"severity": "info"}}]}]}},
    "no-rules": {"prometheus": {"alertRules": False}},
}


@pytest.fixture(scope="session")
def promtool() -> str:
    built = subprocess.run([str(ROOT / "tools" / "ensure.sh"), "prometheus"], capture_output=True, text=True,
                           check=False)
    if built.returncode == 0:
        return built.stdout.strip() + "/promtool"
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("needs promtool: run make debs")
    return found


def _run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([promtool, *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _owner(spec: dict[str, Any]) -> Owner:
    return Owner(name=NAME, namespace=NS, uid="uid-1", spec=AgentObservabilitySpec.model_validate(spec),
                 extra={OPERATOR_METRICS_TARGET: "agentobs-operator.agentobs-system.svc:8080",
                        collector.NAMESPACE_EXTRA: "agentobs-system"})


def _prometheus_files(spec: dict[str, Any], root: Path) -> tuple[Path, Path, dict[str, str]]:
    """(config file, web config file, mounts) as the Prometheus pod would see them, under root."""
    owner = _owner(spec)
    objects = make_stack(owner, real_material(owner, NOW))
    mounts = lay_out_mounts(objects, "StatefulSet", f"{NAME}-prometheus", root)
    sts = next(o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == f"{NAME}-prometheus")
    args = dict(a.removeprefix("--").split("=", 1) for a in sts["spec"]["template"]["spec"]["containers"][0]["args"])
    config, web = (Path(rewrite_paths(args[flag] + "/", mounts).rstrip("/"))
                   for flag in ("config.file", "web.config.file"))
    for path in (config, web):
        path.write_text(rewrite_paths(path.read_text(), mounts))
    return config, web, mounts


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_check_config_with_every_file_it_names(promtool: str, spec: str, tmp_path: Path) -> None:
    config, _, _ = _prometheus_files(SPECS[spec], tmp_path)
    scrape = {j["job_name"]: j for j in yaml.safe_load(config.read_text())["scrape_configs"]}
    assert {rules.JOB_LOG_AGGREGATOR, rules.JOB_LOG_COLLECTOR} <= set(scrape)  # the log pipeline's, checked too
    assert "dns_sd_configs" in scrape["agentobs-operator"]  # every operator replica, checked too
    out = _run(promtool, "check", "config", str(config))
    if spec != "no-rules":
        assert "SUCCESS" in out.stdout and "rules found" in out.stdout


def test_check_web_config(promtool: str, tmp_path: Path) -> None:
    _, web, _ = _prometheus_files({}, tmp_path)
    _run(promtool, "check", "web-config", str(web))


def test_check_rules_counts_built_in_and_extra_rules(promtool: str, tmp_path: Path) -> None:
    _, _, mounts = _prometheus_files(SPECS["extra-rules"], tmp_path)
    files = sorted(Path(mounts["/etc/prometheus/rules"]).glob("*.yml"))
    assert [f.name for f in files] == sorted([rules.BUILT_IN_FILE, rules.EXTRA_FILE])
    out = _run(promtool, "check", "rules", *map(str, files))
    built_in = sum(len(g["rules"]) for g in rules.built_in_rules(_owner({}))["groups"])
    assert f"SUCCESS: {built_in} rules found" in out.stdout
    assert "SUCCESS: 1 rules found" in out.stdout


# --- rule unit tests ----------------------------------------------------------------------------

AGENT = f'namespace="{NS}",agent="planner"'
# The GenAI agent and tool durations carry the agent's name in gen_ai_agent_name.
GEN_AGENT = f'{AGENT},gen_ai_agent_name="planner"'
TOOL = f'{GEN_AGENT},gen_ai_tool_name="search",gen_ai_tool_type="function"'
LLM = f'namespace="{NS}",gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o",gen_ai_operation_name="chat"'


def _buckets(metric: str, labels: str, per_minute: dict[str, int], minutes: int = 40) -> list[dict[str, str]]:
    """Cumulative histogram buckets growing by the given observations per minute."""
    return [{"series": f'{metric}_bucket{{{labels},le="{le}"}}', "values": f"0+{n}x{minutes}"}
            for le, n in per_minute.items()]


def _series(selector: str, values: str) -> dict[str, str]:
    return {"series": selector, "values": values}


# Alert -> (eval time, firing input, expected labels, expected description, healthy input).
CASES: dict[str, tuple[str, list[dict[str, str]], dict[str, str], str, list[dict[str, str]]]] = {
    "AgentObsAgentLoopLatencyHigh": (
        "40m",
        _buckets("gen_ai_invoke_agent_duration_seconds", GEN_AGENT,
                 {"102.4": 0, "204.8": 0, "409.6": 1, "+Inf": 1}),
        {"namespace": NS, "gen_ai_agent_name": "planner"},
        "The 95th percentile of agent planner runs in agents is 6m 39s over the last 10 minutes "
        "(threshold 120s).",
        _buckets("gen_ai_invoke_agent_duration_seconds", GEN_AGENT,
                 {"102.4": 1, "204.8": 1, "409.6": 1, "+Inf": 1}),
    ),
    "AgentObsAgentErrorRateHigh": (
        "30m",
        [_series(f'gen_ai_invoke_agent_duration_seconds_count{{{GEN_AGENT},error_type="TimeoutError"}}', "0+1x40"),
         _series(f"gen_ai_invoke_agent_duration_seconds_count{{{GEN_AGENT}}}", "0+9x40")],
        {"namespace": NS, "gen_ai_agent_name": "planner"},
        "10% of agent planner runs in agents ended in an error over the last 10 minutes (threshold 5%).",
        [_series(f'gen_ai_invoke_agent_duration_seconds_count{{{GEN_AGENT},error_type="TimeoutError"}}', "0+0x40"),
         _series(f"gen_ai_invoke_agent_duration_seconds_count{{{GEN_AGENT}}}", "0+9x40")],
    ),
    "AgentObsToolCallFailureRatioHigh": (
        "30m",
        [_series(f'gen_ai_execute_tool_duration_seconds_count{{{TOOL},error_type="Timeout"}}', "0+1x40"),
         _series(f"gen_ai_execute_tool_duration_seconds_count{{{TOOL}}}", "0+2x40")],
        {"namespace": NS, "gen_ai_agent_name": "planner", "gen_ai_tool_name": "search"},
        "33.33% of calls of tool search by agent planner in agents failed over the last 10 minutes "
        "(threshold 10%).",
        [_series(f'gen_ai_execute_tool_duration_seconds_count{{{TOOL},error_type="Timeout"}}', "0+0x40"),
         _series(f"gen_ai_execute_tool_duration_seconds_count{{{TOOL}}}", "0+3x40")],
    ),
    # Input tokens only (an embeddings agent has no output series): the alert must still fire.
    "AgentObsTokenBurnHigh": (
        "100m",
        [_series(f'gen_ai_client_inference_usage_input_tokens_total{{{LLM},agent="planner",'
                 'gen_ai_token_modality="unknown"}', "0+20000x120")],
        {"namespace": NS, "agent": "planner"},
        "Agent planner in agents used 1.2M tokens in the last hour (threshold 1,000,000).",
        [_series(f'gen_ai_client_inference_usage_input_tokens_total{{{LLM},agent="planner",'
                 'gen_ai_token_modality="unknown"}', "0+1000x120"),
         _series(f'gen_ai_client_inference_usage_output_tokens_total{{{LLM},agent="planner",'
                 'gen_ai_token_modality="unknown"}', "0+1000x120")],
    ),
    "AgentObsCostBurnHigh": (
        "100m",
        [_series(f'agentobs_agent_cost_usd_total{{{AGENT},gen_ai_provider_name="openai",'
                 'gen_ai_request_model="gpt-4o"}', "0+0.25x120")],
        {"namespace": NS, "agent": "planner"},
        "Agent planner in agents spent 15 USD on model calls in the last hour (threshold 10 USD).",
        [_series(f'agentobs_agent_cost_usd_total{{{AGENT},gen_ai_provider_name="openai",'
                 'gen_ai_request_model="gpt-4o"}', "0+0.1x120")],
    ),
    "AgentObsLLMLatencyHigh": (
        "40m",
        _buckets("gen_ai_client_inference_duration_seconds", LLM, {"20.48": 0, "40.96": 0, "81.92": 1, "+Inf": 1}),
        {"namespace": NS, "gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt-4o"},
        "The 95th percentile of openai gpt-4o calls from agents is 1m 19s over the last 10 minutes "
        "(threshold 30s).",
        _buckets("gen_ai_client_inference_duration_seconds", LLM, {"20.48": 1, "40.96": 1, "81.92": 1, "+Inf": 1}),
    ),
    "AgentObsLLMErrorRateHigh": (
        "30m",
        [_series(f'gen_ai_client_inference_duration_seconds_count{{{LLM},error_type="RateLimitError"}}', "0+1x40"),
         _series(f"gen_ai_client_inference_duration_seconds_count{{{LLM}}}", "0+9x40")],
        {"namespace": NS, "gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt-4o"},
        "10% of openai gpt-4o calls from agents failed over the last 10 minutes (threshold 5%).",
        [_series(f'gen_ai_client_inference_duration_seconds_count{{{LLM},error_type="RateLimitError"}}', "0+0x40"),
         _series(f"gen_ai_client_inference_duration_seconds_count{{{LLM}}}", "0+9x40")],
    ),
    "AgentObsPrometheusReplicaDown": (
        "10m",
        [_series(f'up{{job="prometheus",namespace="{NS}",pod="demo-prometheus-1"}}', "0x20"),
         _series(f'up{{job="prometheus",namespace="{NS}",pod="demo-prometheus-0"}}', "1x20")],
        {"job": "prometheus", "namespace": NS, "pod": "demo-prometheus-1"},
        "Prometheus replica demo-prometheus-1 cannot be scraped by its peer: the pair is not highly "
        "available until it is back.",
        [_series(f'up{{job="prometheus",namespace="{NS}",pod="demo-prometheus-1"}}', "1x20"),
         _series(f'up{{job="prometheus",namespace="{NS}",pod="demo-prometheus-0"}}', "1x20")],
    ),
    "AgentObsAlertmanagerClusterDegraded": (
        "20m",
        [*(_series(f'up{{job="alertmanager",pod="demo-alertmanager-{i}"}}', v)
           for i, v in enumerate(("1x30", "1x30", "0x30"))),
         *(_series(f'alertmanager_cluster_members{{job="alertmanager",pod="demo-alertmanager-{i}"}}', "2x30")
           for i in range(2))],
        {},
        "An Alertmanager peer sees only 2 cluster members, fewer than the peers that exist.",
        [*(_series(f'up{{job="alertmanager",pod="demo-alertmanager-{i}"}}', "1x30") for i in range(3)),
         *(_series(f'alertmanager_cluster_members{{job="alertmanager",pod="demo-alertmanager-{i}"}}', "3x30")
           for i in range(3))],
    ),
    "AgentObsAgentScrapeFailing": (
        "15m",
        [_series(f'up{{job="agents",namespace="{NS}",pod="planner-7f9c",agent="planner"}}', "0x20")],
        {"job": "agents", "namespace": NS, "pod": "planner-7f9c", "agent": "planner"},
        "Prometheus cannot scrape agent pod planner-7f9c in agents: its metrics and alerts are blind.",
        [_series(f'up{{job="agents",namespace="{NS}",pod="planner-7f9c",agent="planner"}}', "1x20")],
    ),
    "AgentObsCertificateNearExpiry": (
        # time() is 1200 at 20m: 598800 s (6d 22h 20m) left, under half of the 720h renewal window.
        "20m",
        [_series(f'agentobs_certificate_expiry_timestamp_seconds{{namespace="{NS}",resource="{NAME}",'
                 'component="grafana"}', "600000x30")],
        {"namespace": NS, "resource": NAME, "component": "grafana"},
        "The grafana certificate expires in 6d 22h 20m 0s and was not renewed when it was due.",
        # Healthy: ours is far from expiry; another resource's expiring one is not ours to report.
        [_series(f'agentobs_certificate_expiry_timestamp_seconds{{namespace="{NS}",resource="{NAME}",'
                 'component="grafana"}', "10000000x30"),
         _series(f'agentobs_certificate_expiry_timestamp_seconds{{namespace="{NS}",resource="other",'
                 'component="grafana"}', "600000x30")],
    ),
    "AgentObsStackDegraded": (
        "20m",
        [_series(f'agentobs_resource_condition{{namespace="{NS}",resource="{NAME}",condition="Degraded"}}',
                 "1x30")],
        {"namespace": NS, "resource": NAME, "condition": "Degraded"},
        f"The operator cannot bring AgentObservability {NS}/{NAME} to its desired state: its Degraded "
        "condition (kubectl describe agentobservability) says why.",
        # Healthy: ours is not degraded (Ready is not Degraded); another resource's is not ours to report.
        [_series(f'agentobs_resource_condition{{namespace="{NS}",resource="{NAME}",condition="Degraded"}}',
                 "0x30"),
         _series(f'agentobs_resource_condition{{namespace="{NS}",resource="{NAME}",condition="Ready"}}', "1x30"),
         _series(f'agentobs_resource_condition{{namespace="{NS}",resource="other",condition="Degraded"}}',
                 "1x30")],
    ),
    # --- the log pipeline ---
    "AgentObsLogAggregatorDown": (
        "10m",
        [_series(f'up{{job="logging-aggregator",namespace="{NS}",pod="demo-fluentd-1"}}', "0x20")],
        {"job": "logging-aggregator", "namespace": NS, "pod": "demo-fluentd-1"},
        "Fluentd replica demo-fluentd-1 cannot be scraped: agent logs of this stack wait in the node "
        "collectors' buffers until a replica takes them.",
        [_series(f'up{{job="logging-aggregator",namespace="{NS}",pod="demo-fluentd-1"}}', "1x20")],
    ),
    "AgentObsLogCollectorDown": (
        "15m",
        [_series('up{job="log-collector",instance="10.0.0.5:2020"}', "0x20")],
        {"job": "log-collector", "instance": "10.0.0.5:2020"},
        "The log collector at 10.0.0.5:2020 cannot be scraped: agent logs of its node are not read until it "
        "is back (the kubelet may rotate them away meanwhile).",
        [_series('up{job="log-collector",instance="10.0.0.5:2020"}', "1x20")],
    ),
    "AgentObsLogBufferFilling": (
        "20m",
        [_series(f'fluentd_output_status_buffer_available_space_ratio{{job="logging-aggregator",namespace="{NS}",'
                 'pod="demo-fluentd-0",plugin_id="elasticsearch-logs",type="elasticsearch"}', "10x30")],
        {"pod": "demo-fluentd-0", "plugin_id": "elasticsearch-logs"},
        "Output elasticsearch-logs of Fluentd replica demo-fluentd-0 has 10% of its buffer left (threshold "
        "20%): Elasticsearch is not taking records fast enough.",
        [_series(f'fluentd_output_status_buffer_available_space_ratio{{job="logging-aggregator",namespace="{NS}",'
                 'pod="demo-fluentd-0",plugin_id="elasticsearch-logs",type="elasticsearch"}', "90x30")],
    ),
    "AgentObsLogCollectorBufferFilling": (
        "20m",
        [_series(f'fluentbit_output_chunk_available_capacity_percent{{job="log-collector",instance="10.0.0.5:2020",'
                 f'name="{NS}_{NAME}"}}', "5x30")],
        {"instance": "10.0.0.5:2020"},
        "The log collector at 10.0.0.5:2020 has 5% of this stack's buffer left (threshold 20%): the Fluentd "
        "aggregator is not taking records.",
        # Healthy: ours has room; another stack's full buffer is not ours to report.
        [_series(f'fluentbit_output_chunk_available_capacity_percent{{job="log-collector",instance="10.0.0.5:2020",'
                 f'name="{NS}_{NAME}"}}', "100x30"),
         _series('fluentbit_output_chunk_available_capacity_percent{job="log-collector",instance="10.0.0.5:2020",'
                 'name="other_obs"}', "5x30")],
    ),
    "AgentObsLogRetrying": (
        "30m",
        [_series(f'fluentd_output_status_retry_count{{job="logging-aggregator",namespace="{NS}",'
                 'pod="demo-fluentd-0",plugin_id="elasticsearch-audit",type="elasticsearch"}', "0+1x40")],
        {"pod": "demo-fluentd-0", "plugin_id": "elasticsearch-audit"},
        "Output elasticsearch-audit of Fluentd replica demo-fluentd-0 retried 10 times in 10 minutes: records "
        "wait in its buffer.",
        [_series(f'fluentd_output_status_retry_count{{job="logging-aggregator",namespace="{NS}",'
                 'pod="demo-fluentd-0",plugin_id="elasticsearch-audit",type="elasticsearch"}', "3x40")],
    ),
    "AgentObsLogCollectorRetrying": (
        "30m",
        [_series(f'fluentbit_output_retries_total{{job="log-collector",instance="10.0.0.5:2020",name="{NS}_{NAME}"}}',
                 "0+2x40")],
        {"instance": "10.0.0.5:2020"},
        "The log collector at 10.0.0.5:2020 retried sending to this stack's Fluentd 20 times in 10 minutes.",
        [_series(f'fluentbit_output_retries_total{{job="log-collector",instance="10.0.0.5:2020",name="{NS}_{NAME}"}}',
                 "4x40"),
         _series('fluentbit_output_retries_total{job="log-collector",instance="10.0.0.5:2020",name="other_obs"}',
                 "0+2x40")],
    ),
    "AgentObsLogDeadLetters": (
        "20m",
        [_series(f'fluentd_dead_letter_records_total{{job="logging-aggregator",namespace="{NS}",'
                 'pod="demo-fluentd-0"}', "0+1x30")],
        {"pod": "demo-fluentd-0"},
        "Fluentd replica demo-fluentd-0 put 10 records Elasticsearch refused into its dead-letter files in 10 "
        "minutes.",
        [_series(f'fluentd_dead_letter_records_total{{job="logging-aggregator",namespace="{NS}",'
                 'pod="demo-fluentd-0"}', "2x30")],
    ),
    "AgentObsLogRecordsDropped": (
        "20m",
        [_series(f'fluentbit_output_dropped_records_total{{job="log-collector",instance="10.0.0.5:2020",'
                 f'name="{NS}_{NAME}"}}', "0+3x30"),
         _series(f'fluentbit_output_retries_failed_total{{job="log-collector",instance="10.0.0.5:2020",'
                 f'name="{NS}_{NAME}"}}', "0x30")],
        {"instance": "10.0.0.5:2020"},
        "The log collector at 10.0.0.5:2020 dropped 30 records or chunks of this stack in 10 minutes (its "
        "buffer for the stack was full).",
        [_series(f'fluentbit_output_dropped_records_total{{job="log-collector",instance="10.0.0.5:2020",'
                 f'name="{NS}_{NAME}"}}', "0x30"),
         _series(f'fluentbit_output_retries_failed_total{{job="log-collector",instance="10.0.0.5:2020",'
                 f'name="{NS}_{NAME}"}}', "0x30")],
    ),
}


def _built_in_alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rules.built_in_rules(_owner({}))["groups"] for r in g["rules"]}


def test_every_alert_has_a_firing_and_a_healthy_case() -> None:
    assert set(CASES) == set(_built_in_alerts())


def _unit_tests() -> list[dict[str, Any]]:
    alerts = _built_in_alerts()
    tests = []
    for name, (at, firing, labels, description, healthy) in sorted(CASES.items()):
        rule = alerts[name]
        expected = {"exp_labels": {**labels, **rule["labels"]},
                    "exp_annotations": {**rule["annotations"], "description": description}}
        tests.append({"name": f"{name} fires", "interval": "1m", "input_series": firing,
                      "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": [expected]}]})
        tests.append({"name": f"{name} stays silent", "interval": "1m", "input_series": healthy,
                      "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": []}]})
    return tests


def test_each_alert_fires_on_its_symptom_and_stays_silent_when_healthy(promtool: str, tmp_path: Path) -> None:
    _, _, mounts = _prometheus_files({}, tmp_path / "pod")
    rule_file = Path(mounts["/etc/prometheus/rules"]) / rules.BUILT_IN_FILE
    test_file = tmp_path / "alerts.test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(rule_file)], "evaluation_interval": "1m",
                                         "tests": _unit_tests()}, sort_keys=False))
    _run(promtool, "test", "rules", str(test_file))


def test_a_wrong_expectation_makes_promtool_fail(promtool: str, tmp_path: Path) -> None:
    """The unit tests above can fail: a healthy series expected to fire is reported."""
    _, _, mounts = _prometheus_files({}, tmp_path / "pod")
    rule_file = Path(mounts["/etc/prometheus/rules"]) / rules.BUILT_IN_FILE
    _, _, labels, _, healthy = CASES["AgentObsAgentScrapeFailing"]
    test_file = tmp_path / "wrong.test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(rule_file)], "tests": [{
        "interval": "1m", "input_series": healthy, "alert_rule_test": [{
            "eval_time": "15m", "alertname": "AgentObsAgentScrapeFailing",
            "exp_alerts": [{"exp_labels": labels}]}]}]}))
    result = subprocess.run([promtool, "test", "rules", str(test_file)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
