"""Instrumentation of the official `anthropic` client: messages, sync and async, streamed or not.

Anthropic reports input tokens without the cached ones; the conventions' `gen_ai.usage.input_tokens`
includes them, so the recorded input is `input_tokens + cache_read_input_tokens +
cache_creation_input_tokens`, with the cache counts recorded as cache read and cache write.
`stop_reason` is the finish reason. The `system` parameter is captured as system instructions.
"""

from __future__ import annotations

from typing import Any

from .. import semconv
from ..instrument import innermost
from ..model_call import LLMCall
from ._common import _wrapped, as_int, get, text_parts, wrap

PROVIDER = "anthropic"


def _usage(call: LLMCall, usage: Any, output_tokens: int | None = None) -> None:
    if usage is None and output_tokens is None:
        return
    plain = as_int(get(usage, "input_tokens"))
    read = as_int(get(usage, "cache_read_input_tokens"))
    write = as_int(get(usage, "cache_creation_input_tokens"))
    total = None if plain is None else plain + (read or 0) + (write or 0)
    out = output_tokens if output_tokens is not None else as_int(get(usage, "output_tokens"))
    call.record_usage(total, out, cache_read_tokens=read, cache_write_tokens=write)


class Messages:
    provider = PROVIDER
    operation = "chat"

    def request(self, call: LLMCall, kwargs: dict[str, Any]) -> None:
        for key, attr in (("max_tokens", semconv.REQUEST_MAX_TOKENS), ("temperature", semconv.REQUEST_TEMPERATURE),
                          ("top_p", semconv.REQUEST_TOP_P)):
            value = kwargs.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                call.set(attr, value)
        if kwargs.get("stream") is True:
            call.set(semconv.REQUEST_STREAM, True)
        system = kwargs.get("system")
        call.capture_input([{"role": get(m, "role"), "parts": text_parts(get(m, "content"))}
                            for m in kwargs.get("messages") or []],
                           text_parts(system) if system else None)

    def response(self, call: LLMCall, result: Any) -> None:
        if get(result, "model"):
            call.set_response_model(str(result.model))
        if get(result, "id"):
            call.set(semconv.RESPONSE_ID, str(result.id))
        reason = get(result, "stop_reason")
        call.set_finish_reasons([str(reason or "error")])
        _usage(call, get(result, "usage"))
        call.capture_output([{"role": "assistant", "parts": text_parts(get(result, "content")),
                              "finish_reason": reason}])

    def chunk(self, call: LLMCall, state: dict[str, Any], event: Any) -> None:
        kind = get(event, "type")
        if kind == "message_start":
            message = get(event, "message")
            state.update(model=get(message, "model"), id=get(message, "id"), usage=get(message, "usage"))
        elif kind == "content_block_delta" and get(event, "delta", "type") == "text_delta":
            state.setdefault("text", []).append(str(get(event, "delta", "text") or ""))
        elif kind == "message_delta":
            state["reason"] = get(event, "delta", "stop_reason")
            state["output"] = as_int(get(event, "usage", "output_tokens"))

    def stream_end(self, call: LLMCall, state: dict[str, Any]) -> None:
        if state.get("model"):
            call.set_response_model(str(state["model"]))
        if state.get("id"):
            call.set(semconv.RESPONSE_ID, str(state["id"]))
        call.set_finish_reasons([str(state.get("reason") or "error")])
        _usage(call, state.get("usage"), state.get("output"))
        text = "".join(state.get("text", []))
        call.capture_output([{"role": "assistant", "parts": [{"type": "text", "content": text}],
                              "finish_reason": state.get("reason")}])


def instrument() -> None:
    from anthropic.resources.messages import AsyncMessages
    from anthropic.resources.messages import Messages as SyncMessages

    for cls in (SyncMessages, AsyncMessages):
        wrap(cls, "create", Messages())
    _quiet_native_spans()


def _quiet_native_spans() -> None:
    """Releases of `anthropic` that trace their own calls (a `_tracer` on the client, from the
    global tracer provider configure() sets) would add a second span per call, with the same
    token usage, next to the `llm_call` this module records: one call, two spans, tokens counted
    twice by anything that sums spans. Inside an `llm_call` the client is given no tracer; calls
    outside one (other endpoints) keep the library's own spans."""
    from anthropic._base_client import BaseClient

    native = BaseClient.__dict__.get("_tracer")
    if not isinstance(native, property) or native.fget is None or getattr(native.fget, "_agentobs", False):
        return
    fget = native.fget

    def tracer(self: Any) -> Any:
        return None if innermost(LLMCall) is not None else fget(self)

    tracer._agentobs = True  # type: ignore[attr-defined]  # so a second configure() does not stack
    BaseClient._tracer = property(tracer)  # type: ignore[method-assign,assignment]
    _wrapped.append((BaseClient, "_tracer", native))  # unwrap_all() puts it back
