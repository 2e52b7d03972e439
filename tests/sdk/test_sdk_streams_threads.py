"""Helpers on streams and in threads, errors counted once, and the SDK's on/off states:
OTEL_SDK_DISABLED, after shutdown(), and a conflicting second configure()."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import agentobs_sdk
from agentobs_sdk import config


class Boom(Exception):
    pass


def _one(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [s for s in spans.get_finished_spans() if s.name == name]
    assert len(found) == 1, [s.name for s in spans.get_finished_spans()]
    return found[0]


def _usage(sdk: agentobs_sdk.Handle, token_type: str) -> float | None:
    return sdk.metrics.sample("gen_ai_client_token_usage_sum", {
        "gen_ai_token_type": token_type, "gen_ai_operation_name": "chat", "gen_ai_provider_name": "fake",
        "gen_ai_request_model": "m", "gen_ai_response_model": ""})


# --- streaming -------------------------------------------------------------------------------------


def test_sync_generator_span_lasts_for_the_stream_and_counts_usage(
        sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    @agentobs_sdk.llm_call("m", provider="fake")
    def stream(n: int) -> Iterator[str]:
        for i in range(n):
            yield f"tok{i}"
        agentobs_sdk.record_llm_usage(input_tokens=7, output_tokens=n)

    with agentobs_sdk.agent_run("streamer"):
        gen = stream(3)
        assert next(gen) == "tok0"
        # Mid-stream: the span is still open, and not current in the consumer's code.
        assert not [s for s in spans.get_finished_spans() if s.name == "chat m"]
        assert agentobs_sdk.current_operation() is not None  # the agent run, not the LLM call
        assert not isinstance(agentobs_sdk.current_operation(), agentobs_sdk.LLMCall)
        assert list(gen) == ["tok1", "tok2"]
    llm = _one(spans, "chat m")
    assert llm.attributes is not None and llm.attributes["gen_ai.usage.output_tokens"] == 3
    assert llm.parent is not None and llm.parent.span_id == _one(spans, "invoke_agent streamer").context.span_id
    assert _usage(sdk, "output") == 3
    assert _usage(sdk, "input") == 7


def test_sync_generator_closed_early_ends_span_without_error(
        sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    @agentobs_sdk.llm_call("m", provider="fake")
    def stream() -> Iterator[int]:
        agentobs_sdk.record_llm_usage(input_tokens=2)
        yield from range(100)

    gen = stream()
    assert next(gen) == 0
    assert not spans.get_finished_spans()
    gen.close()
    llm = _one(spans, "chat m")
    assert llm.status.status_code == StatusCode.UNSET
    assert _usage(sdk, "input") == 2


def test_sync_generator_error_mid_stream_is_recorded(
        sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    @agentobs_sdk.tool_call("lines")
    def lines() -> Iterator[int]:
        yield 1
        raise Boom("disk gone")

    with pytest.raises(Boom):
        list(lines())
    tool = _one(spans, "execute_tool lines")
    assert tool.status.status_code == StatusCode.ERROR
    assert sdk.metrics.sample("agentobs_agent_tool_call_failures_total",
                              {"agent": "agent-7", "tool": "lines", "error_type": "Boom"}) == 1


def test_async_generator_gets_an_async_wrapper(sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    @agentobs_sdk.llm_call("m", provider="fake")
    async def stream(n: int) -> AsyncIterator[str]:
        for i in range(n):
            await asyncio.sleep(0.001)
            yield f"tok{i}"
        agentobs_sdk.record_llm_usage(input_tokens=5, output_tokens=n)

    async def consume() -> list[str]:
        async with agentobs_sdk.agent_run("async-streamer"):
            got = []
            async for item in stream(4):
                # The consumer's code between items does not run inside the LLM span.
                assert not isinstance(agentobs_sdk.current_operation(), agentobs_sdk.LLMCall)
                got.append(item)
            return got

    assert asyncio.run(consume()) == ["tok0", "tok1", "tok2", "tok3"]
    llm = _one(spans, "chat m")
    assert llm.end_time is not None and llm.start_time is not None
    assert (llm.end_time - llm.start_time) / 1e6 >= 3.0  # four sleeps of 1 ms happened inside it
    assert llm.parent is not None
    assert llm.parent.span_id == _one(spans, "invoke_agent async-streamer").context.span_id
    assert _usage(sdk, "output") == 4


def test_async_generator_closed_early(sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    @agentobs_sdk.llm_call("m", provider="fake")
    async def stream() -> AsyncIterator[int]:
        agentobs_sdk.record_llm_usage(input_tokens=9)
        i = 0
        while True:
            yield i
            i += 1

    async def take_two() -> list[int]:
        gen = stream()
        got = [await gen.__anext__(), await gen.__anext__()]
        assert not spans.get_finished_spans()
        await gen.aclose()
        return got

    assert asyncio.run(take_two()) == [0, 1]
    assert _one(spans, "chat m").status.status_code == StatusCode.UNSET
    assert _usage(sdk, "input") == 9


# --- threads ---------------------------------------------------------------------------------------


def test_context_follows_work_into_a_thread_pool(sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    def work(i: int) -> int:
        with agentobs_sdk.tool_call("fetch"):
            return i * 2

    with agentobs_sdk.agent_run("pooled"), concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [agentobs_sdk.submit(pool, work, i) for i in range(4)]
        mapped = list(pool.map(agentobs_sdk.in_context(work), range(4, 8)))
        assert [f.result() for f in futures] + mapped == [0, 2, 4, 6, 8, 10, 12, 14]
    with agentobs_sdk.agent_run("pooled2"), agentobs_sdk.ContextThreadPoolExecutor(2) as own:
        assert list(own.map(work, range(3))) == [0, 2, 4]

    run = _one(spans, "invoke_agent pooled")
    tools = [s for s in spans.get_finished_spans() if s.name == "execute_tool fetch"]
    assert len(tools) == 11
    in_first = [t for t in tools if t.context.trace_id == run.context.trace_id]
    assert len(in_first) == 8
    assert all(t.parent is not None and t.parent.span_id == run.context.span_id for t in in_first)
    m = sdk.metrics
    assert m.sample("agentobs_agent_tool_call_duration_seconds_count",
                    {"agent": "pooled", "tool": "fetch", "status": "ok"}) == 8
    assert m.sample("agentobs_agent_tool_call_duration_seconds_count",
                    {"agent": "pooled2", "tool": "fetch", "status": "ok"}) == 3
    assert m.sample("agentobs_agent_tool_call_duration_seconds_count",
                    {"agent": "agent-7", "tool": "fetch", "status": "ok"}) is None


def test_a_stream_belongs_to_the_run_that_called_it_wherever_it_is_read(
        sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    """A stream returned from inside an agent_run and read elsewhere (a worker thread, or a web
    framework's streaming response after the handler returned) is still that run's LLM call:
    its parent and its `agent` label are those of the call, not of the reader."""
    def record() -> None:
        call = agentobs_sdk.current_operation()
        assert isinstance(call, agentobs_sdk.LLMCall)
        call.record_usage(input_tokens=5, output_tokens=1)
        call.add_cost(0.25)  # the cost series is labelled with the call's agent

    @agentobs_sdk.llm_call("m", provider="fake")
    def stream() -> Iterator[int]:
        yield 1
        record()

    @agentobs_sdk.llm_call("m", provider="fake")
    async def astream() -> AsyncIterator[int]:
        yield 1
        record()

    with agentobs_sdk.agent_run("caller"):
        gen = stream()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            assert pool.submit(list, gen).result() == [1]  # no context carried: only the call's

    async def handler() -> AsyncIterator[int]:
        async with agentobs_sdk.agent_run("caller"):
            response = astream()
        return response  # read after the run's block, like a StreamingResponse

    async def serve() -> list[int]:
        return [i async for i in await handler()]

    assert asyncio.run(serve()) == [1]
    runs = [s for s in spans.get_finished_spans() if s.name == "invoke_agent caller"]
    calls = [s for s in spans.get_finished_spans() if s.name == "chat m"]
    assert len(runs) == len(calls) == 2
    for run, call in zip(runs, calls, strict=True):
        assert call.parent is not None and call.parent.span_id == run.context.span_id
    assert _usage(sdk, "input") == 10
    assert sdk.metrics.sample("agentobs_agent_cost_usd_total", {
        "agent": "caller", "gen_ai_provider_name": "fake", "gen_ai_request_model": "m"}) == 0.5


def test_stacked_stream_decorators_nest(sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    @agentobs_sdk.agent_run("outer")
    @agentobs_sdk.llm_call("m", provider="fake")
    def stream() -> Iterator[int]:
        yield 1
        yield 2

    gen = stream()
    assert not spans.get_finished_spans()  # nothing starts before the first item is read
    assert list(gen) == [1, 2]
    run, call = _one(spans, "invoke_agent outer"), _one(spans, "chat m")
    assert call.parent is not None and call.parent.span_id == run.context.span_id
    assert run.end_time is not None and call.end_time is not None and run.end_time >= call.end_time


def test_async_with_inside_an_async_generator_left_with_break(
        sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    """The README's alternative to the decorator. On `break` asyncio closes the generator in a
    task of its own: closing must not raise there, and the consumer's later operations must not
    be parented under (or record usage on) the LLM call that has ended."""
    loop_errors: list[dict[str, object]] = []

    async def astream() -> AsyncIterator[int]:
        async with agentobs_sdk.llm_call("m", provider="fake"):
            for i in range(5):
                await asyncio.sleep(0)
                yield i

    async def consume() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
        async with agentobs_sdk.agent_run("breaker"):
            async for i in astream():
                if i == 1:
                    break
            await asyncio.sleep(0.05)  # asyncio's finaliser closes the generator meanwhile
            assert not isinstance(agentobs_sdk.current_operation(), agentobs_sdk.LLMCall)
            with agentobs_sdk.tool_call("after"):
                pass

    asyncio.run(consume())
    assert loop_errors == []
    run, llm = _one(spans, "invoke_agent breaker"), _one(spans, "chat m")
    assert llm.parent is not None and llm.parent.span_id == run.context.span_id
    after = _one(spans, "execute_tool after")
    assert after.parent is not None and after.parent.span_id == run.context.span_id


# --- errors --------------------------------------------------------------------------------------


def test_one_exception_is_counted_once_across_nested_helpers(sdk: agentobs_sdk.Handle) -> None:
    for _ in range(10):
        with pytest.raises(Boom), agentobs_sdk.agent_run("nested"), agentobs_sdk.reasoning_step("s"), \
                agentobs_sdk.tool_call("t"):
            raise Boom()
    total = sum(sdk.metrics.sample("agentobs_agent_errors_total", {
        "agent": "nested", "gen_ai_operation_name": op, "error_type": "Boom"}) or 0
        for op in ("invoke_agent", "reasoning_step", "execute_tool"))
    assert total == 10
    assert sdk.metrics.sample("agentobs_agent_errors_total", {
        "agent": "nested", "gen_ai_operation_name": "execute_tool", "error_type": "Boom"}) == 10


def test_a_task_group_failure_is_counted_once_not_again_as_its_exception_group(
        sdk: agentobs_sdk.Handle) -> None:
    """asyncio.TaskGroup wraps the tool's exception in a new ExceptionGroup, which then crosses
    the agent run: still one failure, counted by the tool where it happened."""
    async def tool(name: str, fail: bool) -> None:
        async with agentobs_sdk.tool_call(name):
            await asyncio.sleep(0)
            if fail:
                raise Boom()

    async def run() -> None:
        async with agentobs_sdk.agent_run("grouped"), asyncio.TaskGroup() as group:
            group.create_task(tool("bad", True))
            group.create_task(tool("good", False))

    with pytest.raises(ExceptionGroup):
        asyncio.run(run())

    def errors(op: str, error_type: str) -> float:
        return sdk.metrics.sample("agentobs_agent_errors_total", {
            "agent": "grouped", "gen_ai_operation_name": op, "error_type": error_type}) or 0

    assert errors("execute_tool", "Boom") == 1
    assert errors("invoke_agent", "ExceptionGroup") == 0
    # A group whose failure no helper saw (raised outside any tool) is still counted once.
    with pytest.raises(ExceptionGroup), agentobs_sdk.agent_run("grouped"), agentobs_sdk.reasoning_step("s"):
        raise ExceptionGroup("plain", [Boom()])
    assert errors("reasoning_step", "ExceptionGroup") == 1
    assert errors("invoke_agent", "ExceptionGroup") == 0


# --- on / off -------------------------------------------------------------------------------------


def test_otel_sdk_disabled_turns_off_spans_and_metrics() -> None:
    exporter = InMemorySpanExporter()
    handle = agentobs_sdk.configure({"OTEL_SDK_DISABLED": "TRUE", "AGENTOBS_METRICS_PORT": "0"},
                                    json_logs=False, span_processors=[SimpleSpanProcessor(exporter)])
    assert handle.metrics_port is None  # nothing served
    with agentobs_sdk.agent_run("quiet"), agentobs_sdk.llm_call("m", provider="p") as call:
        call.record_usage(3, 4)
    assert exporter.get_finished_spans() == ()
    assert b"agentobs_agent_run_duration_seconds_count{" not in handle.metrics.exposition()
    assert handle.metrics.sample("agentobs_agent_run_duration_seconds_count",
                                 {"agent": "quiet", "status": "ok"}) is None


def test_otel_sdk_disabled_keeps_the_audit_trail_and_says_what_it_leaves(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "agentobs_sdk"):
        handle = agentobs_sdk.configure({"OTEL_SDK_DISABLED": "true", "AGENTOBS_METRICS_PORT": "9464",
                                         "AGENTOBS_AUDIT_DIR": str(tmp_path)}, json_logs=False)
    with agentobs_sdk.tool_call("search", audit=True, user="alice"):
        pass
    handle.shutdown()
    assert [r["action"] for r in agentobs_sdk.query(tmp_path)] == ["tool_call"]  # a compliance record
    said = caplog.text
    assert f"the audit trail in {tmp_path} stay on" in said
    # The pod's scrape annotations stay: the failing scrapes and their alert are explained.
    assert "/metrics is not served on port 9464" in said and "AgentObsAgentScrapeFailing" in said


def test_helpers_are_no_ops_after_shutdown() -> None:
    exporter = InMemorySpanExporter()
    handle = agentobs_sdk.configure({}, json_logs=False, span_processors=[SimpleSpanProcessor(exporter)])
    with agentobs_sdk.tool_call("before"):
        pass
    handle.shutdown()
    with agentobs_sdk.tool_call("after") as tool:
        assert not tool.span.is_recording()
    assert [s.name for s in exporter.get_finished_spans()] == ["execute_tool before"]
    assert config.was_shut_down()
    fresh = InMemorySpanExporter()  # shutdown() also shut the first exporter down
    again = agentobs_sdk.configure({}, json_logs=False, span_processors=[SimpleSpanProcessor(fresh)])
    assert not config.was_shut_down()
    with agentobs_sdk.tool_call("again"):
        pass
    assert [s.name for s in fresh.get_finished_spans()] == ["execute_tool again"]
    again.shutdown()


def test_second_configure_with_other_settings_raises(caplog: pytest.LogCaptureFixture) -> None:
    first = agentobs_sdk.configure({"OTEL_SERVICE_NAME": "a"}, json_logs=False)
    assert agentobs_sdk.configure({"OTEL_SERVICE_NAME": "a"}, json_logs=False) is first
    with pytest.raises(agentobs_sdk.ConfigurationError, match="service_name") as info:
        agentobs_sdk.configure({"OTEL_SERVICE_NAME": "b"}, json_logs=False)
    assert "shutdown()" in str(info.value)
    with pytest.raises(agentobs_sdk.ConfigurationError, match="json_logs"):
        agentobs_sdk.configure({"OTEL_SERVICE_NAME": "a"}, json_logs=True)
    assert agentobs_sdk.current_handle() is first
    with caplog.at_level(logging.DEBUG):
        first.shutdown()
