"""Spans reach a real OTLP receiver (the Jaeger v2 binary) over TLS, by gRPC and by HTTP, and are
read back through Jaeger's query API with their gen_ai.* attributes."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
import uuid
from typing import Any

import pytest

import agentobs_sdk

from sdk_servers import Jaeger

READBACK_TIMEOUT_S = 60.0


def _traces(jaeger: Jaeger, service: str) -> list[dict[str, Any]]:
    url = f"{jaeger.query_url}/api/traces?" + urllib.parse.urlencode({"service": service, "limit": 20})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.load(resp)
    data = body.get("data") or []
    assert isinstance(data, list)
    return data


def _wait_for_spans(jaeger: Jaeger, service: str, names: set[str]) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + READBACK_TIMEOUT_S
    found: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        try:
            traces = _traces(jaeger, service)
        except OSError:
            traces = []
        found = {s["operationName"]: s for t in traces for s in t.get("spans", [])}
        if names <= found.keys():
            return found
        time.sleep(0.5)
    raise AssertionError(f"spans {sorted(names - found.keys())} of {service} never reached Jaeger")


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


@pytest.mark.parametrize(("protocol", "endpoint_attr"), [("grpc", "grpc_endpoint"), ("http/protobuf", "http_endpoint")])
def test_spans_reach_jaeger_over_otlp_tls(jaeger: Jaeger, protocol: str, endpoint_attr: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Many images set these; the injected CA must still be the one the exporter trusts.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca-bundle.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/nonexistent/ca-bundle.crt")
    service = f"sdk-test-{protocol.split('/')[0]}-{uuid.uuid4().hex[:8]}"
    handle = agentobs_sdk.configure({
        "OTEL_SERVICE_NAME": service,
        "OTEL_EXPORTER_OTLP_ENDPOINT": getattr(jaeger, endpoint_attr),
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_CERTIFICATE": str(jaeger.ca),
        "OTEL_RESOURCE_ATTRIBUTES": "k8s.namespace.name=team-a,k8s.pod.name=agent-0",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
        "AGENTOBS_AGENT_ID": "agent-0",
    }, json_logs=False)
    assert handle.exporting
    with agentobs_sdk.agent_run("researcher"):
        with agentobs_sdk.llm_call("gpt-4o", provider="openai") as call:
            call.record_usage(input_tokens=321, output_tokens=45, response_model="gpt-4o-2024-08-06")
        with pytest.raises(RuntimeError), agentobs_sdk.tool_call("web_search", call_id="c-1"):
            raise RuntimeError("rate limited")
    assert handle.force_flush(30_000)
    handle.shutdown()

    spans = _wait_for_spans(jaeger, service, {"invoke_agent researcher", "chat gpt-4o", "execute_tool web_search"})
    agent = _tags(spans["invoke_agent researcher"])
    assert agent["gen_ai.operation.name"] == "invoke_agent"
    assert agent["gen_ai.agent.name"] == "researcher"
    assert agent["gen_ai.agent.id"] == "agent-0"

    llm = _tags(spans["chat gpt-4o"])
    assert llm["gen_ai.operation.name"] == "chat"
    assert llm["gen_ai.provider.name"] == "openai"
    assert llm["gen_ai.request.model"] == "gpt-4o"
    assert llm["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert llm["gen_ai.usage.input_tokens"] == 321
    assert llm["gen_ai.usage.output_tokens"] == 45
    assert llm["span.kind"] == "client"

    tool = _tags(spans["execute_tool web_search"])
    assert tool["gen_ai.tool.name"] == "web_search"
    assert tool["gen_ai.tool.call.id"] == "c-1"
    assert tool["error.type"] == "RuntimeError"
    assert tool["otel.status_code"] == "ERROR"

    # One trace, parented as the agent ran it, with the injected resource on the process.
    trace_ids = {s["traceID"] for s in spans.values()}
    assert len(trace_ids) == 1
    (trace,) = [t for t in _traces(jaeger, service) if t["traceID"] in trace_ids]
    process = next(iter(trace["processes"].values()))
    assert process["serviceName"] == service
    resource = {t["key"]: t["value"] for t in process.get("tags", [])}
    assert resource["k8s.pod.name"] == "agent-0"
    root_id = spans["invoke_agent researcher"]["spanID"]
    for name in ("chat gpt-4o", "execute_tool web_search"):
        refs = spans[name].get("references", [])
        assert any(r["refType"] == "CHILD_OF" and r["spanID"] == root_id for r in refs), name


def test_thread_pool_work_and_streams_stay_in_the_agents_trace(jaeger: Jaeger) -> None:
    import concurrent.futures
    from collections.abc import Iterator

    service = f"sdk-test-threads-{uuid.uuid4().hex[:8]}"
    handle = agentobs_sdk.configure({
        "OTEL_SERVICE_NAME": service, "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.grpc_endpoint,
        "OTEL_EXPORTER_OTLP_CERTIFICATE": str(jaeger.ca), "AGENTOBS_AGENT_ID": "agent-0",
    }, json_logs=False)

    @agentobs_sdk.llm_call("stream-model", provider="fake")
    def stream() -> Iterator[str]:
        yield "a"
        yield "b"
        agentobs_sdk.record_llm_usage(input_tokens=3, output_tokens=2)

    def work(i: int) -> int:
        with agentobs_sdk.tool_call(f"pooled-{i}"):
            return i

    with agentobs_sdk.agent_run("threaded"), concurrent.futures.ThreadPoolExecutor(2) as pool:
        assert sorted(f.result() for f in [agentobs_sdk.submit(pool, work, i) for i in range(2)]) == [0, 1]
        assert list(stream()) == ["a", "b"]
    assert handle.force_flush(30_000)
    handle.shutdown()

    names = {"invoke_agent threaded", "execute_tool pooled-0", "execute_tool pooled-1", "chat stream-model"}
    spans = _wait_for_spans(jaeger, service, names)
    assert len({spans[n]["traceID"] for n in names}) == 1
    root_id = spans["invoke_agent threaded"]["spanID"]
    for name in names - {"invoke_agent threaded"}:
        assert any(r["spanID"] == root_id for r in spans[name].get("references", [])), name
    llm = _tags(spans["chat stream-model"])
    assert llm["gen_ai.usage.output_tokens"] == 2
    assert spans["chat stream-model"]["duration"] > 0
