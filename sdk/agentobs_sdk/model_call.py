"""The model call: `LLMCall`, the operation `llm_call()` (helpers.py) and the client
instrumentations (instrumentation/) record a request to a model on, and `record_llm_usage`.

Besides the span and the duration, a model call records what the provider reports: token usage
(cache and reasoning tokens as subsets), the response model, the endpoint, the time to the first
chunk of a stream, and its cost, the caller's figure or the configured price table's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from . import content, pricing, semconv
from .instrument import Operation, innermost, log, semconv_mode
from .metrics import ModelCall


class LLMCall(Operation):
    kind = SpanKind.CLIENT

    def __init__(self, model: str, provider: str, operation: str, response_model: str | None,
                 attributes: dict[str, AttributeValue] | None) -> None:
        super().__init__(attributes)
        self.operation_name = operation
        self.model = model
        self.provider = provider
        self.response_model = response_model
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cost_usd: float | None = None
        # Recorded by the client instrumentation or the caller (see set_server, record_usage).
        self.cache_read_tokens: int | None = None
        self.cache_write_tokens: int | None = None
        self.reasoning_tokens: int | None = None
        self.server_address: str | None = None
        self.server_port: int | None = None
        self.time_to_first_chunk: float | None = None
        # Set when an instrumented client call was recorded on this call (instrumentation/).
        self._client_call = False
        # Set by the client instrumentation: at the end, a client stream still unread takes it over.
        self._stream_takes_end: Callable[[], bool] | None = None
        # Set by the client instrumentation: records what the client stream's chunks read so far
        # said (usage, response model) when shutdown() ends the call before the stream's end.
        self._stream_seen: Callable[[], None] | None = None

    def span_name(self) -> str:
        return f"{self.operation_name} {self.model}"

    def _end(self, exc: BaseException | None) -> None:
        hand_over, self._stream_takes_end = self._stream_takes_end, None
        if exc is None and hand_over is not None and hand_over():
            return  # `@llm_call def ask(): return client...create(stream=True)`: the stream ends it
        super()._end(exc)

    def _record_unfinished(self) -> None:
        seen, self._stream_seen = self._stream_seen, None
        if seen is not None:
            seen()

    def _span_attributes(self) -> dict[str, AttributeValue]:
        attrs: dict[str, AttributeValue] = {"gen_ai.operation.name": self.operation_name,
                                            "gen_ai.provider.name": self.provider,
                                            "gen_ai.request.model": self.model}
        if self.response_model:
            attrs["gen_ai.response.model"] = self.response_model
        return attrs

    def record_usage(self, input_tokens: int | None = None, output_tokens: int | None = None,
                     *, response_model: str | None = None, cache_read_tokens: int | None = None,
                     cache_write_tokens: int | None = None, reasoning_tokens: int | None = None) -> None:
        """Token counts the provider reported (billable ones, per the semantic conventions).

        Cache and reasoning tokens are subsets of the input and output counts.
        """
        for label, value in (("input", input_tokens), ("output", output_tokens), ("cache read", cache_read_tokens),
                             ("cache write", cache_write_tokens), ("reasoning", reasoning_tokens)):
            if value is not None and value < 0:
                raise ValueError(f"{label} token count must not be negative, got {value}")
        if input_tokens is not None:
            self.input_tokens = input_tokens
            self.span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
        if output_tokens is not None:
            self.output_tokens = output_tokens
            self.span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
        if response_model is not None:
            self.set_response_model(response_model)
        if cache_read_tokens is not None:
            self.cache_read_tokens = cache_read_tokens
            self.span.set_attribute(semconv.USAGE_CACHE_READ, cache_read_tokens)
        if cache_write_tokens is not None:
            self.cache_write_tokens = cache_write_tokens
            for key in semconv.cache_write_attribute(semconv_mode(self)):
                self.span.set_attribute(key, cache_write_tokens)
        if reasoning_tokens is not None:
            self.reasoning_tokens = reasoning_tokens
            self.span.set_attribute(semconv.USAGE_REASONING, reasoning_tokens)

    def set_server(self, address: str | None, port: int | None) -> None:
        """`server.address` / `server.port` of the model endpoint."""
        if address:
            self.server_address = address
            self.span.set_attribute(semconv.SERVER_ADDRESS, address)
        if port is not None:
            self.server_port = port
            self.span.set_attribute(semconv.SERVER_PORT, port)

    def first_chunk(self) -> None:
        """Mark the arrival of a stream's first chunk (time to first chunk, once per call)."""
        if self.time_to_first_chunk is None:
            self.time_to_first_chunk = time.perf_counter() - self._t0
            self.span.set_attribute(semconv.TIME_TO_FIRST_CHUNK, self.time_to_first_chunk)

    def capture_input(self, messages: object, system: object = None) -> None:
        """Prompt messages, when content capture is on (redacted and capped; see `content`)."""
        content.record_input(self.span, messages, system)

    def capture_output(self, messages: object) -> None:
        """Completion messages, when content capture is on."""
        content.record_output(self.span, messages)

    def set_response_model(self, model: str) -> None:
        self.response_model = model
        self.span.set_attribute("gen_ai.response.model", model)

    def set_finish_reasons(self, reasons: Sequence[str]) -> None:
        self.span.set_attribute("gen_ai.response.finish_reasons", list(reasons))

    def add_cost(self, usd: float) -> None:
        if usd < 0:
            raise ValueError(f"cost must not be negative, got {usd}")
        self.cost_usd = (self.cost_usd or 0.0) + usd
        self.span.set_attribute("agentobs.cost.usd", self.cost_usd)

    def _on_end(self, seconds: float, error_type: str | None) -> None:
        if self._handle is None:
            return
        m = self._handle.metrics
        call: ModelCall = {"operation": self.operation_name, "provider": self.provider, "request_model": self.model,
                           "response_model": self.response_model, "server_address": self.server_address,
                           "server_port": self.server_port}
        m.record_operation_duration(seconds, error_type=error_type, **call)
        if self.time_to_first_chunk is not None:
            m.record_time_to_first_chunk(self.time_to_first_chunk, **call)
        for token_type, count in (("input", self.input_tokens), ("output", self.output_tokens)):
            if count is not None:
                m.record_token_usage(token_type, count, error_type=error_type, **call)
        m.record_token_details(cache_read=self.cache_read_tokens, cache_write=self.cache_write_tokens,
                               reasoning=self.reasoning_tokens, **call)
        if self.cost_usd is None:
            # No cost from the caller: price the tokens from the configured table, if any.
            priced = pricing.cost_usd(self._handle.settings.genai.prices, self.response_model or self.model,
                                      self.input_tokens, self.output_tokens, self.cache_read_tokens)
            if priced is not None:
                self.add_cost(priced)
        if self.cost_usd:
            m.add_cost(self.agent, self.cost_usd, provider=self.provider, model=self.model)


def record_llm_usage(input_tokens: int | None = None, output_tokens: int | None = None, *,
                     response_model: str | None = None, cache_read_tokens: int | None = None,
                     cache_write_tokens: int | None = None, reasoning_tokens: int | None = None) -> None:
    """Record token usage on the innermost active `llm_call` (handy inside a decorated function)."""
    op = innermost(LLMCall)
    if op is None:
        log.warning("agentobs: record_llm_usage() outside an llm_call; ignored")
        return
    op.record_usage(input_tokens, output_tokens, response_model=response_model, cache_read_tokens=cache_read_tokens,
                    cache_write_tokens=cache_write_tokens, reasoning_tokens=reasoning_tokens)
