"""A stream the agent stops reading without closing it still reaches the exporter.

`for chunk in stream: ... break` leaves a generator held in a variable neither exhausted nor
closed; so does a process that exits mid-stream. Nothing then ends the stream's span before the
exporter shuts down, and the LLM call vanished from the trace. `shutdown()` (also the one that
runs at exit) ends such streams, marked `agentobs.stream.unfinished`, without keeping any
reference to the streams that end normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import subprocess
import sys
import textwrap
import weakref
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anthropic
import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import agentobs_sdk
from agentobs_sdk import instrument

import fake_llm

UNFINISHED = "agentobs.stream.unfinished"


def _chat(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]


def test_a_sync_stream_left_after_break_is_ended_at_shutdown(
        sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture) -> None:
    @agentobs_sdk.llm_call("m", provider="fake")
    def reply() -> Iterator[str]:
        agentobs_sdk.record_llm_usage(input_tokens=11)
        yield from ("a", "b", "c")

    with agentobs_sdk.agent_run("cli"):
        stream = reply()
        for chunk in stream:
            if chunk == "a":
                break  # the answer is good enough; `stream` is still referenced
    assert _chat(spans) == []
    with caplog.at_level(logging.WARNING):
        sdk.shutdown()
    (llm,) = _chat(spans)
    assert llm.attributes is not None and llm.attributes[UNFINISHED] is True
    assert llm.attributes["gen_ai.usage.input_tokens"] == 11
    assert llm.status.status_code == StatusCode.UNSET  # not an error, like closing it early
    assert llm.parent is not None  # still in the run's trace
    assert "1 stream(s) were neither read to the end nor closed" in caplog.text
    # The advice fits this stream: a bare `with reply()` raises TypeError (a generator is no
    # context manager), so the warning names what works for it.
    assert "contextlib.closing()" in caplog.text
    # Read or closed after shutdown: nothing more recorded, and no "end() on an ended span".
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert list(stream) == ["b", "c"]
    assert len(_chat(spans)) == 1
    assert not [r for r in caplog.records if "ended span" in r.getMessage()]


def test_an_async_stream_open_when_shutdown_runs_is_ended(spans: InMemorySpanExporter) -> None:
    @agentobs_sdk.llm_call("m", provider="fake")
    async def reply() -> AsyncIterator[int]:
        for i in range(10):
            yield i

    async def main() -> None:
        handle = agentobs_sdk.configure({}, json_logs=False, span_processors=[SimpleSpanProcessor(spans)])
        try:
            async with asyncio.timeout(5), agentobs_sdk.agent_run("async-cli"):
                stream = reply()
                assert await anext(stream) == 0
        finally:
            handle.shutdown()  # inside the loop, with `stream` still suspended
        assert [s.attributes and s.attributes.get(UNFINISHED) for s in _chat(spans)] == [True]
        await stream.aclose()  # asyncio.run would close it too: no second end

    asyncio.run(main())
    assert len(_chat(spans)) == 1


def test_streams_that_end_normally_are_not_kept(sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    @agentobs_sdk.llm_call("m", provider="fake")
    def reply() -> Iterator[int]:
        yield from range(3)

    refs = []
    for _ in range(3):
        stream = reply()
        assert next(stream) == 0
        (op,) = instrument._open_streams  # open while it is read
        refs.append(weakref.ref(op))
        del op
        assert sum(1 for _ in stream) == 2
    dropped = reply()
    next(dropped)
    del dropped, stream  # dropped unread: its finalizer closes it
    gc.collect()
    assert len(instrument._open_streams) == 0
    assert all(ref() is None for ref in refs)
    assert len(_chat(spans)) == 4
    assert [s for s in _chat(spans) if s.attributes and UNFINISHED in s.attributes] == []


def test_an_instrumented_client_stream_kept_unread_is_ended_at_shutdown(
        sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    with fake_llm.serve() as fake:
        client = openai.OpenAI(base_url=fake.base_url + "/v1", api_key="test-key", max_retries=0)

        @agentobs_sdk.llm_call("gpt-4o", provider="openai")
        def ask() -> openai.Stream[object]:
            return client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                                  stream=True)

        stream = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                                stream=True)
        @agentobs_sdk.llm_call("gpt-4o", provider="openai")
        def relay() -> Iterator[str]:
            inner = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                                   stream=True)
            yield "thinking"  # the consumer stops here, before the client stream is read
            yield from (c.choices[0].delta.content or "" for c in inner if c.choices)

        next(iter(stream))
        returned = ask()  # returned by a decorated function, never read
        relayed = relay()
        assert next(relayed) == "thinking"
        sdk.shutdown()
        assert [s.attributes and s.attributes.get(UNFINISHED) for s in _chat(spans)] == [True, True, True]
        stream.close()
        returned.close()
        relayed.close()
        client.close()
    assert len(_chat(spans)) == 3


def test_a_partly_read_client_stream_ended_at_shutdown_keeps_what_its_chunks_said(
        sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter) -> None:
    with fake_llm.serve() as fake:
        claude = anthropic.Anthropic(base_url=fake.base_url, api_key="test-key", max_retries=0)
        gpt = openai.OpenAI(base_url=fake.base_url + "/v1", api_key="test-key", max_retries=0)
        events = claude.messages.create(model="claude-sonnet-4", max_tokens=64, stream=True,
                                        messages=[{"role": "user", "content": "hi"}])
        assert next(iter(events)).type == "message_start"  # usage and model so far; the rest unread
        chunks = gpt.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                             stream=True)
        next(iter(chunks))
        unread = gpt.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                             stream=True)
        sdk.shutdown()
        ended = [dict(s.attributes or {}) for s in _chat(spans)]
        for stream in (events, chunks, unread):
            stream.close()
        claude.close()
        gpt.close()
    usage = fake_llm.ANTHROPIC_USAGE
    [claude_span] = [a for a in ended if a["gen_ai.provider.name"] == "anthropic"]
    assert claude_span[UNFINISHED] is True
    assert claude_span["gen_ai.response.model"] == "claude-sonnet-4-20250514"
    assert claude_span["gen_ai.usage.input_tokens"] == (usage["input_tokens"] + usage["cache_read_input_tokens"]
                                                         + usage["cache_creation_input_tokens"])
    assert claude_span["gen_ai.usage.cache_read.input_tokens"] == usage["cache_read_input_tokens"]
    assert sdk.metrics.sample("gen_ai_client_token_usage_sum", {
        "gen_ai_token_type": "input", "gen_ai_operation_name": "chat", "gen_ai_provider_name": "anthropic",
        "gen_ai_request_model": "claude-sonnet-4", "gen_ai_response_model": "claude-sonnet-4-20250514"}) == 69
    gpt_spans = [a for a in ended if a["gen_ai.provider.name"] == "openai"]
    [read] = [a for a in gpt_spans if "gen_ai.response.model" in a]
    [unread_span] = [a for a in gpt_spans if "gen_ai.response.model" not in a]
    assert read["gen_ai.response.model"] == "gpt-4o-2024-08-06" and read[UNFINISHED] is True
    # The unread one said nothing: no finish reasons made up for it.
    assert unread_span[UNFINISHED] is True and "gen_ai.response.finish_reasons" not in unread_span


AGENT = """
import agentobs_sdk as aobs
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

aobs.configure({}, json_logs=False, span_processors=[SimpleSpanProcessor(ConsoleSpanExporter())])

@aobs.llm_call("m", provider="fake")
def reply():
    yield from ("yes", "and", "more")

with aobs.agent_run("one-shot"):
    answer = reply()
    print("answer:", next(answer))
# exits here: no shutdown() call, `answer` still open
"""


def test_a_cli_agent_exiting_mid_stream_exports_the_stream(tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(AGENT))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env,
                          check=True)
    out = done.stdout
    assert "answer: yes" in out
    decoder = json.JSONDecoder()
    names = {}
    pos = out.index("{")
    while pos < len(out):
        span, end = decoder.raw_decode(out, pos)
        names[span["name"]] = span
        pos = out.find("{", end)
        if pos < 0:
            break
    assert set(names) == {"invoke_agent one-shot", "chat m"}, out
    assert names["chat m"]["attributes"][UNFINISHED] is True
    assert "were neither read to the end nor closed" in done.stderr


def test_contextlib_closing_as_the_shutdown_warning_advises_ends_the_span_at_once(
        sdk: agentobs_sdk.Handle, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture) -> None:
    @agentobs_sdk.llm_call("m", provider="fake")
    def reply() -> Iterator[str]:
        yield from ("a", "b", "c")

    with agentobs_sdk.agent_run("cli"), contextlib.closing(reply()) as stream:
        for _chunk in stream:
            break
    assert len(_chat(spans)) == 1
    with caplog.at_level(logging.WARNING):
        sdk.shutdown()
    assert "neither read to the end nor closed" not in caplog.text
