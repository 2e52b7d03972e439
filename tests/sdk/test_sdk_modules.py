"""The SDK's modules stay small enough to read in one sitting (the project's ~400 lines), and
splitting one keeps the import paths users and instrumentations already use."""

from __future__ import annotations

from pathlib import Path

import agentobs_sdk
from agentobs_sdk import helpers, model_call
from agentobs_sdk.instrumentation import _common

MAX_LINES = 400


def test_every_sdk_module_is_at_most_400_lines() -> None:
    package = Path(agentobs_sdk.__file__).parent
    too_long = {str(p.relative_to(package)): n for p in sorted(package.rglob("*.py"))
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert too_long == {}


def test_the_model_call_is_importable_where_it_was() -> None:
    assert helpers.LLMCall is model_call.LLMCall is agentobs_sdk.LLMCall is _common.LLMCall
    assert helpers.record_llm_usage is model_call.record_llm_usage is agentobs_sdk.record_llm_usage
    from agentobs_sdk.helpers import OTHER_ERROR_TYPE, AgentRun, Decision, ReasoningStep, ToolCall, llm_call
    assert (OTHER_ERROR_TYPE, AgentRun, Decision, ReasoningStep, ToolCall) == (
        helpers.OTHER_ERROR_TYPE, agentobs_sdk.AgentRun, agentobs_sdk.Decision, agentobs_sdk.ReasoningStep,
        agentobs_sdk.ToolCall)
    with llm_call("m", provider="p") as call:
        assert isinstance(call, model_call.LLMCall)
