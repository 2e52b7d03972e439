"""The real `openai` and `anthropic` client libraries, pointed at a loopback server that speaks
their HTTP APIs (tests/sdk/fake_llm.py), are instrumented by `configure()` alone: spans reach a
real OTLP receiver (Jaeger v2) with the GenAI attributes and content events, and the Prometheus
metrics count tokens, cache and reasoning tokens, time to first chunk, errors and cost.

The fake server stands in for the providers' services, which a test cannot call; everything on
the client side (the libraries, the SDK, the exporter, the receiver) is real.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

import agentobs_sdk

import fake_llm
from sdk_servers import Jaeger

READBACK_TIMEOUT_S = 60.0
PRICES = {"gpt-4o": {"input": 2.5, "output": 10.0, "cache_read": 1.25}, "claude-sonnet-4": {"input": 3, "output": 15}}


def _jaeger_spans(jaeger: Jaeger, service: str, want: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + READBACK_TIMEOUT_S
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        url = f"{jaeger.query_url}/api/traces?" + urllib.parse.urlencode({"service": service, "limit": 100})
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                data = json.load(resp).get("data") or []
        except OSError:
            data = []
        spans = [s for t in data for s in t.get("spans", [])]
        if len(spans) >= want:
            return spans
        time.sleep(0.5)
    raise AssertionError(f"{len(spans)} of {want} spans of {service} reached Jaeger")


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def _events(span: dict[str, Any]) -> list[dict[str, Any]]:
    return [{f["key"]: f["value"] for f in log.get("fields", [])} for log in span.get("logs", [])]


def _ours(spans: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    # Some client releases trace their own calls too (e.g. `anthropic.messages.create`); ours are
    # named `{operation} {model}` and carry the request model.
    return [s for s in spans if s["operationName"] == name]


@pytest.fixture
def fake() -> Iterator[fake_llm.FakeLLM]:
    with fake_llm.serve() as server:
        yield server


@pytest.fixture
def traced(jaeger: Jaeger) -> Iterator[tuple[agentobs_sdk.Handle, str]]:
    service = f"llm-clients-{uuid.uuid4().hex[:8]}"
    handle = agentobs_sdk.configure({
        "OTEL_SERVICE_NAME": service,
        "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.grpc_endpoint,
        "OTEL_EXPORTER_OTLP_CERTIFICATE": str(jaeger.ca),
        "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
        "AGENTOBS_PRICES": json.dumps(PRICES),
        "AGENTOBS_AGENT_ID": "clients-0",
    }, json_logs=False)
    assert handle.instrumented_clients == ("openai", "anthropic")
    yield handle, service
    handle.shutdown()


def _model_labels(provider: str, model: str, response: str, fake: fake_llm.FakeLLM,
                  operation: str = "chat") -> dict[str, str]:
    port = urllib.parse.urlsplit(fake.base_url).port
    return {"gen_ai_operation_name": operation, "gen_ai_provider_name": provider, "gen_ai_request_model": model,
            "gen_ai_response_model": response, "server_address": "127.0.0.1", "server_port": str(port)}


def test_openai_sync_async_streaming_embeddings_and_errors(traced: tuple[agentobs_sdk.Handle, str], jaeger: Jaeger,
                                                           fake: fake_llm.FakeLLM) -> None:
    handle, service = traced
    client = openai.OpenAI(base_url=fake.base_url + "/v1", api_key="test-key", max_retries=0)
    prompt = [{"role": "user", "content": "Weather in Paris?"}]
    with agentobs_sdk.agent_run("weather"):
        reply = client.chat.completions.create(model="gpt-4o", messages=prompt, max_tokens=50)
        assert reply.choices[0].message.content == fake_llm.ANSWER  # the caller's result is untouched
        chunks = list(client.chat.completions.create(model="gpt-4o", messages=prompt, stream=True,
                                                     stream_options={"include_usage": True}))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip() == fake_llm.ANSWER
        vectors = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
        assert len(vectors.data) == 2
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="error-429", messages=prompt)

        async def concurrently() -> None:
            aclient = openai.AsyncOpenAI(base_url=fake.base_url + "/v1", api_key="test-key", max_retries=0)
            await aclient.chat.completions.create(model="gpt-4o-mini", messages=prompt)
            stream = await aclient.chat.completions.create(model="gpt-4o-mini", messages=prompt, stream=True)
            assert len([c async for c in stream]) > 3
            await aclient.close()

        asyncio.run(concurrently())
    client.close()
    assert handle.force_flush(30_000)

    spans = _jaeger_spans(jaeger, service, want=7)
    by_id = {s["spanID"]: s for s in spans}
    agent = _ours(spans, "invoke_agent weather")[0]
    chats = _ours(spans, "chat gpt-4o")
    assert len(chats) == 2
    plain = next(s for s in chats if "gen_ai.request.stream" not in _tags(s))
    streamed = next(s for s in chats if _tags(s).get("gen_ai.request.stream") is True)
    for span in chats:
        tags = _tags(span)
        assert span["references"][0]["spanID"] == agent["spanID"]  # a child of the agent run
        assert tags["span.kind"] == "client"
        assert tags["gen_ai.provider.name"] == "openai" and tags["gen_ai.operation.name"] == "chat"
        assert tags["gen_ai.response.model"] == "gpt-4o-2024-08-06"
        assert tags["server.address"] == "127.0.0.1"
        assert tags["server.port"] == urllib.parse.urlsplit(fake.base_url).port
        usage = fake_llm.OPENAI_USAGE
        assert tags["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
        assert tags["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
        assert tags["gen_ai.usage.cache_read.input_tokens"] == usage["prompt_tokens_details"]["cached_tokens"]
        assert tags["gen_ai.usage.reasoning.output_tokens"] == usage["completion_tokens_details"]["reasoning_tokens"]
        assert json.loads(tags["gen_ai.response.finish_reasons"]) == ["stop"]
        inputs = json.loads(tags["gen_ai.input.messages"])
        assert inputs == [{"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}]
        output = json.loads(tags["gen_ai.output.messages"])
        assert output[0]["parts"][0]["content"].strip() == fake_llm.ANSWER
        events = _events(span)
        assert [e["event"] for e in events] == ["gen_ai.client.inference.operation.details"] * 2
        assert "gen_ai.input.messages" in events[0] and "gen_ai.output.messages" in events[1]
        # (57 - 32) * 2.5 + 32 * 1.25 + 17 * 10 per million tokens
        assert tags["agentobs.cost.usd"] == pytest.approx((25 * 2.5 + 32 * 1.25 + 17 * 10) / 1e6)
    assert _tags(plain)["gen_ai.request.max_tokens"] == 50
    ttfc = _tags(streamed)["gen_ai.response.time_to_first_chunk"]
    assert fake_llm.FIRST_CHUNK_DELAY_S <= ttfc <= streamed["duration"] / 1e6
    assert "gen_ai.response.time_to_first_chunk" not in _tags(plain)

    embeddings = _ours(spans, "embeddings text-embedding-3-small")[0]
    assert _tags(embeddings)["gen_ai.usage.input_tokens"] == fake_llm.EMBEDDING_TOKENS
    failed = _ours(spans, "chat error-429")[0]
    assert _tags(failed)["error.type"] == "RateLimitError" and _tags(failed)["otel.status_code"] == "ERROR"
    minis = _ours(spans, "chat gpt-4o-mini")
    assert len(minis) == 2 and all(by_id.get(s["references"][0]["spanID"]) is agent for s in minis)

    m = handle.metrics
    chat = _model_labels("openai", "gpt-4o", "gpt-4o-2024-08-06", fake)
    assert m.sample("gen_ai_client_inference_duration_seconds_count", {**chat, "error_type": ""}) == 2
    assert m.sample("gen_ai_client_inference_usage_input_tokens_total",
                    {**chat, "gen_ai_token_modality": "unknown"}) == 2 * 57
    assert m.sample("gen_ai_client_inference_usage_cache_read_input_tokens_total",
                    {**chat, "gen_ai_token_modality": "unknown"}) == 2 * 32
    assert m.sample("gen_ai_client_inference_usage_reasoning_output_tokens_total",
                    {**chat, "gen_ai_token_modality": "unknown"}) == 2 * 5
    assert m.sample("gen_ai_client_inference_operation_output_tokens_count", {**chat, "error_type": ""}) == 2
    assert m.sample("gen_ai_client_inference_time_to_first_chunk_seconds_count", chat) == 1
    mini = _model_labels("openai", "gpt-4o-mini", "gpt-4o-mini-2024-08-06", fake)
    # The async stream did not ask for usage, so only the plain async call reported tokens.
    assert m.sample("gen_ai_client_inference_usage_input_tokens_total",
                    {**mini, "gen_ai_token_modality": "unknown"}) == 57
    assert m.sample("gen_ai_client_inference_time_to_first_chunk_seconds_count", mini) == 1
    error = {**_model_labels("openai", "error-429", "", fake), "error_type": "RateLimitError"}
    assert m.sample("gen_ai_client_inference_duration_seconds_count", error) == 1
    emb = _model_labels("openai", "text-embedding-3-small", "text-embedding-3-small", fake, "embeddings")
    # Embeddings are not inference: their duration stays on gen_ai.client.operation.duration.
    assert m.sample("gen_ai_client_operation_duration_seconds_count",
                    {k: v for k, v in emb.items() if not k.startswith("server_")} | {"error_type": ""}) == 1
    assert m.sample("agentobs_agent_cost_usd_total", {"agent": "weather", "gen_ai_provider_name": "openai",
                                                      "gen_ai_request_model": "gpt-4o"}) == \
        pytest.approx(2 * (25 * 2.5 + 32 * 1.25 + 17 * 10) / 1e6)
    agent_labels = {"gen_ai_agent_name": "weather", "error_type": ""}
    assert m.sample("gen_ai_invoke_agent_duration_seconds_count", agent_labels) == 1


def test_anthropic_sync_async_streaming_and_errors(traced: tuple[agentobs_sdk.Handle, str], jaeger: Jaeger,
                                                   fake: fake_llm.FakeLLM) -> None:
    handle, service = traced
    client = anthropic.Anthropic(base_url=fake.base_url, api_key="test-key", max_retries=0)
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    message = client.messages.create(model="claude-sonnet-4", max_tokens=64, messages=messages, system="Be brief.")
    assert message.content[0].text == fake_llm.ANSWER
    with client.messages.create(model="claude-sonnet-4", max_tokens=64, messages=messages, stream=True) as stream:
        kinds = [event.type for event in stream]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="error-429", max_tokens=64, messages=messages)

    async def streamed() -> None:
        aclient = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key="test-key", max_retries=0)
        events = await aclient.messages.create(model="claude-haiku-4", max_tokens=64, messages=messages, stream=True)
        assert len([e async for e in events]) > 5
        await aclient.close()

    asyncio.run(streamed())
    client.close()
    assert handle.force_flush(30_000)

    spans = _jaeger_spans(jaeger, service, want=4)
    sonnet = _ours(spans, "chat claude-sonnet-4")
    assert len(sonnet) == 2
    usage = fake_llm.ANTHROPIC_USAGE
    total_input = usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"]
    for span in sonnet + _ours(spans, "chat claude-haiku-4"):
        tags = _tags(span)
        assert tags["gen_ai.provider.name"] == "anthropic"
        assert tags["gen_ai.usage.input_tokens"] == total_input  # the conventions count cached input too
        assert tags["gen_ai.usage.cache_read.input_tokens"] == usage["cache_read_input_tokens"]
        assert tags["gen_ai.usage.cache_write.input_tokens"] == usage["cache_creation_input_tokens"]
        assert "gen_ai.usage.cache_creation.input_tokens" not in tags  # the v1.41.0 name
        assert tags["gen_ai.usage.output_tokens"] == usage["output_tokens"]
        assert json.loads(tags["gen_ai.response.finish_reasons"]) == ["end_turn"]
        assert tags["gen_ai.response.model"].endswith("-20250514")
    plain = next(s for s in sonnet if "gen_ai.request.stream" not in _tags(s))
    assert json.loads(_tags(plain)["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be brief."}]
    assert _tags(plain)["agentobs.cost.usd"] == pytest.approx((total_input * 3 + usage["output_tokens"] * 15) / 1e6)
    streamed_span = next(s for s in sonnet if _tags(s).get("gen_ai.request.stream") is True)
    assert _tags(streamed_span)["gen_ai.response.time_to_first_chunk"] >= fake_llm.FIRST_CHUNK_DELAY_S
    assert json.loads(_tags(streamed_span)["gen_ai.output.messages"])[0]["parts"][0]["content"].strip() \
        == fake_llm.ANSWER
    failed = _ours(spans, "chat error-429")[0]
    assert _tags(failed)["error.type"] == "RateLimitError"

    m = handle.metrics
    sonnet_labels = {**_model_labels("anthropic", "claude-sonnet-4", "claude-sonnet-4-20250514", fake),
                     "gen_ai_token_modality": "unknown"}
    assert m.sample("gen_ai_client_inference_usage_input_tokens_total", sonnet_labels) == 2 * total_input
    assert m.sample("gen_ai_client_inference_usage_cache_write_input_tokens_total", sonnet_labels) == \
        2 * usage["cache_creation_input_tokens"]
    haiku = _model_labels("anthropic", "claude-haiku-4", "claude-haiku-4-20250514", fake)
    assert m.sample("gen_ai_client_inference_time_to_first_chunk_seconds_count", haiku) == 1
    # claude-haiku-4 has no price: no cost is invented.
    assert m.sample("agentobs_agent_cost_usd_total", {"agent": "clients-0", "gen_ai_provider_name": "anthropic",
                                                      "gen_ai_request_model": "claude-haiku-4"}) is None


def test_clients_are_left_alone_when_switched_off(fake: fake_llm.FakeLLM) -> None:
    original = openai.resources.chat.completions.Completions.create
    handle = agentobs_sdk.configure({"AGENTOBS_INSTRUMENT_CLIENTS": "false"}, json_logs=False)
    assert handle.instrumented_clients == ()
    assert openai.resources.chat.completions.Completions.create is original
    handle.shutdown()
    handle = agentobs_sdk.configure({}, json_logs=False)
    assert openai.resources.chat.completions.Completions.create is not original
    handle.shutdown()
    # shutdown() puts the library back as it found it
    assert openai.resources.chat.completions.Completions.create is original
    assert anthropic.resources.messages.Messages.create.__name__ == "create"


def test_otel_sdk_disabled_leaves_the_clients_alone() -> None:
    original = openai.resources.chat.completions.Completions.create
    original_messages = anthropic.resources.messages.Messages.create
    handle = agentobs_sdk.configure({"OTEL_SDK_DISABLED": "true"}, json_logs=False)
    try:
        assert handle.instrumented_clients == ()
        assert openai.resources.chat.completions.Completions.create is original
        assert anthropic.resources.messages.Messages.create is original_messages
    finally:
        handle.shutdown()
