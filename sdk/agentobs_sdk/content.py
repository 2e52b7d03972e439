"""Content capture: prompts, completions, tool arguments and results on spans, off by default.

Message content is likely to carry personal data, so nothing is recorded unless the process was
configured with OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true (the variable the
OpenTelemetry GenAI instrumentations use). When on, content is serialised to JSON (the
conventions allow a JSON string on spans), passed through the redaction hook (`set_redactor`),
capped at AGENTOBS_CONTENT_MAX_CHARS characters (a truncated value ends with a marker and the
span gets `agentobs.content.truncated=true`), and recorded as the convention's attributes
(`gen_ai.input.messages`, `gen_ai.output.messages`, `gen_ai.system_instructions`,
`gen_ai.tool.call.arguments`, `gen_ai.tool.call.result`). Inputs and outputs of a model call are
also recorded as a `gen_ai.client.inference.operation.details` span event. A redactor that raises
drops the value rather than leak it unredacted.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from . import semconv

log = logging.getLogger("agentobs_sdk")

DEFAULT_MAX_CHARS = 4096
TRUNCATED_MARKER = "…[truncated]"

Redactor = Callable[[str, str], str]
"""(attribute key, JSON text) -> the text to record."""

_lock = threading.Lock()
_redactor: Redactor | None = None


def set_redactor(redactor: Redactor | None) -> None:
    """Install (or remove, with None) the hook every captured value passes through."""
    global _redactor
    with _lock:
        _redactor = redactor


def _settings() -> tuple[bool, int]:
    from .config import current_handle

    handle = current_handle()
    if handle is None:
        return False, DEFAULT_MAX_CHARS
    options = handle.settings.genai
    return options.capture_content, options.content_max_chars


def _to_text(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=_fallback, ensure_ascii=False, separators=(",", ":"))


def _fallback(value: object) -> object:
    # Client libraries return pydantic models; their plain-data form is what a reader wants.
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json", exclude_none=True)
    return str(value)


def prepare(key: str, value: object, max_chars: int) -> tuple[str, bool] | None:
    """The text to record for `key`: JSON, redacted, capped. None when redaction failed."""
    text = _to_text(value)
    redactor = _redactor
    if redactor is not None:
        try:
            text = redactor(key, text)
        except Exception:
            log.exception("agentobs: the content redactor failed on %s; the value is dropped", key)
            return None
    if len(text) > max_chars:
        keep = max(0, max_chars - len(TRUNCATED_MARKER))
        return text[:keep] + TRUNCATED_MARKER, True
    return text, False


def record_attribute(span: trace.Span, key: str, value: object) -> str | None:
    """Record one content attribute on `span` if capture is on; returns what was recorded."""
    enabled, max_chars = _settings()
    if not enabled or value is None:
        return None
    prepared = prepare(key, value, max_chars)
    if prepared is None:
        return None
    text, truncated = prepared
    span.set_attribute(key, text)
    if truncated:
        span.set_attribute("agentobs.content.truncated", True)
    return text


def record_input(span: trace.Span, messages: object, system: object = None) -> None:
    recorded: dict[str, AttributeValue] = {}
    for key, value in ((semconv.INPUT_MESSAGES, messages), (semconv.SYSTEM_INSTRUCTIONS, system)):
        text = record_attribute(span, key, value)
        if text is not None:
            recorded[key] = text
    if recorded:
        span.add_event(semconv.EVENT_OPERATION_DETAILS, recorded)


def record_output(span: trace.Span, messages: object) -> None:
    text = record_attribute(span, semconv.OUTPUT_MESSAGES, messages)
    if text is not None:
        span.add_event(semconv.EVENT_OPERATION_DETAILS, {semconv.OUTPUT_MESSAGES: text})
