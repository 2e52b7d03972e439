"""The Prometheus series contract: every metric name, label and bucket boundary the SDK emits.

Alert rules and Grafana dashboards elsewhere in the project query these names, so this module is
the single place they are defined. `metrics.py` builds its collectors from `SERIES` and nothing
else; `emitted_series(mode)` lists every sample name a scrape of an SDK process can return in a
semantic-convention mode (`semconv.Mode`: the v1.41.0 names, the GenAI repository's latest names,
or both); and `promql_metric_names()` / `unknown_series()` let a test fail when a rule or dashboard
queries a series that nothing emits in the mode the webhook injects (`semconv.PROJECT_DEFAULT_MODE`,
the latest names).

Naming follows the OpenTelemetry-to-Prometheus translation of the GenAI semantic conventions
(dots become underscores, `{token}` units are dropped, seconds gain `_seconds`, counters gain
`_total`: `gen_ai.client.inference.usage.input_tokens` becomes
`gen_ai_client_inference_usage_input_tokens_total`), and an `agentobs_agent_` prefix for the SDK's
own agent metrics so they cannot be confused with the operator's `agentobs_*` series.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .promql import promql_metric_names  # re-exported: part of the contract's API
from .semconv import Mode

__all__ = ["SERIES", "SeriesSpec", "emitted_series", "promql_metric_names", "series_for", "unknown_series"]

Kind = Literal["counter", "histogram", "gauge"]

# Bucket boundaries from the GenAI semantic conventions (ExplicitBucketBoundaries advice).
TOKEN_BUCKETS: tuple[float, ...] = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)
GENAI_DURATION_BUCKETS: tuple[float, ...] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)
# Agent runs span many model and tool round trips, so they reach further than one LLM call.
AGENT_RUN_BUCKETS: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800,
)
# gen_ai.invoke_agent.duration's ExplicitBucketBoundaries advice (GenAI repository).
INVOKE_AGENT_BUCKETS: tuple[float, ...] = (
    0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4, 204.8, 409.6,
)
TOOL_CALL_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)
CONFIDENCE_BUCKETS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)

# Label names, shared by metrics.py and the rules/dashboards that group by them.
L_TOKEN_TYPE = "gen_ai_token_type"  # noqa: S105 - a label name, not a secret
L_OPERATION = "gen_ai_operation_name"
L_PROVIDER = "gen_ai_provider_name"
L_REQUEST_MODEL = "gen_ai_request_model"
L_RESPONSE_MODEL = "gen_ai_response_model"
L_ERROR_TYPE = "error_type"
L_SERVER_ADDRESS = "server_address"
L_SERVER_PORT = "server_port"
L_TOKEN_MODALITY = "gen_ai_token_modality"  # noqa: S105 - a label name
L_AGENT_NAME = "gen_ai_agent_name"
L_TOOL_NAME = "gen_ai_tool_name"
L_TOOL_TYPE = "gen_ai_tool_type"
L_AGENT = "agent"
L_STATUS = "status"
L_TOOL = "tool"
L_DECISION = "decision"
L_SERVICE = "service"
L_AGENT_ID = "agent_id"
L_VERSION = "version"

STATUS_OK = "ok"
STATUS_ERROR = "error"
# Cancelled (asyncio), neither ok nor failed: kept apart so error ratios do not count a stop
# button or a TaskGroup sibling's failure, and latency panels can leave the cut-short runs out.
STATUS_CANCELLED = "cancelled"

ALL_MODES = frozenset(Mode)
OLD_MODES = frozenset({Mode.OLD, Mode.DUP})
LATEST_MODES = frozenset({Mode.LATEST, Mode.DUP})


@dataclass(frozen=True)
class SeriesSpec:
    """One metric family: its Prometheus name (without type suffixes), type, labels, buckets."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    otel_name: str | None = None  # the semantic-convention instrument this family renders
    unit: str = ""
    modes: frozenset[Mode] = ALL_MODES  # the semantic-convention modes that emit it

    def sample_names(self) -> frozenset[str]:
        """Names of the samples a scrape returns for this family (prometheus-client rendering)."""
        if self.kind == "counter":
            return frozenset({f"{self.name}_total", f"{self.name}_created"})
        if self.kind == "histogram":
            return frozenset(f"{self.name}{s}" for s in ("_bucket", "_sum", "_count", "_created"))
        return frozenset({self.name})


def _genai(otel: str, kind: Kind, what: str, labels: tuple[str, ...], *, buckets: tuple[float, ...] = (),
           unit: str = "", modes: frozenset[Mode] = ALL_MODES) -> SeriesSpec:
    """A GenAI semantic-convention family, named by the OTel-to-Prometheus translation of `otel`."""
    name = otel.replace(".", "_") + ("_seconds" if unit == "s" else "")
    return SeriesSpec(name, kind, f"{what} ({otel})", labels, buckets, otel, unit, modes)


def _agent(name: str, kind: Kind, what: str, labels: tuple[str, ...], *, buckets: tuple[float, ...] = (),
           unit: str = "", modes: frozenset[Mode] = ALL_MODES) -> SeriesSpec:
    """One of the SDK's own agent families (`agentobs_agent_` + `name`)."""
    return SeriesSpec(f"agentobs_agent_{name}", kind, what, labels, buckets, None, unit, modes)


# The v1.41.0 families keep the labels this SDK always emitted (the transition plan asks for no
# change without the opt-in); the latest ones add server.address / server.port.
_MODEL_OLD = (L_OPERATION, L_PROVIDER, L_REQUEST_MODEL, L_RESPONSE_MODEL)
_MODEL = (*_MODEL_OLD, L_SERVER_ADDRESS, L_SERVER_PORT)

# --- model calls, v1.41.0 names ---------------------------------------------------------------------

TOKEN_USAGE = _genai("gen_ai.client.token.usage", "histogram",
                     "Number of input and output tokens used per GenAI operation", (L_TOKEN_TYPE, *_MODEL_OLD),
                     buckets=TOKEN_BUCKETS, unit="{token}", modes=OLD_MODES)
# Every operation in the v1.41.0 names; only non-inference operations (embeddings) in the latest
# (which would add server labels: the family is shared, so it keeps the v1.41.0 labels).
OPERATION_DURATION = _genai("gen_ai.client.operation.duration", "histogram", "Duration of GenAI client operations",
                            (*_MODEL_OLD, L_ERROR_TYPE), buckets=GENAI_DURATION_BUCKETS, unit="s")
OPERATION_TTFC = _genai("gen_ai.client.operation.time_to_first_chunk", "histogram",
                        "Time to the first chunk of a streamed response", _MODEL_OLD,
                        buckets=GENAI_DURATION_BUCKETS, unit="s", modes=OLD_MODES)

# --- model calls, latest names (semantic-conventions-genai) --------------------------------------

INFERENCE_DURATION = _genai("gen_ai.client.inference.duration", "histogram", "Duration of GenAI inference operations",
                            (*_MODEL, L_ERROR_TYPE), buckets=GENAI_DURATION_BUCKETS, unit="s", modes=LATEST_MODES)
INFERENCE_TTFC = _genai("gen_ai.client.inference.time_to_first_chunk", "histogram",
                        "Time to the first chunk of a streamed response", _MODEL,
                        buckets=GENAI_DURATION_BUCKETS, unit="s", modes=LATEST_MODES)


def _usage(direction: str, kind: str, what: str) -> SeriesSpec:
    return _genai(f"gen_ai.client.inference.usage.{kind}{direction}_tokens", "counter", what,
                  (*_MODEL, L_TOKEN_MODALITY), unit="{token}", modes=LATEST_MODES)


USAGE_INPUT = _usage("input", "", "Input tokens used, cached ones included")
USAGE_OUTPUT = _usage("output", "", "Output tokens used, reasoning ones included")
USAGE_CACHE_READ = _usage("input", "cache_read.", "Input tokens served from a provider cache")
USAGE_CACHE_WRITE = _usage("input", "cache_write.", "Input tokens written to a provider cache")
USAGE_REASONING = _usage("output", "reasoning.", "Output tokens used for reasoning")


def _per_operation(direction: str) -> SeriesSpec:
    return _genai(f"gen_ai.client.inference.operation.{direction}_tokens", "histogram",
                  f"{direction.capitalize()} tokens per inference", (*_MODEL, L_ERROR_TYPE),
                  buckets=TOKEN_BUCKETS, unit="{token}", modes=LATEST_MODES)


OPERATION_INPUT_TOKENS = _per_operation("input")
OPERATION_OUTPUT_TOKENS = _per_operation("output")

# --- agents and tools ---------------------------------------------------------------------------

INVOKE_AGENT_DURATION = _genai("gen_ai.invoke_agent.duration", "histogram", "Duration of one agent invocation",
                               (L_AGENT_NAME, L_ERROR_TYPE), buckets=INVOKE_AGENT_BUCKETS, unit="s",
                               modes=LATEST_MODES)
EXECUTE_TOOL_DURATION = _genai("gen_ai.execute_tool.duration", "histogram", "Duration of one tool execution",
                               (L_AGENT_NAME, L_TOOL_NAME, L_TOOL_TYPE, L_ERROR_TYPE),
                               buckets=GENAI_DURATION_BUCKETS, unit="s", modes=LATEST_MODES)
AGENT_RUN_DURATION = _agent("run_duration_seconds", "histogram", "Duration of one agent run (invoke_agent), by outcome",
                            (L_AGENT, L_STATUS), buckets=AGENT_RUN_BUCKETS, unit="s", modes=OLD_MODES)
TOOL_CALL_DURATION = _agent("tool_call_duration_seconds", "histogram",
                            "Duration of tool executions (execute_tool), by outcome", (L_AGENT, L_TOOL, L_STATUS),
                            buckets=TOOL_CALL_BUCKETS, unit="s", modes=OLD_MODES)
TOOL_CALL_FAILURES = _agent("tool_call_failures", "counter", "Tool executions that failed, by error type",
                            (L_AGENT, L_TOOL, L_ERROR_TYPE), modes=OLD_MODES)
DECISIONS = _agent("decisions", "counter", "Decisions the agent took, by decision point", (L_AGENT, L_DECISION))
DECISION_CONFIDENCE = _agent("decision_confidence", "histogram",
                             "Confidence (0..1) the agent reported for its decisions", (L_AGENT, L_DECISION),
                             buckets=CONFIDENCE_BUCKETS, unit="1")
REASONING_STEPS = _agent("reasoning_steps", "counter", "Reasoning steps the agent went through", (L_AGENT,))
ERRORS = _agent("errors", "counter",
                "Exceptions raised inside instrumented agent operations, by operation and error type",
                (L_AGENT, L_OPERATION, L_ERROR_TYPE))
COST = _agent("cost_usd", "counter", "Money spent on model calls, in US dollars",
              (L_AGENT, L_PROVIDER, L_REQUEST_MODEL), unit="USD")
SDK_INFO = _agent("sdk_info", "gauge", "Always 1; labels identify the instrumented agent process",
                  (L_SERVICE, L_AGENT_ID, L_VERSION))
AUDIT_LAST_SEQ = _agent("audit_last_seq", "gauge",
                        "Sequence number of the newest durable audit record (an external witness against truncation)",
                        (L_AGENT_ID,))

SERIES: tuple[SeriesSpec, ...] = (
    TOKEN_USAGE,
    OPERATION_DURATION,
    OPERATION_TTFC,
    INFERENCE_DURATION,
    INFERENCE_TTFC,
    USAGE_INPUT,
    USAGE_OUTPUT,
    USAGE_CACHE_READ,
    USAGE_CACHE_WRITE,
    USAGE_REASONING,
    OPERATION_INPUT_TOKENS,
    OPERATION_OUTPUT_TOKENS,
    INVOKE_AGENT_DURATION,
    EXECUTE_TOOL_DURATION,
    AGENT_RUN_DURATION,
    TOOL_CALL_DURATION,
    TOOL_CALL_FAILURES,
    DECISIONS,
    DECISION_CONFIDENCE,
    REASONING_STEPS,
    ERRORS,
    COST,
    SDK_INFO,
    AUDIT_LAST_SEQ,
)

# Series names from these prefixes are the SDK's to emit; anything else a rule queries (`up`,
# `prometheus_*`, the operator's own series) is someone else's contract.
SDK_PREFIXES: tuple[str, ...] = ("gen_ai_", "agentobs_agent_")


def series_for(mode: Mode) -> tuple[SeriesSpec, ...]:
    """The families an SDK process in `mode` exposes."""
    return tuple(spec for spec in SERIES if mode in spec.modes)


def emitted_series(mode: Mode = Mode.OLD) -> frozenset[str]:
    """Every sample name an SDK process exposes in `mode` (default: what a process without
    OTEL_SEMCONV_STABILITY_OPT_IN emits), with `_bucket/_sum/_count/_total` forms. The stack's
    rules and dashboards are checked against `semconv.PROJECT_DEFAULT_MODE`, what the webhook injects."""
    names: set[str] = set()
    for spec in series_for(mode):
        names |= spec.sample_names()
    return frozenset(names)


def unknown_series(
    exprs: str | Iterable[str],
    *,
    prefixes: tuple[str, ...] | None = SDK_PREFIXES,
    known: Iterable[str] = (),
    mode: Mode = Mode.OLD,
) -> set[str]:
    """Series the expression(s) query that the SDK does not emit.

    Only names starting with one of `prefixes` are checked (the SDK's namespace); pass
    `prefixes=None` to check every name. `known` adds names emitted elsewhere (e.g. recording
    rules) so they are not reported. `mode` is the semantic-convention mode of the emitter.
    """
    if isinstance(exprs, str):
        exprs = [exprs]
    allowed = emitted_series(mode) | frozenset(known)
    missing: set[str] = set()
    for expr in exprs:
        for name in promql_metric_names(expr):
            if prefixes is not None and not name.startswith(prefixes):
                continue
            if name not in allowed:
                missing.add(name)
    return missing
