"""agentobs SDK: what an instrumented AI agent emits for the agentobs observability stack.

Call `configure()` once at start-up, then use the helpers::

    import agentobs_sdk as aobs

    handle = aobs.configure()
    with aobs.agent_run("planner"):
        with aobs.llm_call("gpt-4o", provider="openai") as call:
            call.record_usage(input_tokens=812, output_tokens=96)
        with aobs.tool_call("search", audit=True):
            ...
        with aobs.decision("route", choice="search", confidence=0.82, alternatives=["answer"]):
            ...
    handle.shutdown()

`configure()` reads only the environment the agentobs admission webhook injects; with none of it
set it still works (spans are not exported, metrics are not served, no audit trail) and logs one
line saying so. The variables:

OTEL_SERVICE_NAME
    `service.name` of the spans (else `service.name` in OTEL_RESOURCE_ATTRIBUTES, else
    `unknown_service:python`).
OTEL_EXPORTER_OTLP_ENDPOINT
    Base URL of the OTLP receiver, e.g. `https://collector:4317` (gRPC) or `https://collector:4318`
    (HTTP; `/v1/traces` is appended). Unset: no exporter. `http://` means plaintext, anything
    else TLS.
OTEL_EXPORTER_OTLP_PROTOCOL
    `grpc` (default) or `http/protobuf`.
OTEL_EXPORTER_OTLP_CERTIFICATE
    PEM file of the CA that signed the receiver's certificate (the injected CA bundle).
OTEL_RESOURCE_ATTRIBUTES
    `key=value,...` resource attributes (k8s namespace, pod, node, owner), percent-decoded.
OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG
    `always_on`, `always_off`, `traceidratio`, `parentbased_always_on` (default),
    `parentbased_always_off`, `parentbased_traceidratio`; the argument is the ratio in [0, 1].
AGENTOBS_METRICS_PORT
    Port of the Prometheus exposition endpoint (`/metrics`, all interfaces). Unset: metrics are
    recorded in memory only. 0 picks a free port (see `Handle.metrics_port`).
AGENTOBS_AUDIT_DIR
    Directory of the audit trail (hash-chained JSONL segments). Unset: no audit trail. Set but
    not writable: `configure()` raises.
AGENTOBS_AUDIT_RETENTION_DAYS
    Delete audit segments older than this many days (the chain records each deletion). Unset:
    keep everything.
AGENTOBS_AGENT_ID
    Identity of this agent instance in logs, audit records, `gen_ai.agent.id` and the
    `agentobs_agent_sdk_info` series (else the service name).
AGENTOBS_AUDIT_KEY_FILE
    File holding the audit key (the webhook mounts the resource's `<name>-audit-key` Secret
    read-only): records are then HMAC-chained. Unset: the trail is unkeyed, and says so.
AGENTOBS_METRICS_LINGER_SECONDS
    With metrics served, how long `shutdown()` waits for one last scrape (default 25; 0: none).
AGENTOBS_LOG_LEVEL
    Root logging level to set (e.g. `DEBUG`). Unset: INFO when the SDK installs the JSON handler.
OTEL_SDK_DISABLED
    `true` turns spans and metrics off and leaves the LLM clients uninstrumented (the audit trail
    and logs stay); any value but true/false is logged and ignored.
OTEL_TRACES_EXPORTER
    `none` (what the webhook injects when the resource's tracing is off): spans are not exported.
    `otlp` (default): exported when OTEL_EXPORTER_OTLP_ENDPOINT is set. Others are logged; otlp.

See sdk/README.md for the full guide (streams, threads, the audit trail and its verification).

GenAI settings (module `options`; conventions, versions and deviations in
docs/genai-conventions.md): OTEL_SEMCONV_STABILITY_OPT_IN (the webhook injects
`gen_ai_latest_experimental`), OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT (content capture,
off by default; redaction hook `content.set_redactor`), AGENTOBS_CONTENT_MAX_CHARS,
AGENTOBS_PRICES / AGENTOBS_PRICES_FILE (price table for the cost metric, module `pricing`), and
AGENTOBS_INSTRUMENT_CLIENTS (`false` leaves the `openai` and `anthropic` clients uninstrumented;
`instrumentation`). Install the clients' extras with `pip install agentobs-sdk[openai,anthropic]`.

Modules: `config` (configure, Handle), `tracing`, `metrics`, `series` (the Prometheus series
contract), `logs` (JSON formatter), `helpers` (agent run, LLM call, tool call, reasoning step,
decision; built on `instrument`; the LLM call's operation is in `model_call`), `threads`
(carrying context into thread pools), `processes` (what a process forked after configure()
keeps), `exposition` (the /metrics endpoint), `audit` (trail writer, verify, query), `cli`
(`agentobs-audit`).
"""

from typing import Unpack

from opentelemetry import trace

from . import processes as _processes  # noqa: F401 - registers the fork hooks (processes.py)
from .audit import AuditError, AuditReceipt, AuditTrail, load_key, query, verify
from .audit.writer import AuditFields as _AuditFields
from .config import ENV_VARS, ConfigurationError, Handle, Settings, configure, current_handle
from .helpers import (
    AgentRun,
    Decision,
    LLMCall,
    ReasoningStep,
    ToolCall,
    agent_run,
    decision,
    llm_call,
    reasoning_step,
    record_llm_usage,
    tool_call,
)

# The SDK's internals it calls here are imported under private names: the package exports
# exactly `__all__` (tests/sdk/test_sdk_readme.py).
from .instrument import Operation, current_operation
from .instrument import current_agent as _current_agent
from .instrument import warn_no_trail as _warn_no_trail
from .logs import JsonFormatter
from .logs import install_record_factory as _install_record_factory
from .series import emitted_series, promql_metric_names, unknown_series
from .threads import ContextThreadPoolExecutor, in_context, submit

# At import, not only in configure(): an agent typically sets up logging with a format naming
# %(trace_id)s and logs its first lines before calling configure(); records without the fields
# would make each of those lines a "--- Logging error ---". Outside a span the fields are empty.
_install_record_factory()

__all__ = [
    "ENV_VARS",
    "AgentRun",
    "AuditError",
    "AuditReceipt",
    "AuditTrail",
    "ConfigurationError",
    "ContextThreadPoolExecutor",
    "Decision",
    "Handle",
    "JsonFormatter",
    "LLMCall",
    "Operation",
    "ReasoningStep",
    "Settings",
    "ToolCall",
    "agent_run",
    "audit_event",
    "configure",
    "current_handle",
    "current_operation",
    "decision",
    "emitted_series",
    "in_context",
    "llm_call",
    "load_key",
    "promql_metric_names",
    "query",
    "reasoning_step",
    "record_llm_usage",
    "submit",
    "tool_call",
    "unknown_series",
    "verify",
]


def audit_event(action: str, **fields: Unpack[_AuditFields]) -> AuditReceipt | None:
    """Append to the configured audit trail (None, with a warning saying why, when there is none:
    `AGENTOBS_AUDIT_DIR` not injected, `configure()` not called, or the SDK shut down).

    Fields as `AuditTrail.append`: agent, user, result, resource, details. Like the records the
    helpers write, `agent` defaults to the enclosing `agent_run`'s name (else the instance id)
    and `details` gets the current span's `trace_id`, unless the caller gave them."""
    handle = current_handle()
    if handle is None or handle.audit is None:
        _warn_no_trail(action, handle)  # as for a helper's audit=True: a dropped record is said
        return None
    if fields.get("agent") is None:
        fields["agent"] = _current_agent()  # None outside an agent_run: the trail's default
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        details = dict(fields.get("details") or {})
        details.setdefault("trace_id", format(ctx.trace_id, "032x"))
        fields["details"] = details
    return handle.audit.append(action, **fields)
