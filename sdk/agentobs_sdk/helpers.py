"""Instrumentation in the agent's vocabulary: agent run, LLM call, tool call, reasoning step, decision.

Each helper returns an object that works as a context manager (`with` and `async with`) and as a
decorator (on plain and `async def` functions). Entering it starts a span named and attributed per
the OpenTelemetry GenAI semantic conventions (`invoke_agent {agent}`, `{operation} {model}`,
`execute_tool {tool}`) and yields an `Operation` to record results on; leaving it ends the span
and records the Prometheus metrics of `series.py`. An exception is recorded on the span (status
ERROR, `error.type`, exception event), counted, and re-raised unchanged. Instrumentation failures
of its own are logged, never raised into the agent, except a failed audit append that the caller
asked for with `audit=True` (raised when the operation itself succeeded).

Without `configure()` the helpers still run: spans go to the global (no-op) tracer and no metrics
are recorded. The model call (`LLMCall`, `record_llm_usage`) lives in model_call.py, the
vocabulary the client instrumentations record in; it is re-exported here.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from . import content, semconv
from .instrument import Operation, enter_agent, leave_agent, semconv_mode
from .model_call import LLMCall, record_llm_usage
from .wrappers import Instrument

__all__ = ["OTHER_ERROR_TYPE", "AgentRun", "Decision", "LLMCall", "ReasoningStep", "ToolCall", "agent_run",
           "decision", "llm_call", "reasoning_step", "record_llm_usage", "tool_call"]

# What ToolCall.fail() records as a metric label as given; other values become OTHER_ERROR_TYPE.
_ERROR_TYPE_TOKEN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
OTHER_ERROR_TYPE = "_OTHER"

# --- the operations ------------------------------------------------------------------------------


class AgentRun(Operation):
    operation_name = "invoke_agent"

    def __init__(self, name: str, agent_id: str | None, description: str | None,
                 conversation_id: str | None, attributes: dict[str, AttributeValue] | None) -> None:
        super().__init__(attributes)
        self.name = name
        self.agent_id = agent_id
        self.description = description
        self.conversation_id = conversation_id
        self._agent_token: contextvars.Token[str | None] | None = None

    def span_name(self) -> str:
        return f"invoke_agent {self.name}"

    def _span_attributes(self) -> dict[str, AttributeValue]:
        agent_id = self.agent_id
        if agent_id is None and self._handle is not None:
            agent_id = self._handle.settings.effective_agent_id
        attrs: dict[str, AttributeValue] = {"gen_ai.operation.name": "invoke_agent",
                                            "gen_ai.agent.name": self.name}
        if not semconv_mode(self).old and self.agent_id is None:
            # The latest conventions dropped gen_ai.agent.id from in-process agent spans (it now
            # names a hosted agent); the instance id stays on the resource.
            agent_id = None
        for key, value in (("gen_ai.agent.id", agent_id), ("gen_ai.agent.description", self.description),
                           ("gen_ai.conversation.id", self.conversation_id)):
            if value is not None:
                attrs[key] = value
        return attrs

    def _enter_hook(self) -> None:
        self._agent_token = enter_agent(self.name)

    def _exit_hook(self) -> None:
        if self._agent_token is not None:
            leave_agent(self._agent_token)
            self._agent_token = None

    def _on_end(self, seconds: float, error_type: str | None) -> None:
        if self._handle is not None:
            self._handle.metrics.record_agent_run(self.name, seconds, ok=error_type is None, error_type=error_type,
                                                  cancelled=self._cancelled)


class ToolCall(Operation):
    operation_name = "execute_tool"

    def __init__(self, tool: str, call_id: str | None, tool_type: str | None, description: str | None,
                 audit: bool, user: str | None, attributes: dict[str, AttributeValue] | None) -> None:
        super().__init__(attributes)
        self.tool = tool
        self.call_id = call_id
        self.tool_type = tool_type
        self.description = description
        self.audit = audit
        self.user = user

    def span_name(self) -> str:
        return f"execute_tool {self.tool}"

    def _span_attributes(self) -> dict[str, AttributeValue]:
        attrs: dict[str, AttributeValue] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": self.tool}
        for key, value in (("gen_ai.tool.call.id", self.call_id), ("gen_ai.tool.type", self.tool_type),
                           ("gen_ai.tool.description", self.description)):
            if value is not None:
                attrs[key] = value
        return attrs

    def capture_arguments(self, arguments: object) -> None:
        """The tool's arguments (gen_ai.tool.call.arguments), when content capture is on."""
        content.record_attribute(self.span, semconv.TOOL_CALL_ARGUMENTS, arguments)

    def capture_result(self, result: object) -> None:
        """The tool's result (gen_ai.tool.call.result), when content capture is on."""
        content.record_attribute(self.span, semconv.TOOL_CALL_RESULT, result)

    def fail(self, error_type: str = "tool_error") -> None:
        """Mark the call failed without raising (a tool that returned an error result).

        `error_type` is a short token (`not_found`, `http.429`): it becomes the metrics'
        `error_type` label and the span's `error.type`. Anything else (free text, a URL) would
        make a series per value, so it is recorded there as `_OTHER` (OpenTelemetry's fallback
        for `error.type`) and kept whole only in the span's status description."""
        self._failure = error_type if _ERROR_TYPE_TOKEN.fullmatch(error_type) else OTHER_ERROR_TYPE
        self._failure_text = error_type

    def _on_end(self, seconds: float, error_type: str | None) -> None:
        if self._handle is not None:
            self._handle.metrics.record_tool_call(self.agent, self.tool, seconds, error_type=error_type,
                                                  tool_type=self.tool_type, cancelled=self._cancelled)
        if self.audit:
            self._audit("tool_call", user=self.user, result=_outcome(self, error_type, "ok"),
                        resource=self.tool, details={"call_id": self.call_id, "error_type": error_type,
                                                     "trace_id": _trace_id(self.span)})


class ReasoningStep(Operation):
    operation_name = "reasoning_step"

    def __init__(self, name: str, index: int | None, attributes: dict[str, AttributeValue] | None) -> None:
        super().__init__(attributes)
        self.name = name
        self.index = index

    def span_name(self) -> str:
        return f"reasoning_step {self.name}"

    def _span_attributes(self) -> dict[str, AttributeValue]:
        attrs: dict[str, AttributeValue] = {"agentobs.reasoning.step": self.name}
        if self.index is not None:
            attrs["agentobs.reasoning.index"] = self.index
        return attrs

    def _on_end(self, seconds: float, error_type: str | None) -> None:
        if self._handle is not None:
            self._handle.metrics.record_reasoning_step(self.agent)


def _check_confidence(confidence: float | None) -> float | None:
    if confidence is None:
        return None
    value = float(confidence)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"decision confidence must be within [0, 1], got {confidence!r}")
    return value


class Decision(Operation):
    operation_name = "decision"

    def __init__(self, name: str, choice: str | None, confidence: float | None, alternatives: Sequence[str],
                 rationale: str | None, audit: bool, user: str | None,
                 attributes: dict[str, AttributeValue] | None) -> None:
        super().__init__(attributes)
        self.name = name
        self.choice = choice
        self.confidence = _check_confidence(confidence)
        self.alternatives = [str(a) for a in alternatives]
        self.rationale = rationale
        self.audit = audit
        self.user = user

    def span_name(self) -> str:
        return f"decision {self.name}"

    def _span_attributes(self) -> dict[str, AttributeValue]:
        attrs: dict[str, AttributeValue] = {"agentobs.decision.name": self.name}
        if self.alternatives:
            attrs["agentobs.decision.alternatives"] = self.alternatives
        if self.choice is not None:
            attrs["agentobs.decision.choice"] = self.choice
        if self.confidence is not None:
            attrs["agentobs.decision.confidence"] = self.confidence
        if self.rationale is not None:
            attrs["agentobs.decision.rationale"] = self.rationale
        return attrs

    def choose(self, choice: str, confidence: float | None = None, *,
               alternatives: Sequence[str] | None = None, rationale: str | None = None) -> None:
        """Record the outcome when it is known only inside the block."""
        self.confidence = _check_confidence(confidence) if confidence is not None else self.confidence
        self.choice = choice
        if alternatives is not None:
            self.alternatives = [str(a) for a in alternatives]
        if rationale is not None:
            self.rationale = rationale
        for key, value in self._span_attributes().items():
            self.span.set_attribute(key, value)

    def _on_end(self, seconds: float, error_type: str | None) -> None:
        if self._handle is not None and error_type is None and not self._cancelled:  # else none was taken
            self._handle.metrics.record_decision(self.agent, self.name, self.confidence)
        if self.audit:
            self._audit("decision", user=self.user, result=_outcome(self, error_type, self.choice),
                        # `choice` beside `result`: an error or a cancellation replaces the result,
                        # and a review then asks what was about to be done.
                        resource=self.name, details={"choice": self.choice, "confidence": self.confidence,
                                                     "alternatives": self.alternatives,
                                                     "rationale": self.rationale,
                                                     "trace_id": _trace_id(self.span)})


def _outcome(op: Operation, error_type: str | None, ok: str | None) -> str | None:
    """An audit record's `result`: "error", "cancelled" (stopped, not failed), or `ok`."""
    if error_type is not None:
        return "error"
    return "cancelled" if op._cancelled else ok


def _trace_id(span: trace.Span) -> str | None:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


# --- public factories ------------------------------------------------------------------------------


def agent_run(name: str, *, agent_id: str | None = None, description: str | None = None,
              conversation_id: str | None = None,
              attributes: dict[str, AttributeValue] | None = None) -> Instrument[AgentRun]:
    """One run of an agent: span `invoke_agent {name}`, run duration histogram."""
    return Instrument(lambda: AgentRun(name, agent_id, description, conversation_id, attributes))


def llm_call(model: str, *, provider: str, operation: str = "chat", response_model: str | None = None,
             attributes: dict[str, AttributeValue] | None = None) -> Instrument[LLMCall]:
    """One model call: span `{operation} {model}` (CLIENT), token usage and duration histograms."""
    return Instrument(lambda: LLMCall(model, provider, operation, response_model, attributes))


def tool_call(tool: str, *, call_id: str | None = None, tool_type: str | None = "function",
              description: str | None = None, audit: bool = False, user: str | None = None,
              attributes: dict[str, AttributeValue] | None = None) -> Instrument[ToolCall]:
    """One tool execution: span `execute_tool {tool}`, duration and failures; optionally audited."""
    return Instrument(lambda: ToolCall(tool, call_id, tool_type, description, audit, user, attributes))


def reasoning_step(name: str = "step", *, index: int | None = None,
                   attributes: dict[str, AttributeValue] | None = None) -> Instrument[ReasoningStep]:
    """One step of the agent's reasoning loop: span `reasoning_step {name}`, step counter."""
    return Instrument(lambda: ReasoningStep(name, index, attributes))


def decision(name: str, *, choice: str | None = None, confidence: float | None = None,
             alternatives: Sequence[str] = (), rationale: str | None = None, audit: bool = False,
             user: str | None = None,
             attributes: dict[str, AttributeValue] | None = None) -> Instrument[Decision]:
    """A decision with its confidence in [0, 1] and the alternatives considered; optionally audited."""
    _check_confidence(confidence)  # fail at the call site, not later inside the block
    return Instrument(lambda: Decision(name, choice, confidence, alternatives, rationale, audit, user,
                                       attributes))
