"""A real Prometheus scrapes the SDK's metrics endpoint, and PromQL returns what was recorded."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agentobs_sdk

from sdk_servers import STARTUP_TIMEOUT_S, free_port, http_ok, stop, wait_until

QUERY_TIMEOUT_S = 60.0


@pytest.fixture
def sdk_with_port() -> Iterator[agentobs_sdk.Handle]:
    handle = agentobs_sdk.configure({"AGENTOBS_METRICS_PORT": "0", "AGENTOBS_AGENT_ID": "prom-agent",
                                     "OTEL_SERVICE_NAME": "prom-test", "AGENTOBS_METRICS_LINGER_SECONDS": "0"},
                                    metrics_addr="127.0.0.1", json_logs=False)
    assert handle.metrics_port
    yield handle
    handle.shutdown()


@pytest.fixture
def prometheus(prometheus_binary: str, sdk_with_port: agentobs_sdk.Handle, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: agent\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{sdk_with_port.metrics_port}']\n"
    )
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [prometheus_binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}/-/ready"), STARTUP_TIMEOUT_S, "prometheus", proc, log)
        yield url
    finally:
        stop(proc)


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    full = f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(full, timeout=5) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    result = body["data"]["result"]
    assert isinstance(result, list)
    return result


def _wait_value(url: str, expr: str, expected: float) -> None:
    deadline = time.monotonic() + QUERY_TIMEOUT_S
    last: Any = None
    while time.monotonic() < deadline:
        result = _query(url, expr)
        if result:
            last = float(result[0]["value"][1])
            if last == pytest.approx(expected):
                return
        time.sleep(0.5)
    raise AssertionError(f"{expr} = {last}, expected {expected}")


def test_prometheus_scrapes_what_the_sdk_recorded(prometheus: str, sdk_with_port: agentobs_sdk.Handle) -> None:
    usage = [(100, 20), (2000, 300), (5, 1)]
    with agentobs_sdk.agent_run("scraped"):
        for inp, out in usage:
            with agentobs_sdk.llm_call("gpt-4o", provider="openai") as call:
                call.record_usage(inp, out)
                call.add_cost(0.5)
        for _ in range(2):
            with pytest.raises(ConnectionError), agentobs_sdk.tool_call("fetch"):
                raise ConnectionError("down")
        with agentobs_sdk.decision("route", choice="a", confidence=0.75):
            pass

    _wait_value(prometheus, 'up{job="agent"}', 1)
    _wait_value(prometheus, "sum(gen_ai_client_token_usage_count)", 6)
    _wait_value(prometheus, 'sum(gen_ai_client_token_usage_sum{gen_ai_token_type="input"})',
                sum(i for i, _ in usage))
    _wait_value(prometheus, 'sum(gen_ai_client_token_usage_sum{gen_ai_token_type="output"})',
                sum(o for _, o in usage))
    # the semconv buckets arrive as `le` labels (64 or 64.0 by exposition format): 5, 20 and 1 fit
    _wait_value(prometheus, r'sum(gen_ai_client_token_usage_bucket{le=~`64(\.0)?`})', 3)
    _wait_value(prometheus, 'sum(gen_ai_client_operation_duration_seconds_count{gen_ai_request_model="gpt-4o"})', 3)
    _wait_value(prometheus,
                'sum(agentobs_agent_tool_call_failures_total{tool="fetch",error_type="ConnectionError"})', 2)
    _wait_value(prometheus, 'sum(agentobs_agent_cost_usd_total{agent="scraped"})', 1.5)
    _wait_value(prometheus, 'sum(agentobs_agent_decision_confidence_sum{decision="route"})', 0.75)
    _wait_value(prometheus, 'sum(agentobs_agent_run_duration_seconds_count{agent="scraped",status="ok"})', 1)
    _wait_value(prometheus, 'count(agentobs_agent_sdk_info{agent_id="prom-agent",service="prom-test"})', 1)

    # everything Prometheus stored from the SDK target is in the series contract
    names = {r["metric"]["__name__"] for r in _query(prometheus, '{job="agent"}')}
    sdk_names = {n for n in names if n.startswith(("gen_ai_", "agentobs_agent_"))}
    assert sdk_names, names
    assert sdk_names <= agentobs_sdk.emitted_series(), sdk_names - agentobs_sdk.emitted_series()


def test_a_short_lived_agent_keeps_its_last_figures(prometheus_binary: str, tmp_path: Path) -> None:
    """shutdown() waits for one scrape that starts after it, so the figures recorded just before
    exit reach Prometheus instead of dying with the process."""
    handle = agentobs_sdk.configure({"AGENTOBS_METRICS_PORT": "0", "AGENTOBS_AGENT_ID": "short-lived",
                                     "AGENTOBS_METRICS_LINGER_SECONDS": "30"},
                                    metrics_addr="127.0.0.1", json_logs=False)
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 4s\nscrape_configs:\n  - job_name: short\n    static_configs:\n"
                   f"      - targets: ['127.0.0.1:{handle.metrics_port}']\n")
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [prometheus_binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}/-/ready"), STARTUP_TIMEOUT_S, "prometheus", proc, log)
        _wait_value(url, 'up{job="short"}', 1)  # scraped at least once, before the work below
        with agentobs_sdk.agent_run("batch"):
            for _ in range(5):
                with agentobs_sdk.tool_call("step"):
                    pass
        handle.shutdown()  # the process would exit right after this
        # The target is gone now (stale); the stored samples still hold the final figures.
        _wait_value(url, 'last_over_time(agentobs_agent_tool_call_duration_seconds_count'
                         '{job="short",agent="batch",tool="step"}[5m])', 5)
    finally:
        handle.shutdown()
        stop(proc)
