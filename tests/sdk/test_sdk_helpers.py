"""Helpers: spans, attributes and metrics for agent runs, LLM calls, tools, steps and decisions,
as sync/async context managers and decorators, with exceptions recorded and re-raised."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import agentobs_sdk
from agentobs_sdk.audit import AuditError


class Boom(Exception):
    pass


def _by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {s.name: s for s in exporter.get_finished_spans()}


def test_agent_run_llm_and_tool_spans(sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    with agentobs_sdk.agent_run("planner", conversation_id="conv-1") as run:
        with agentobs_sdk.llm_call("gpt-4o", provider="openai") as call:
            call.record_usage(input_tokens=120, output_tokens=30, response_model="gpt-4o-2024-08-06")
            call.set_finish_reasons(["stop"])
            call.add_cost(0.0042)
        with agentobs_sdk.tool_call("search", call_id="call-9"):
            pass
        run.set("custom.attr", "v")
    got = _by_name(spans)
    agent = got["invoke_agent planner"]
    assert agent.attributes is not None
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.agent.name"] == "planner"
    assert agent.attributes["gen_ai.agent.id"] == "agent-7"
    assert agent.attributes["gen_ai.conversation.id"] == "conv-1"
    assert agent.attributes["custom.attr"] == "v"

    llm = got["chat gpt-4o"]
    assert llm.kind == SpanKind.CLIENT
    assert llm.parent is not None and llm.parent.span_id == agent.context.span_id
    attrs = dict(llm.attributes or {})
    for key, value in {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                       "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
                       "gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 30}.items():
        assert attrs[key] == value, key
    assert tuple(attrs["gen_ai.response.finish_reasons"]) == ("stop",)  # type: ignore[arg-type]

    tool = got["execute_tool search"]
    assert tool.attributes is not None
    assert tool.attributes["gen_ai.tool.name"] == "search"
    assert tool.attributes["gen_ai.tool.call.id"] == "call-9"
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.status.status_code == StatusCode.UNSET

    m = sdk.metrics
    common = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt-4o",
              "gen_ai_response_model": "gpt-4o-2024-08-06"}
    assert m.sample("gen_ai_client_token_usage_sum", {**common, "gen_ai_token_type": "input"}) == 120
    assert m.sample("gen_ai_client_token_usage_sum", {**common, "gen_ai_token_type": "output"}) == 30
    assert m.sample("gen_ai_client_token_usage_bucket", {**common, "gen_ai_token_type": "input", "le": "256.0"}) == 1
    assert m.sample("gen_ai_client_token_usage_bucket", {**common, "gen_ai_token_type": "input", "le": "64.0"}) == 0
    assert m.sample("gen_ai_client_operation_duration_seconds_count", {**common, "error_type": ""}) == 1
    assert m.sample("agentobs_agent_cost_usd_total", {"agent": "planner", "gen_ai_provider_name": "openai",
                                                      "gen_ai_request_model": "gpt-4o"}) == pytest.approx(0.0042)
    assert m.sample("agentobs_agent_tool_call_duration_seconds_count",
                    {"agent": "planner", "tool": "search", "status": "ok"}) == 1
    assert m.sample("agentobs_agent_run_duration_seconds_count", {"agent": "planner", "status": "ok"}) == 1


def test_exceptions_are_recorded_counted_and_reraised(sdk: agentobs_sdk.Handle,
                                                      spans: InMemorySpanExporter) -> None:
    with (pytest.raises(Boom, match="tool broke") as info, agentobs_sdk.agent_run("worker"),
          agentobs_sdk.tool_call("fetch")):
        raise Boom("tool broke")
    assert type(info.value) is Boom
    got = _by_name(spans)
    for name in ("execute_tool fetch", "invoke_agent worker"):
        span = got[name]
        assert span.status.status_code == StatusCode.ERROR
        assert span.attributes is not None and span.attributes["error.type"] == "Boom"
        events = [e for e in span.events if e.name == "exception"]
        assert len(events) == 1, name  # recorded once, not twice by the SDK and OTel
        assert events[0].attributes is not None and events[0].attributes["exception.message"] == "tool broke"
    m = sdk.metrics
    assert m.sample("agentobs_agent_tool_call_failures_total",
                    {"agent": "worker", "tool": "fetch", "error_type": "Boom"}) == 1
    assert m.sample("agentobs_agent_errors_total",
                    {"agent": "worker", "gen_ai_operation_name": "execute_tool", "error_type": "Boom"}) == 1
    # counted once, where it happened, not again by the enclosing agent run
    assert m.sample("agentobs_agent_errors_total",
                    {"agent": "worker", "gen_ai_operation_name": "invoke_agent", "error_type": "Boom"}) is None
    assert m.sample("agentobs_agent_run_duration_seconds_count", {"agent": "worker", "status": "error"}) == 1


def test_llm_error_sets_error_type_on_duration(sdk: agentobs_sdk.Handle) -> None:
    with pytest.raises(TimeoutError), agentobs_sdk.llm_call("claude", provider="anthropic"):
        raise TimeoutError("slow")
    assert sdk.metrics.sample("gen_ai_client_operation_duration_seconds_count", {
        "gen_ai_operation_name": "chat", "gen_ai_provider_name": "anthropic", "gen_ai_request_model": "claude",
        "gen_ai_response_model": "", "error_type": "TimeoutError"}) == 1


def test_tool_failure_without_exception(sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    with agentobs_sdk.tool_call("db") as tool:
        tool.fail("not_found")
    (span,) = spans.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert sdk.metrics.sample("agentobs_agent_tool_call_failures_total",
                              {"agent": "agent-7", "tool": "db", "error_type": "not_found"}) == 1


def test_a_tool_failure_described_in_free_text_is_one_series(sdk: agentobs_sdk.Handle,
                                                              spans: InMemorySpanExporter) -> None:
    reasons = [f"GET https://api.example.com/items/{i} returned 404" for i in range(3)]
    for reason in reasons:
        with agentobs_sdk.tool_call("fetch") as tool:
            tool.fail(reason)
    with agentobs_sdk.tool_call("fetch") as tool:
        tool.fail(error_type="http.404")
    assert sdk.metrics.sample("agentobs_agent_tool_call_failures_total",
                              {"agent": "agent-7", "tool": "fetch", "error_type": "_OTHER"}) == 3
    assert sdk.metrics.sample("agentobs_agent_tool_call_failures_total",
                              {"agent": "agent-7", "tool": "fetch", "error_type": "http.404"}) == 1
    assert b"api.example.com" not in sdk.metrics.exposition()
    finished = spans.get_finished_spans()
    assert [s.status.description for s in finished] == [*reasons, "http.404"]
    assert [(s.attributes or {})["error.type"] for s in finished] == ["_OTHER"] * 3 + ["http.404"]


def test_decorators_sync_and_async(sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    @agentobs_sdk.tool_call("add")
    def add(a: int, b: int) -> int:
        return a + b

    @agentobs_sdk.llm_call("small-model", provider="local", operation="text_completion")
    async def complete(prompt: str) -> str:
        agentobs_sdk.record_llm_usage(input_tokens=len(prompt), output_tokens=2)
        await asyncio.sleep(0)
        return "ok"

    @agentobs_sdk.agent_run("async-agent")
    async def run() -> str:
        assert add(2, 3) == 5
        return await complete("abcd")

    @agentobs_sdk.tool_call("explode")
    async def explode() -> None:
        await asyncio.sleep(0)
        raise Boom("async boom")

    assert run.__name__ == "run"
    assert asyncio.run(run()) == "ok"
    with pytest.raises(Boom, match="async boom"):
        asyncio.run(explode())

    @agentobs_sdk.reasoning_step("sync-fail")
    def fail_sync() -> None:
        raise Boom("sync boom")

    with pytest.raises(Boom, match="sync boom"):
        fail_sync()

    got = _by_name(spans)
    root = got["invoke_agent async-agent"]
    assert got["execute_tool add"].parent is not None
    assert got["execute_tool add"].parent.span_id == root.context.span_id
    completion = got["text_completion small-model"]
    assert completion.parent is not None and completion.parent.span_id == root.context.span_id
    assert completion.attributes is not None and completion.attributes["gen_ai.usage.input_tokens"] == 4
    assert got["execute_tool explode"].status.status_code == StatusCode.ERROR
    assert got["reasoning_step sync-fail"].status.status_code == StatusCode.ERROR


def test_async_context_managers_keep_concurrent_tasks_apart(sdk: agentobs_sdk.Handle,
                                                            spans: InMemorySpanExporter) -> None:
    shared = agentobs_sdk.tool_call("shared")  # one instrument object used by many tasks at once

    async def one(i: int) -> None:
        async with agentobs_sdk.agent_run(f"agent-{i}"), shared as tool:
            await asyncio.sleep(0.01 * (3 - i))
            tool.set("task", i)

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(3)))

    asyncio.run(main())
    finished = spans.get_finished_spans()
    runs = {s.name: s for s in finished if s.name.startswith("invoke_agent")}
    tools = [s for s in finished if s.name == "execute_tool shared"]
    assert len(tools) == 3
    for tool in tools:
        assert tool.attributes is not None
        i = tool.attributes["task"]
        assert tool.parent is not None and tool.parent.span_id == runs[f"invoke_agent agent-{i}"].context.span_id
        assert sdk.metrics.sample("agentobs_agent_tool_call_duration_seconds_count",
                                  {"agent": f"agent-{i}", "tool": "shared", "status": "ok"}) == 1


def test_decision_and_reasoning_step(sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    with agentobs_sdk.agent_run("router"):
        with agentobs_sdk.reasoning_step("plan", index=0):
            pass
        with agentobs_sdk.decision("route", alternatives=["search", "answer"]) as d:
            d.choose("search", 0.8, rationale="needs fresh data")
    got = _by_name(spans)
    dec = got["decision route"]
    assert dec.attributes is not None
    assert dec.attributes["agentobs.decision.choice"] == "search"
    assert dec.attributes["agentobs.decision.confidence"] == 0.8
    assert tuple(dec.attributes["agentobs.decision.alternatives"]) == ("search", "answer")  # type: ignore[arg-type]
    step = got["reasoning_step plan"]
    assert step.attributes is not None and step.attributes["agentobs.reasoning.index"] == 0
    m = sdk.metrics
    assert m.sample("agentobs_agent_decisions_total", {"agent": "router", "decision": "route"}) == 1
    assert m.sample("agentobs_agent_decision_confidence_sum", {"agent": "router", "decision": "route"}) == 0.8
    assert m.sample("agentobs_agent_reasoning_steps_total", {"agent": "router"}) == 1


@pytest.mark.parametrize("bad", [-0.1, 1.01, float("nan")])
def test_decision_confidence_must_be_a_probability(sdk: agentobs_sdk.Handle, bad: float) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        agentobs_sdk.decision("d", confidence=bad)
    with pytest.raises(ValueError, match=r"\[0, 1\]"), agentobs_sdk.decision("d") as d:
        d.choose("x", bad)


def test_helpers_work_without_configure() -> None:
    assert agentobs_sdk.current_handle() is None

    @agentobs_sdk.tool_call("t")
    def f() -> int:
        return 1

    assert f() == 1
    with pytest.raises(Boom), agentobs_sdk.agent_run("unconfigured"):
        raise Boom()


def test_audited_tool_call_and_decision(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    handle = agentobs_sdk.configure({"AGENTOBS_AUDIT_DIR": str(tmp_path), "AGENTOBS_AGENT_ID": "aud"},
                                    json_logs=False, span_processors=[SimpleSpanProcessor(exporter)])
    with agentobs_sdk.agent_run("auditor"):
        with agentobs_sdk.tool_call("transfer", audit=True, user="alice"):
            pass
        with pytest.raises(Boom), agentobs_sdk.tool_call("transfer", audit=True, user="bob"):
            raise Boom()
        with agentobs_sdk.decision("approve", choice="yes", confidence=0.9, audit=True, user="alice"):
            pass
    handle.shutdown()
    records = agentobs_sdk.query(tmp_path)
    assert [(r["action"], r["user"], r["result"]) for r in records] == [
        ("tool_call", "alice", "ok"), ("tool_call", "bob", "error"), ("decision", "alice", "yes")]
    assert all(r["agent"] == "auditor" for r in records)
    assert records[2]["details"]["confidence"] == 0.9
    trace_ids = {format(s.context.trace_id, "032x") for s in exporter.get_finished_spans()}
    assert records[0]["details"]["trace_id"] in trace_ids
    assert agentobs_sdk.verify(tmp_path).ok


def test_failed_audit_append_is_raised_unless_the_block_already_failed(tmp_path: Path) -> None:
    handle = agentobs_sdk.configure({"AGENTOBS_AUDIT_DIR": str(tmp_path)}, json_logs=False)
    assert handle.audit is not None
    handle.audit.close()  # every later append fails
    with pytest.raises(AuditError, match="closed"), agentobs_sdk.decision("d", choice="x", audit=True):
        pass
    with pytest.raises(Boom), agentobs_sdk.tool_call("t", audit=True):
        raise Boom()  # the agent's own error wins over the audit failure


def test_sys_exit_0_inside_a_run_is_not_a_failure(sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    # A CLI agent that is done calls sys.exit() from inside its run; only a failing exit code fails it.
    for code in (None, 0, 3):
        with pytest.raises(SystemExit), agentobs_sdk.agent_run(f"cli-{code}"), agentobs_sdk.tool_call("t"):
            raise SystemExit(code)
    got = _by_name(spans)
    assert got["invoke_agent cli-None"].status.status_code == StatusCode.UNSET
    assert got["invoke_agent cli-0"].status.status_code == StatusCode.UNSET
    assert got["invoke_agent cli-3"].status.status_code == StatusCode.ERROR
    ok = sdk.metrics.sample("agentobs_agent_run_duration_seconds_count", {"agent": "cli-0", "status": "ok"})
    assert ok == 1
    errors = [s for f in sdk.metrics.registry.collect() for s in f.samples
              if s.name == "agentobs_agent_errors_total" and s.value]
    assert [(s.labels["agent"], s.labels["error_type"]) for s in errors] == [("cli-3", "SystemExit")]
