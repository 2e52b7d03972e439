"""Which generation of the OpenTelemetry GenAI semantic conventions the SDK emits, and their names.

The GenAI conventions left open-telemetry/semantic-conventions after v1.41.0 for their own
repository (open-telemetry/semantic-conventions-genai), and changed there: the token histogram
became per-direction counters and histograms, inference got its own duration metric, agents and
tools got duration metrics, cache creation tokens became cache *write* tokens, and internal agent
spans lost `gen_ai.agent.id`/`gen_ai.provider.name`. The conventions' transition plan says an
instrumentation keeps emitting the names it emitted until `OTEL_SEMCONV_STABILITY_OPT_IN` (a comma
list) contains `gen_ai_latest_experimental`. This module reads that variable into a `Mode`:

- not set (or no GenAI value): `OLD`, the v1.41.0 names this SDK has always emitted;
- `gen_ai_latest_experimental`: `LATEST`, the GenAI repository's names only;
- `gen_ai_latest_experimental/dup`: `DUP`, both (the `/dup` suffix is the other conventions'
  migration pattern, e.g. `http/dup`; the GenAI plan itself defines no "both" value).

The agentobs webhook injects `PROJECT_DEFAULT_OPT_IN`, so instrumented pods emit the latest
names and the stack's rules and dashboards query those. The pinned sources are in
`tests/sdk/semconv/genai.yaml`, which the tests compare the emitted names against.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping

log = logging.getLogger("agentobs_sdk")

ENV_OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
OPT_IN_LATEST = "gen_ai_latest_experimental"
OPT_IN_DUP = "gen_ai_latest_experimental/dup"
# What the agentobs webhook injects (operator/agentobs/injection.py); a unit test keeps them equal.
PROJECT_DEFAULT_OPT_IN = OPT_IN_LATEST

OLD_VERSION = "v1.41.0"  # open-telemetry/semantic-conventions, the last GenAI release there
LATEST_SOURCE = "open-telemetry/semantic-conventions-genai@024a4f944a1291fcb627c9c47da69e79868dd15e"


class Mode(enum.Enum):
    OLD = "old"
    LATEST = "latest"
    DUP = "dup"

    @property
    def old(self) -> bool:
        """Emit the v1.41.0 names."""
        return self is not Mode.LATEST

    @property
    def latest(self) -> bool:
        """Emit the GenAI repository's names."""
        return self is not Mode.OLD


def parse_mode(value: str | None) -> Mode:
    """The mode an OTEL_SEMCONV_STABILITY_OPT_IN value selects (other categories are ignored)."""
    values = {part.strip().lower() for part in (value or "").split(",") if part.strip()}
    if OPT_IN_DUP in values:
        return Mode.DUP
    if OPT_IN_LATEST in values:
        return Mode.LATEST
    return Mode.OLD


def mode_from_env(env: Mapping[str, str]) -> Mode:
    raw = env.get(ENV_OPT_IN)
    unknown = [part.strip() for part in (raw or "").split(",")
               if part.strip().lower().startswith("gen_ai") and part.strip().lower() not in (OPT_IN_LATEST, OPT_IN_DUP)]
    mode = parse_mode(raw)
    if unknown and mode is Mode.OLD:
        # A typo here is otherwise silent: the agent emits the v1.41.0 names while the stack's
        # dashboards and alerts query the latest ones, and every panel stays empty.
        log.warning("agentobs: %s=%r: %s is no GenAI value this SDK knows (%s, %s); emitting the %s names",
                    ENV_OPT_IN, raw, ", ".join(unknown), OPT_IN_LATEST, OPT_IN_DUP, OLD_VERSION)
    return mode


PROJECT_DEFAULT_MODE = parse_mode(PROJECT_DEFAULT_OPT_IN)

# --- attribute keys ------------------------------------------------------------------------------

OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
REQUEST_STREAM = "gen_ai.request.stream"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_TOP_P = "gen_ai.request.top_p"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
USAGE_INPUT = "gen_ai.usage.input_tokens"
USAGE_OUTPUT = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ = "gen_ai.usage.cache_read.input_tokens"
USAGE_CACHE_WRITE = "gen_ai.usage.cache_write.input_tokens"  # latest
USAGE_CACHE_CREATION = "gen_ai.usage.cache_creation.input_tokens"  # v1.41.0
USAGE_REASONING = "gen_ai.usage.reasoning.output_tokens"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_CALL_RESULT = "gen_ai.tool.call.result"
AGENT_NAME = "gen_ai.agent.name"
AGENT_ID = "gen_ai.agent.id"
TOOL_NAME = "gen_ai.tool.name"
TOOL_TYPE = "gen_ai.tool.type"
TOKEN_TYPE = "gen_ai.token.type"  # noqa: S105 - an attribute key (v1.41.0)
TOKEN_MODALITY = "gen_ai.token.modality"  # noqa: S105 - an attribute key (latest)
# The event that carries inputs and outputs (the same name in both generations).
EVENT_OPERATION_DETAILS = "gen_ai.client.inference.operation.details"

# Operations that are model inference (the latest names move their duration and streaming
# metrics to gen_ai.client.inference.*; other operations such as embeddings stay on
# gen_ai.client.operation.duration).
INFERENCE_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})

# The token modality is required on the latest usage counters; providers report totals without a
# per-modality split, which the conventions' `unknown` value stands for.
MODALITY_UNKNOWN = "unknown"


def cache_write_attribute(mode: Mode) -> tuple[str, ...]:
    """Span attribute(s) for input tokens written to a provider cache, per mode."""
    if mode is Mode.OLD:
        return (USAGE_CACHE_CREATION,)
    if mode is Mode.LATEST:
        return (USAGE_CACHE_WRITE,)
    return (USAGE_CACHE_CREATION, USAGE_CACHE_WRITE)


def is_inference(operation: str) -> bool:
    return operation in INFERENCE_OPERATIONS
