"""Content capture (off by default, redaction hook, size cap) and cost from a price table."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentobs_sdk
from agentobs_sdk import content, pricing

MESSAGES = [{"role": "user", "parts": [{"type": "text", "content": "my card is 4111 1111 1111 1111"}]}]


@pytest.fixture(autouse=True)
def _no_redactor() -> Iterator[None]:
    yield
    content.set_redactor(None)


def _configure(env: dict[str, str]) -> tuple[agentobs_sdk.Handle, InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    handle = agentobs_sdk.configure({"AGENTOBS_INSTRUMENT_CLIENTS": "false", **env}, json_logs=False,
                                    span_processors=[SimpleSpanProcessor(spans)])
    return handle, spans


def _one_call(tool_args: object = None) -> None:
    with agentobs_sdk.llm_call("gpt-4o", provider="openai") as call:
        call.capture_input(MESSAGES, system=[{"type": "text", "content": "be brief"}])
        call.capture_output([{"role": "assistant", "parts": [{"type": "text", "content": "ok"}]}])
    with agentobs_sdk.tool_call("pay") as tool:
        tool.capture_arguments(tool_args if tool_args is not None else {"card": "4111 1111 1111 1111"})
        tool.capture_result({"status": "paid"})


def test_content_is_not_captured_by_default() -> None:
    handle, spans = _configure({})
    _one_call()
    for span in spans.get_finished_spans():
        assert not {k for k in span.attributes or {} if "messages" in k or "call.arguments" in k
                    or "call.result" in k or "instructions" in k}, span.name
        assert not span.events
    handle.shutdown()


def test_content_capture_with_redaction() -> None:
    content.set_redactor(lambda key, text: text.replace("4111 1111 1111 1111", "[card]"))
    handle, spans = _configure({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"})
    _one_call()
    got = {s.name: s for s in spans.get_finished_spans()}
    chat = got["chat gpt-4o"].attributes or {}
    assert json.loads(str(chat["gen_ai.input.messages"]))[0]["parts"][0]["content"] == "my card is [card]"
    assert json.loads(str(chat["gen_ai.system_instructions"])) == [{"type": "text", "content": "be brief"}]
    assert json.loads(str(chat["gen_ai.output.messages"]))[0]["parts"][0]["content"] == "ok"
    events = got["chat gpt-4o"].events
    assert [e.name for e in events] == ["gen_ai.client.inference.operation.details"] * 2
    assert "[card]" in str((events[0].attributes or {})["gen_ai.input.messages"])
    tool = got["execute_tool pay"].attributes or {}
    assert json.loads(str(tool["gen_ai.tool.call.arguments"])) == {"card": "[card]"}
    assert json.loads(str(tool["gen_ai.tool.call.result"])) == {"status": "paid"}
    assert "4111" not in json.dumps({k: str(v) for s in got.values() for k, v in (s.attributes or {}).items()})
    handle.shutdown()


def test_a_failing_redactor_drops_the_value() -> None:
    def broken(key: str, text: str) -> str:
        raise RuntimeError("redactor bug")

    content.set_redactor(broken)
    handle, spans = _configure({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"})
    _one_call()
    for span in spans.get_finished_spans():
        assert "4111" not in json.dumps({k: str(v) for k, v in (span.attributes or {}).items()})
        assert "gen_ai.input.messages" not in (span.attributes or {})
    handle.shutdown()


def test_captured_content_is_capped() -> None:
    handle, spans = _configure({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
                                "AGENTOBS_CONTENT_MAX_CHARS": "100"})
    _one_call(tool_args={"text": "x" * 5000})
    tool = next(s for s in spans.get_finished_spans() if s.name == "execute_tool pay")
    value = str((tool.attributes or {})["gen_ai.tool.call.arguments"])
    assert len(value) == 100 and value.endswith(content.TRUNCATED_MARKER)
    assert (tool.attributes or {})["agentobs.content.truncated"] is True
    handle.shutdown()


@pytest.mark.parametrize(("raw", "message"), [
    ("[]", "must be a JSON object"),
    ('{"gpt-4o": 3}', "prices['gpt-4o'] must be an object"),
    ('{"gpt-4o": {"input": 1}}', "prices['gpt-4o'].output is missing"),
    ('{"gpt-4o": {"input": -1, "output": 1}}', "prices['gpt-4o'].input must be a non-negative number"),
    ('{"gpt-4o": {"input": 1, "output": 1, "outptu": 2}}', "unknown keys ['outptu']"),
])
def test_a_bad_price_table_names_the_entry(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        pricing.parse(json.loads(raw))


def test_a_bad_price_table_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    assert pricing.from_env({"AGENTOBS_PRICES": "{not json"}) == {}
    assert "AGENTOBS_PRICES" in caplog.text


def test_prices_from_a_file_and_lookup_by_prefix(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"gpt-4o": {"input": 2.5, "output": 10}, "gpt-4o-mini": {"input": 0.15, "output": 0.6}}))
    table = pricing.from_env({"AGENTOBS_PRICES_FILE": str(path)})
    assert pricing.lookup(table, "gpt-4o-2024-08-06") == pricing.Price(2.5, 10)
    assert pricing.lookup(table, "gpt-4o-mini-2024-07-18") == pricing.Price(0.15, 0.6)  # the longest prefix
    assert pricing.lookup(table, "o3") is None
    assert pricing.cost_usd(table, "gpt-4o", 1_000_000, 100_000) == pytest.approx(2.5 + 1.0)
    assert pricing.cost_usd(table, "gpt-4o", None, None) is None
    # the inline table wins over the file
    assert pricing.from_env({"AGENTOBS_PRICES_FILE": str(path), "AGENTOBS_PRICES": "{}"}) == {}


def test_the_price_table_feeds_the_cost_metric() -> None:
    handle, _ = _configure({"AGENTOBS_PRICES": json.dumps({"gpt-4o": {"input": 2.5, "output": 10}})})
    with agentobs_sdk.agent_run("buyer"):
        with agentobs_sdk.llm_call("gpt-4o", provider="openai") as call:
            call.record_usage(400_000, 50_000)
        with agentobs_sdk.llm_call("gpt-4o", provider="openai") as call:
            call.record_usage(10, 10)
            call.add_cost(0.5)  # a figure from the caller is not priced again
        with agentobs_sdk.llm_call("unpriced", provider="openai") as call:
            call.record_usage(10, 10)
    labels = {"agent": "buyer", "gen_ai_provider_name": "openai"}
    assert handle.metrics.sample("agentobs_agent_cost_usd_total", {**labels, "gen_ai_request_model": "gpt-4o"}) \
        == pytest.approx(1.0 + 0.5 + 0.5)
    unpriced = {**labels, "gen_ai_request_model": "unpriced"}
    assert handle.metrics.sample("agentobs_agent_cost_usd_total", unpriced) is None
    handle.shutdown()
