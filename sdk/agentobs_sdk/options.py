"""The GenAI settings of `configure()`: convention mode, content capture, prices, client hooks.

Parsed from the same injected environment as the rest of `config.Settings` (which holds one
`GenAIOptions`); like the others, a bad value is logged and falls back to the safe default.

OTEL_SEMCONV_STABILITY_OPT_IN
    `gen_ai_latest_experimental` (what the webhook injects): the GenAI repository's latest names;
    `gen_ai_latest_experimental/dup`: both generations; unset: the v1.41.0 names (see `semconv`).
OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT
    `true` records prompts, completions, tool arguments and results (see `content`); default off.
AGENTOBS_CONTENT_MAX_CHARS
    Cap per captured value (default 4096).
AGENTOBS_PRICES, AGENTOBS_PRICES_FILE
    Price table for the cost metric (see `pricing`).
AGENTOBS_INSTRUMENT_CLIENTS
    `false` leaves the `openai` and `anthropic` clients alone; default on when they are installed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import content, pricing, semconv
from .semconv import Mode

log = logging.getLogger("agentobs_sdk")

ENV_CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENV_CONTENT_MAX_CHARS = "AGENTOBS_CONTENT_MAX_CHARS"
ENV_INSTRUMENT_CLIENTS = "AGENTOBS_INSTRUMENT_CLIENTS"

ENV_VARS: tuple[str, ...] = (
    semconv.ENV_OPT_IN, ENV_CAPTURE_CONTENT, ENV_CONTENT_MAX_CHARS, pricing.ENV_PRICES, pricing.ENV_PRICES_FILE,
    ENV_INSTRUMENT_CLIENTS,
)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    log.warning("agentobs: %s=%r is not true or false; using %s", name, raw, str(default).lower())
    return default


@dataclass(frozen=True)
class GenAIOptions:
    mode: Mode = Mode.OLD
    capture_content: bool = False
    content_max_chars: int = content.DEFAULT_MAX_CHARS
    prices: Mapping[str, pricing.Price] = field(default_factory=dict)
    instrument_clients: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GenAIOptions:
        max_chars = content.DEFAULT_MAX_CHARS
        raw = (env.get(ENV_CONTENT_MAX_CHARS) or "").strip()
        if raw:
            try:
                max_chars = int(raw)
                if max_chars < 16:
                    raise ValueError(raw)
            except ValueError:
                log.warning("agentobs: %s=%r is not a whole number >= 16; using %d", ENV_CONTENT_MAX_CHARS, raw,
                            content.DEFAULT_MAX_CHARS)
                max_chars = content.DEFAULT_MAX_CHARS
        return cls(
            mode=semconv.mode_from_env(env),
            capture_content=_flag(env, ENV_CAPTURE_CONTENT, False),
            content_max_chars=max_chars,
            prices=pricing.from_env(env),
            instrument_clients=_flag(env, ENV_INSTRUMENT_CLIENTS, True),
        )
