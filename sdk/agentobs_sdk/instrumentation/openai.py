"""Instrumentation of the official `openai` client: chat completions and embeddings, sync and async.

Recorded per call: the request (model, max tokens, temperature, top_p, stream), `server.address`
and `server.port` from the client's base URL, the response model and id, finish reasons, token
usage with cached-input and reasoning tokens, and, for streams, the time to the first chunk.
Streams report usage only when the caller asks for it (`stream_options={"include_usage": True}`):
the request is never changed behind the caller's back.
"""

from __future__ import annotations

from typing import Any

from .. import semconv
from ..model_call import LLMCall
from ._common import as_int, get, text_parts, wrap

PROVIDER = "openai"


def _messages(messages: Any) -> list[dict[str, Any]]:
    return [{"role": get(m, "role"), "parts": text_parts(get(m, "content"))} for m in messages or []]


def _request_attributes(call: LLMCall, kwargs: dict[str, Any]) -> None:
    for key, attr in (("max_tokens", semconv.REQUEST_MAX_TOKENS), ("max_completion_tokens", semconv.REQUEST_MAX_TOKENS),
                      ("temperature", semconv.REQUEST_TEMPERATURE), ("top_p", semconv.REQUEST_TOP_P)):
        value = kwargs.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            call.set(attr, value)
    if kwargs.get("stream") is True:
        call.set(semconv.REQUEST_STREAM, True)


def _usage(call: LLMCall, usage: Any) -> None:
    if usage is None:
        return
    call.record_usage(as_int(get(usage, "prompt_tokens")), as_int(get(usage, "completion_tokens")),
                      cache_read_tokens=as_int(get(usage, "prompt_tokens_details", "cached_tokens")),
                      reasoning_tokens=as_int(get(usage, "completion_tokens_details", "reasoning_tokens")))


class Chat:
    provider = PROVIDER
    operation = "chat"

    def request(self, call: LLMCall, kwargs: dict[str, Any]) -> None:
        _request_attributes(call, kwargs)
        call.capture_input(_messages(kwargs.get("messages")))

    def response(self, call: LLMCall, result: Any) -> None:
        model = get(result, "model")
        if model:
            call.set_response_model(str(model))
        if get(result, "id"):
            call.set(semconv.RESPONSE_ID, str(result.id))
        choices = get(result, "choices") or []
        call.set_finish_reasons([str(get(c, "finish_reason") or "error") for c in choices])
        _usage(call, get(result, "usage"))
        call.capture_output([{"role": get(c, "message", "role") or "assistant",
                              "parts": text_parts(get(c, "message", "content")),
                              "finish_reason": get(c, "finish_reason")} for c in choices])

    def chunk(self, call: LLMCall, state: dict[str, Any], chunk: Any) -> None:
        if get(chunk, "model"):
            state["model"] = str(chunk.model)
        if get(chunk, "id"):
            state["id"] = str(chunk.id)
        for choice in get(chunk, "choices") or []:
            index = as_int(get(choice, "index")) or 0
            text = get(choice, "delta", "content")
            if text:
                state.setdefault("text", {}).setdefault(index, []).append(str(text))
            reason = get(choice, "finish_reason")
            if reason:
                state.setdefault("reasons", {})[index] = str(reason)
            else:
                state.setdefault("reasons", {}).setdefault(index, None)
        if get(chunk, "usage") is not None:
            state["usage"] = chunk.usage

    def stream_end(self, call: LLMCall, state: dict[str, Any]) -> None:
        if "model" in state:
            call.set_response_model(state["model"])
        if "id" in state:
            call.set(semconv.RESPONSE_ID, state["id"])
        reasons: dict[int, str | None] = state.get("reasons", {})
        # A choice whose stream ended without a finish reason is reported as `error` (conventions).
        call.set_finish_reasons([reasons[i] or "error" for i in sorted(reasons)])
        _usage(call, state.get("usage"))
        texts: dict[int, list[str]] = state.get("text", {})
        call.capture_output([{"role": "assistant", "parts": [{"type": "text", "content": "".join(texts.get(i, []))}],
                              "finish_reason": reasons[i]} for i in sorted(reasons)])


class Embeddings:
    provider = PROVIDER
    operation = "embeddings"

    def request(self, call: LLMCall, kwargs: dict[str, Any]) -> None:
        pass

    def response(self, call: LLMCall, result: Any) -> None:
        model = get(result, "model")
        if model:
            call.set_response_model(str(model))
        call.record_usage(as_int(get(result, "usage", "prompt_tokens")))

    def chunk(self, call: LLMCall, state: dict[str, Any], chunk: Any) -> None:
        pass

    def stream_end(self, call: LLMCall, state: dict[str, Any]) -> None:
        pass


def instrument() -> None:
    from openai.resources.chat.completions import AsyncCompletions, Completions
    from openai.resources.embeddings import AsyncEmbeddings
    from openai.resources.embeddings import Embeddings as SyncEmbeddings

    for chat in (Completions, AsyncCompletions):
        wrap(chat, "create", Chat())
    for embeddings in (SyncEmbeddings, AsyncEmbeddings):
        wrap(embeddings, "create", Embeddings())
