"""A client call made inside the caller's own `llm_call` is one model call, not two.

The README's quickstart wraps the model call in `with aobs.llm_call(...)`; with the `openai` or
`anthropic` client installed, `configure()` also instruments the client. The call must then be
traced once and its tokens counted once: the caller's `llm_call` takes what the client's request
and response say. The real client libraries talk to the loopback stand-in of tests/sdk/fake_llm.py;
spans are kept in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentobs_sdk

import fake_llm

PROMPT = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture
def fake() -> Iterator[fake_llm.FakeLLM]:
    with fake_llm.serve() as server:
        yield server


def _token_observations(handle: agentobs_sdk.Handle, token_type: str) -> float:
    """How many token-usage observations of `token_type` the histogram holds, over all labels."""
    total = 0.0
    for family in handle.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "gen_ai_client_token_usage_count" and sample.labels["gen_ai_token_type"] == token_type:
                total += sample.value
    return total


def _chat_spans(spans: InMemorySpanExporter) -> list[dict[str, object]]:
    return [dict(s.attributes or {}) for s in spans.get_finished_spans() if s.name.startswith("chat ")]


def test_openai_call_inside_llm_call_is_traced_and_counted_once(
        sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter, fake: fake_llm.FakeLLM) -> None:
    assert "openai" in sdk.instrumented_clients
    client = openai.OpenAI(base_url=fake.base_url + "/v1", api_key="test-key", max_retries=0)
    # The quickstart's pattern.
    with agentobs_sdk.agent_run("researcher"), agentobs_sdk.llm_call("gpt-4o", provider="openai") as call:
        reply = client.chat.completions.create(model="gpt-4o", messages=PROMPT)
        call.record_usage(input_tokens=reply.usage.prompt_tokens, output_tokens=reply.usage.completion_tokens)
    client.close()

    (chat,) = _chat_spans(spans)
    assert chat["gen_ai.usage.input_tokens"] == fake_llm.OPENAI_USAGE["prompt_tokens"]
    assert chat["gen_ai.response.model"] == "gpt-4o-2024-08-06"  # what the response said
    assert chat["server.address"] == "127.0.0.1"
    assert _token_observations(sdk, "input") == 1
    assert _token_observations(sdk, "output") == 1


def test_streams_and_coroutines_inside_llm_call_are_counted_once(
        sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter, fake: fake_llm.FakeLLM) -> None:
    client = openai.OpenAI(base_url=fake.base_url + "/v1", api_key="test-key", max_retries=0)

    @agentobs_sdk.llm_call("gpt-4o", provider="openai")  # the README's streaming pattern
    def stream_reply() -> Iterator[str]:
        for chunk in client.chat.completions.create(model="gpt-4o", messages=PROMPT, stream=True,
                                                    stream_options={"include_usage": True}):
            if chunk.choices:
                yield chunk.choices[0].delta.content or ""

    @agentobs_sdk.llm_call("claude-sonnet-4", provider="anthropic")
    async def ask_claude() -> None:
        aclient = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="test-key", max_retries=0)
        await aclient.messages.create(model="claude-sonnet-4", max_tokens=50, messages=PROMPT)
        await aclient.close()

    assert "".join(stream_reply()).strip() == fake_llm.ANSWER
    asyncio.run(ask_claude())
    client.close()

    streamed, claude = _chat_spans(spans)
    assert streamed["gen_ai.usage.output_tokens"] == fake_llm.OPENAI_USAGE["completion_tokens"]
    assert claude["gen_ai.usage.output_tokens"] == fake_llm.ANTHROPIC_USAGE["output_tokens"]
    assert _token_observations(sdk, "output") == 2


def test_a_second_client_call_in_one_llm_call_is_its_own_call(
        sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter, fake: fake_llm.FakeLLM) -> None:
    client = openai.OpenAI(base_url=fake.base_url + "/v1", api_key="test-key", max_retries=0)
    with agentobs_sdk.llm_call("gpt-4o", provider="openai"):
        client.chat.completions.create(model="gpt-4o", messages=PROMPT)
        client.chat.completions.create(model="gpt-4o", messages=PROMPT)  # e.g. a retry
    with pytest.raises(openai.RateLimitError), agentobs_sdk.llm_call("error-429", provider="openai"):
        client.chat.completions.create(model="error-429", messages=PROMPT)
    client.close()

    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["chat gpt-4o", "chat gpt-4o", "chat error-429"]
    inner, outer = finished[0], finished[1]
    assert inner.parent is not None and inner.parent.span_id == outer.context.span_id
    assert _token_observations(sdk, "input") == 2
    # The failed call is the caller's span, failed once and counted once.
    assert finished[2].attributes is not None and finished[2].attributes["error.type"] == "RateLimitError"
    assert sdk.metrics.sample("agentobs_agent_errors_total", {"agent": "agent-7", "gen_ai_operation_name": "chat",
                                                              "error_type": "RateLimitError"}) == 1


def test_a_decorated_function_returning_the_client_stream_records_what_the_stream_says(
        sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter, fake: fake_llm.FakeLLM) -> None:
    # `return client...create(stream=True)` from a decorated function: the function's llm_call
    # ends before the caller reads the stream. It used to end there, with no tokens, no response
    # model and no time to first chunk; the chunks read later were dropped.
    client = openai.OpenAI(base_url=fake.base_url + "/v1", api_key="test-key", max_retries=0)
    aclient = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="test-key", max_retries=0)

    @agentobs_sdk.llm_call("gpt-4o", provider="openai")
    def ask() -> openai.Stream[Any]:
        return client.chat.completions.create(model="gpt-4o", messages=PROMPT, stream=True,
                                              stream_options={"include_usage": True})

    @agentobs_sdk.llm_call("claude-sonnet-4", provider="anthropic")
    async def ask_claude() -> anthropic.AsyncStream[Any]:
        return await aclient.messages.create(model="claude-sonnet-4", max_tokens=50, messages=PROMPT,
                                             stream=True)

    async def read_claude() -> int:
        return len([event async for event in await ask_claude()])

    with agentobs_sdk.agent_run("streamer"):
        text = "".join(c.choices[0].delta.content or "" for c in ask() if c.choices)
        assert asyncio.run(read_claude()) > 0
    assert text.strip() == fake_llm.ANSWER
    client.close()
    asyncio.run(aclient.close())

    gpt, claude = _chat_spans(spans)
    assert gpt["gen_ai.usage.output_tokens"] == fake_llm.OPENAI_USAGE["completion_tokens"]
    assert gpt["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert float(str(gpt["gen_ai.response.time_to_first_chunk"])) >= fake_llm.FIRST_CHUNK_DELAY_S
    assert claude["gen_ai.usage.output_tokens"] == fake_llm.ANTHROPIC_USAGE["output_tokens"]
    assert _token_observations(sdk, "output") == 2  # one call each, counted once
    ended = {s.name: s.end_time or 0 for s in spans.get_finished_spans()}
    assert ended["chat gpt-4o"] <= ended["invoke_agent streamer"]


def test_a_stream_broken_off_inside_llm_call_ends_with_the_block(
        sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter, fake: fake_llm.FakeLLM) -> None:
    client = openai.OpenAI(base_url=fake.base_url + "/v1", api_key="test-key", max_retries=0)
    with agentobs_sdk.llm_call("gpt-4o", provider="openai"):
        stream = client.chat.completions.create(model="gpt-4o", messages=PROMPT, stream=True)
        for _ in stream:
            break
    assert [s.name for s in spans.get_finished_spans()] == ["chat gpt-4o"]  # ended by the block
    stream.close()
    client.close()
    assert len(spans.get_finished_spans()) == 1
