"""`anthropic` releases that trace their own calls: with the SDK instrumenting the client, a call
is one span, not the library's span next to the SDK's with the same token usage."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentobs_sdk

import fake_llm

NATIVE_SCOPE = "com.anthropic.sdk.python"


@pytest.fixture
def fake() -> Iterator[fake_llm.FakeLLM]:
    with fake_llm.serve() as server:
        yield server


def test_an_anthropic_call_is_one_span_when_the_library_traces_itself(
        sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter, fake: fake_llm.FakeLLM) -> None:
    try:  # the library's own tracing, sent to the provider the agent's spans go to
        client = anthropic.Anthropic(base_url=fake.base_url, api_key="k", max_retries=0,
                                     open_telemetry={"tracer_provider": sdk.tracer_provider})
    except TypeError:
        pytest.skip("this anthropic release does not trace its own calls")
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    with agentobs_sdk.agent_run("weather"):
        client.messages.create(model="claude-sonnet-4", max_tokens=64, messages=messages)
        with agentobs_sdk.llm_call("claude-sonnet-4", provider="anthropic"):
            client.messages.create(model="claude-sonnet-4", max_tokens=64, messages=messages)
        with client.messages.create(model="claude-sonnet-4", max_tokens=64, messages=messages,
                                    stream=True) as stream:
            list(stream)
    client.close()
    finished = spans.get_finished_spans()
    native = [s.name for s in finished
              if s.instrumentation_scope is not None and s.instrumentation_scope.name == NATIVE_SCOPE]
    assert native == []
    assert [s.name for s in finished if s.name.startswith("chat ")] == ["chat claude-sonnet-4"] * 3
