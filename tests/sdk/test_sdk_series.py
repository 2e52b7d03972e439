"""The series contract: what the SDK emits, and the helper that checks PromQL against it."""

from __future__ import annotations

import re

import pytest

import agentobs_sdk
from agentobs_sdk import series
from agentobs_sdk.metrics import AgentMetrics

SEMCONV_TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                         16777216, 67108864]
SEMCONV_DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                            40.96, 81.92]


def test_genai_metrics_use_semconv_names_and_buckets() -> None:
    assert series.TOKEN_USAGE.name == "gen_ai_client_token_usage"
    assert series.TOKEN_USAGE.otel_name == "gen_ai.client.token.usage"
    assert series.TOKEN_USAGE.unit == "{token}"
    assert list(series.TOKEN_USAGE.buckets) == SEMCONV_TOKEN_BUCKETS
    assert series.OPERATION_DURATION.name == "gen_ai_client_operation_duration_seconds"
    assert series.OPERATION_DURATION.otel_name == "gen_ai.client.operation.duration"
    assert list(series.OPERATION_DURATION.buckets) == SEMCONV_DURATION_BUCKETS
    assert "gen_ai_token_type" in series.TOKEN_USAGE.labels
    for label in ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model",
                  "gen_ai_response_model"):
        assert label in series.TOKEN_USAGE.labels and label in series.OPERATION_DURATION.labels


def test_emitted_series_lists_suffixed_forms() -> None:
    names = agentobs_sdk.emitted_series()
    for suffix in ("_bucket", "_sum", "_count"):
        assert f"gen_ai_client_token_usage{suffix}" in names
        assert f"gen_ai_client_operation_duration_seconds{suffix}" in names
        assert f"agentobs_agent_run_duration_seconds{suffix}" in names
    for counter in ("agentobs_agent_tool_call_failures", "agentobs_agent_decisions", "agentobs_agent_errors",
                    "agentobs_agent_cost_usd"):
        assert f"{counter}_total" in names
        assert counter not in names  # a bare counter name is not a series
    assert "gen_ai_client_token_usage" not in names  # nor is a bare histogram name


def _exposed_sample_names(metrics: AgentMetrics) -> set[str]:
    names = set()
    for line in metrics.exposition().decode().splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def test_everything_a_scrape_returns_is_in_the_contract(sdk: agentobs_sdk.Handle) -> None:
    with agentobs_sdk.agent_run("a"):
        with agentobs_sdk.llm_call("m", provider="p") as call:
            call.first_chunk()  # a streamed call: time to first chunk
            call.record_usage(3, 4, cache_read_tokens=1, cache_write_tokens=1, reasoning_tokens=1)
            call.add_cost(0.01)
        with agentobs_sdk.reasoning_step():
            pass
        with agentobs_sdk.decision("d", choice="x", confidence=0.5):
            pass
        with pytest.raises(KeyError), agentobs_sdk.tool_call("t"):
            raise KeyError("k")
    sdk.metrics.set_audit_seq("a", 1)
    exposed = _exposed_sample_names(sdk.metrics)
    assert exposed <= agentobs_sdk.emitted_series(), exposed - agentobs_sdk.emitted_series()
    # and every family was exercised, so the check above covered the whole contract
    for spec in series.series_for(sdk.metrics.mode):
        assert exposed & spec.sample_names(), spec.name


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('sum by (agent) (rate(agentobs_agent_errors_total{agent=~"a.*"}[5m]))', {"agentobs_agent_errors_total"}),
        ("histogram_quantile(0.95, sum(rate(gen_ai_client_operation_duration_seconds_bucket[5m])) by (le))",
         {"gen_ai_client_operation_duration_seconds_bucket"}),
        ("a_total / on(pod) group_left(version) b_info > bool 0.5", {"a_total", "b_info"}),
        ('{__name__="agentobs_agent_decisions_total", agent="x"}', {"agentobs_agent_decisions_total"}),
        ("rate(x_total[$__rate_interval]) offset 1h and ignoring(job) y", {"x_total", "y"}),
        ('label_replace(z, "dst", "$1", "src", "(sum|rate)")', {"z"}),
        ("topk(5, sum without (instance) (w)) # a comment mentioning fake_metric", {"w"}),
        ("count(agent:errors:rate5m) - 1e3 + 0x1f", {"agent:errors:rate5m"}),
        ('sum(increase(gen_ai_client_token_usage_sum{gen_ai_token_type="output",pod="${pod}"}[1h]))',
         {"gen_ai_client_token_usage_sum"}),
        ("max_over_time(m[10m:1m]) unless min(n) @ start()", {"m", "n"}),
    ],
)
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    assert agentobs_sdk.promql_metric_names(expr) == names


def test_unknown_series_reports_only_what_nothing_emits() -> None:
    good = "sum(rate(gen_ai_client_token_usage_sum[5m])) / sum(rate(agentobs_agent_run_duration_seconds_count[5m]))"
    assert agentobs_sdk.unknown_series(good) == set()
    bad = ["rate(agentobs_agent_tool_calls_total[5m])",  # typo: the family is tool_call_failures
           "gen_ai_client_token_usage",                  # bare histogram name selects nothing
           "up == 0"]                                   # not the SDK's namespace: not checked
    assert agentobs_sdk.unknown_series(bad) == {"agentobs_agent_tool_calls_total", "gen_ai_client_token_usage"}
    assert agentobs_sdk.unknown_series("up + foo", prefixes=None) == {"up", "foo"}
    assert agentobs_sdk.unknown_series("agentobs_agent_custom_total", known=["agentobs_agent_custom_total"]) == set()


def test_model_call_labels_are_checked() -> None:
    from agentobs_sdk.metrics import AgentMetrics

    metrics = AgentMetrics()
    with pytest.raises(TypeError, match="request_model"):
        metrics.record_time_to_first_chunk(0.1, operation="chat", provider="openai",  # type: ignore[call-arg]
                                           response_model=None)
    with pytest.raises(TypeError, match="server"):
        metrics.record_time_to_first_chunk(0.1, operation="chat", provider="openai", request_model="m",
                                           response_model=None, server="x")  # type: ignore[call-arg]
    metrics.record_time_to_first_chunk(0.1, operation="chat", provider="openai", request_model="m",
                                       response_model=None)
    assert metrics.sample("gen_ai_client_operation_time_to_first_chunk_seconds_count",
                          {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai",
                           "gen_ai_request_model": "m", "gen_ai_response_model": ""}) == 1


def test_kept_label_children_record_like_fresh_ones() -> None:
    # Token usage is planned once per label set and children are kept (metrics._of): repeated
    # calls must still land on their own series, checked labels still be refused after a valid
    # call was cached, and an unhashable value still be recorded (under its str()).
    from agentobs_sdk.metrics import AgentMetrics

    metrics = AgentMetrics()
    call = {"operation": "chat", "provider": "openai", "request_model": "gpt-4o", "response_model": "gpt-4o"}
    for tokens in (10, 20, 30):
        metrics.record_token_usage("input", tokens, **call)  # type: ignore[arg-type]
    metrics.record_token_usage("output", 7, **call)  # type: ignore[arg-type]
    metrics.record_token_usage("input", 5, **{**call, "request_model": "other"})  # type: ignore[arg-type]
    labels = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt-4o",
              "gen_ai_response_model": "gpt-4o"}
    assert metrics.sample("gen_ai_client_token_usage_sum", {"gen_ai_token_type": "input", **labels}) == 60
    assert metrics.sample("gen_ai_client_token_usage_count", {"gen_ai_token_type": "input", **labels}) == 3
    assert metrics.sample("gen_ai_client_token_usage_sum", {"gen_ai_token_type": "output", **labels}) == 7
    assert metrics.sample("gen_ai_client_token_usage_sum", {"gen_ai_token_type": "input", **labels,
                                                            "gen_ai_request_model": "other"}) == 5
    with pytest.raises(TypeError, match="server"):
        metrics.record_token_usage("input", 1, **call, server="x")  # type: ignore[call-arg, arg-type]
    metrics.record_token_usage("input", 2, **{**call, "request_model": ["a"]})  # type: ignore[arg-type]
    assert metrics.sample("gen_ai_client_token_usage_sum", {"gen_ai_token_type": "input", **labels,
                                                            "gen_ai_request_model": "['a']"}) == 2
    for n in range(3):
        metrics.record_tool_call("agent-1", "search", 0.5, error_type=None if n else "Timeout")
    assert metrics.sample("agentobs_agent_tool_call_duration_seconds_count",
                          {"agent": "agent-1", "tool": "search", "status": "ok"}) == 2
