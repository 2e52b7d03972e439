"""Cancellation is not failure: operations cancelled by a TaskGroup sibling's failure, a
`task.cancel()` or an expiring `asyncio.timeout` end with span status unset, marked
`agentobs.cancelled`, recorded with status "cancelled" (error_type empty), and not counted in
agentobs_agent_errors_total; the code around a missed deadline still fails with TimeoutError."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import agentobs_sdk
from agentobs_sdk.audit import query


class Boom(Exception):
    pass


@pytest.fixture
def dup(spans: InMemorySpanExporter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[agentobs_sdk.Handle]:
    """Both metric vocabularies (v1.41.0 with `status`, latest with `error_type`) and an audit trail."""
    handle = agentobs_sdk.configure(
        {"OTEL_SERVICE_NAME": "test-agent", "AGENTOBS_AGENT_ID": "agent-7",
         "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental/dup",
         "AGENTOBS_AUDIT_DIR": str(tmp_path_factory.mktemp("audit"))},
        json_logs=False, span_processors=[SimpleSpanProcessor(spans)])
    yield handle
    handle.shutdown()


def _span(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    [span] = [s for s in spans.get_finished_spans() if s.name == name]
    return span


def _errors(handle: agentobs_sdk.Handle) -> list[tuple[str, str]]:
    return sorted((s.labels["gen_ai_operation_name"], s.labels["error_type"])
                  for f in handle.metrics.registry.collect() for s in f.samples
                  if s.name == "agentobs_agent_errors_total" and s.value)


def _tool_count(handle: agentobs_sdk.Handle, tool: str, status: str) -> float | None:
    return handle.metrics.sample("agentobs_agent_tool_call_duration_seconds_count",
                                 {"agent": "planner", "tool": tool, "status": status})


def _cancelled(span: ReadableSpan) -> None:
    assert span.status.status_code == StatusCode.UNSET, span.name
    attrs = dict(span.attributes or {})
    assert attrs.get("agentobs.cancelled") is True, span.name
    assert "error.type" not in attrs, span.name
    assert not [e for e in span.events if e.name == "exception"], span.name


def test_one_failure_in_a_task_group_is_one_error(dup: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    async def tool(name: str, fail: bool) -> None:
        async with agentobs_sdk.tool_call(name, audit=True):
            if fail:
                await asyncio.sleep(0.01)
                raise Boom()
            await asyncio.sleep(10)

    async def main() -> None:
        async with agentobs_sdk.agent_run("planner"), asyncio.TaskGroup() as group:
            group.create_task(tool("fails", True))
            group.create_task(tool("sibling-a", False))
            group.create_task(tool("sibling-b", False))

    with pytest.raises(ExceptionGroup):
        asyncio.run(main())
    # The failing tool counts once; the run it escapes is the group's, already counted inside.
    assert _errors(dup) == [("execute_tool", "Boom")]
    assert _span(spans, "execute_tool fails").status.status_code == StatusCode.ERROR
    for sibling in ("sibling-a", "sibling-b"):
        _cancelled(_span(spans, f"execute_tool {sibling}"))
        assert _tool_count(dup, sibling, "cancelled") == 1
        assert _tool_count(dup, sibling, "error") is None
        assert dup.metrics.sample("agentobs_agent_tool_call_failures_total",
                                  {"agent": "planner", "tool": sibling, "error_type": "CancelledError"}) is None
        # The semantic-convention family: error_type empty, as on the span.
        assert dup.metrics.sample("gen_ai_execute_tool_duration_seconds_count",
                                  {"gen_ai_agent_name": "planner", "gen_ai_tool_name": sibling,
                                   "gen_ai_tool_type": "function", "error_type": ""}) == 1
    assert _tool_count(dup, "fails", "error") == 1
    assert dup.audit is not None
    results = {r["resource"]: r["result"] for r in query(dup.audit.directory, action="tool_call")}
    assert results == {"fails": "error", "sibling-a": "cancelled", "sibling-b": "cancelled"}


def test_stop_button_cancels_without_error(dup: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    started = asyncio.Event()

    async def run() -> None:
        async with agentobs_sdk.agent_run("planner"), agentobs_sdk.llm_call("m", provider="p"):
            started.set()
            await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(run())
        await started.wait()
        task.cancel()  # the user's stop button
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert _errors(dup) == []
    _cancelled(_span(spans, "invoke_agent planner"))
    _cancelled(_span(spans, "chat m"))
    assert dup.metrics.sample("agentobs_agent_run_duration_seconds_count",
                              {"agent": "planner", "status": "cancelled"}) == 1
    assert dup.metrics.sample("agentobs_agent_run_duration_seconds_count",
                              {"agent": "planner", "status": "error"}) is None
    assert dup.metrics.sample("gen_ai_invoke_agent_duration_seconds_count",
                              {"gen_ai_agent_name": "planner", "error_type": ""}) == 1


def test_timeout_cancels_inside_and_fails_around(dup: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    @agentobs_sdk.reasoning_step("slow")
    async def slow() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        async with agentobs_sdk.agent_run("planner"):
            async with asyncio.timeout(0.01):
                await slow()

    with pytest.raises(TimeoutError):
        asyncio.run(main())
    _cancelled(_span(spans, "reasoning_step slow"))
    run = _span(spans, "invoke_agent planner")
    assert run.status.status_code == StatusCode.ERROR  # its own deadline, missed: a failure
    assert (run.attributes or {}).get("error.type") == "TimeoutError"
    assert _errors(dup) == [("invoke_agent", "TimeoutError")]
    assert dup.metrics.sample("agentobs_agent_run_duration_seconds_count",
                              {"agent": "planner", "status": "error"}) == 1


def test_cancelled_decision_is_not_taken(dup: agentobs_sdk.Handle) -> None:
    async def decide() -> None:
        async with agentobs_sdk.decision("route", choice="a", audit=True):
            await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.create_task(decide())
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert dup.metrics.sample("agentobs_agent_decisions_total", {"agent": "agent-7", "decision": "route"}) is None
    assert dup.audit is not None
    assert [(r["result"], r["details"]["choice"]) for r in query(dup.audit.directory, action="decision")] \
        == [("cancelled", "a")], "what was about to be decided stays on record"
