"""Prometheus metrics of one configured SDK instance: collectors, recording API, exposition server.

The collectors are built from `series.SERIES` only (the families of the configured
semantic-convention mode, `semconv.Mode`), registered in a private CollectorRegistry (so two
configurations, or a test and the application, never share state), and served with
prometheus-client's own HTTP server on the injected port. The recording methods speak the
agent's vocabulary and feed the v1.41.0 families, the latest ones, or both, as the mode says.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Required, TypedDict, Unpack

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from . import semconv, series
from .exposition import Exposition
from .semconv import Mode
from .series import SeriesSpec

# Label values come from callers. Attributes the semantic conventions require (operation,
# provider, request model) get a visible placeholder when missing; optional ones (response model,
# error type) stay empty, which Prometheus treats as the label being absent.
_UNKNOWN = "unknown"
# Label values repeat (one agent, a few tools and models), so the labelled child of a family is
# kept per value tuple: one dict lookup where prometheus_client's labels() checks, converts and
# locks on every call. Bounded, for callers whose values never repeat: past it, labels() as before.
_CHILDREN_MAX = 10_000


def _label(value: object) -> str:
    if value is None:
        return _UNKNOWN
    text = str(value)
    return text if text else _UNKNOWN


def _histogram(spec: SeriesSpec, registry: CollectorRegistry, built: set[str]) -> Histogram:
    if spec.kind != "histogram":
        raise TypeError(f"{spec.name} is a {spec.kind}, not a histogram")
    built.add(spec.name)
    return Histogram(spec.name, spec.help, spec.labels, registry=registry, buckets=spec.buckets)


def _counter(spec: SeriesSpec, registry: CollectorRegistry, built: set[str]) -> Counter:
    if spec.kind != "counter":
        raise TypeError(f"{spec.name} is a {spec.kind}, not a counter")
    built.add(spec.name)
    return Counter(spec.name, spec.help, spec.labels, registry=registry)


def _gauge(spec: SeriesSpec, registry: CollectorRegistry, built: set[str]) -> Gauge:
    if spec.kind != "gauge":
        raise TypeError(f"{spec.name} is a {spec.kind}, not a gauge")
    built.add(spec.name)
    return Gauge(spec.name, spec.help, spec.labels, registry=registry)


def _status(ok: bool, cancelled: bool) -> str:
    if cancelled:
        return series.STATUS_CANCELLED
    return series.STATUS_OK if ok else series.STATUS_ERROR


def _port(value: int | None) -> str:
    return str(value) if value is not None else ""


class ModelCall(TypedDict, total=False):
    """The model call a recording is about, as the `record_*` methods take it (by keyword)."""

    operation: Required[str]
    provider: Required[str | None]
    request_model: Required[str | None]
    response_model: Required[str | None]
    server_address: str | None
    server_port: int | None


# Spelled out: with postponed annotations, TypedDict cannot see Required[] at class creation.
_CALL_REQUIRED = frozenset({"operation", "provider", "request_model", "response_model"})
_CALL_KEYS = frozenset(ModelCall.__annotations__)


def _model_labels(call: ModelCall) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(v1.41.0 label values, latest label values) of a model call."""
    if not _CALL_REQUIRED <= call.keys() <= _CALL_KEYS:
        missing, unknown = sorted(_CALL_REQUIRED - call.keys()), sorted(call.keys() - _CALL_KEYS)
        raise TypeError(f"model call labels: missing {missing}, unknown {unknown}")
    old = (_label(call["operation"]), _label(call["provider"]), _label(call["request_model"]),
           call["response_model"] or "")
    return old, (*old, call.get("server_address") or "", _port(call.get("server_port")))


class AgentMetrics:
    """The SDK's metric families in one registry, with methods in the agent's vocabulary."""

    def __init__(self, registry: CollectorRegistry | None = None, mode: Mode = Mode.OLD) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.mode = mode
        reg, built = self.registry, set[str]()
        self._hist: dict[str, Histogram] = {}
        self._count: dict[str, Counter] = {}
        for spec in series.series_for(mode):
            if spec.kind == "histogram":
                self._hist[spec.name] = _histogram(spec, reg, built)
            elif spec.kind == "counter":
                self._count[spec.name] = _counter(spec, reg, built)
        self._info = _gauge(series.SDK_INFO, reg, built)
        self._audit_seq = _gauge(series.AUDIT_LAST_SEQ, reg, built)
        # A family added to the contract but not wired here would silently never be emitted.
        unwired = {spec.name for spec in series.series_for(mode)} - built
        if unwired:
            raise RuntimeError(f"series without a collector: {sorted(unwired)}")
        self._server: Exposition | None = None
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}
        self._usage_plans: dict[tuple[object, ...], tuple[Callable[[float], None], ...]] = {}

    def _of(self, family: Histogram | Counter | Gauge, *values: str) -> Any:
        """`family.labels(*values)`, kept (see _CHILDREN_MAX)."""
        key = (family, values)
        child = self._children.get(key)
        if child is None:
            child = family.labels(*values)
            if len(self._children) < _CHILDREN_MAX:
                self._children[key] = child
        return child

    def _h(self, spec: SeriesSpec) -> Histogram | None:
        return self._hist.get(spec.name)

    def _c(self, spec: SeriesSpec) -> Counter | None:
        return self._count.get(spec.name)

    # --- GenAI semantic-convention metrics --------------------------------------------------

    def record_token_usage(self, token_type: str, tokens: int, *, error_type: str | None = None,
                           **call: Unpack[ModelCall]) -> None:
        """Tokens of one operation; token_type is `input` or `output`.

        v1.41.0: one gen_ai.client.token.usage observation. Latest: the per-direction counter
        (modality `unknown`: providers report totals) and, for inference, the per-operation histogram.
        """
        # Called once per direction of every model call: what to update is planned once per label set.
        key = (token_type, error_type, *call.items())
        try:
            plan = self._usage_plans.get(key)
        except TypeError:  # an unhashable label value: str() makes it a label all the same
            plan, key = None, ()
        if plan is None:
            plan = self._usage_plan(token_type, error_type, call)
            if key and len(self._usage_plans) < _CHILDREN_MAX:
                self._usage_plans[key] = plan
        for update in plan:
            update(tokens)

    def _usage_plan(self, token_type: str, error_type: str | None,
                    call: ModelCall) -> tuple[Callable[[float], None], ...]:
        old, model = _model_labels(call)
        plan: list[Callable[[float], None]] = []
        hist = self._h(series.TOKEN_USAGE)
        if hist is not None:
            plan.append(self._of(hist, _label(token_type), *old).observe)
        direction = {"input": (series.USAGE_INPUT, series.OPERATION_INPUT_TOKENS),
                     "output": (series.USAGE_OUTPUT, series.OPERATION_OUTPUT_TOKENS)}.get(token_type)
        if not self.mode.latest or direction is None:
            return tuple(plan)
        counter, per_op = self._c(direction[0]), self._h(direction[1])
        if counter is not None:
            plan.append(self._of(counter, *model, semconv.MODALITY_UNKNOWN).inc)
        if per_op is not None and semconv.is_inference(call["operation"]):
            plan.append(self._of(per_op, *model, error_type or "").observe)
        return tuple(plan)

    def record_token_details(self, *, cache_read: int | None, cache_write: int | None, reasoning: int | None,
                             **call: Unpack[ModelCall]) -> None:
        """Cache and reasoning tokens (subsets of input/output): latest counters only, v1.41.0 has none."""
        _, model = _model_labels(call)
        for spec, value in ((series.USAGE_CACHE_READ, cache_read), (series.USAGE_CACHE_WRITE, cache_write),
                            (series.USAGE_REASONING, reasoning)):
            counter = self._c(spec)
            if counter is not None and value is not None:
                self._of(counter, *model, semconv.MODALITY_UNKNOWN).inc(value)

    def record_operation_duration(self, seconds: float, *, error_type: str | None = None,
                                  **call: Unpack[ModelCall]) -> None:
        # Successful calls carry an empty error_type, which Prometheus treats as "label absent",
        # so `{error_type!=""}` selects exactly the failed operations.
        old, model = _model_labels(call)
        inference = semconv.is_inference(call["operation"])
        # v1.41.0 puts every operation on gen_ai.client.operation.duration; the latest names keep
        # it for the others only. One observation per family, also in DUP mode.
        op_hist = self._h(series.OPERATION_DURATION)
        if op_hist is not None and (self.mode.old or not inference):
            self._of(op_hist, *old, error_type or "").observe(seconds)
        inf_hist = self._h(series.INFERENCE_DURATION)
        if inf_hist is not None and inference:
            self._of(inf_hist, *model, error_type or "").observe(seconds)

    def record_time_to_first_chunk(self, seconds: float, **call: Unpack[ModelCall]) -> None:
        old, model = _model_labels(call)
        hist = self._h(series.OPERATION_TTFC)
        if hist is not None:
            self._of(hist, *old).observe(seconds)
        hist = self._h(series.INFERENCE_TTFC)
        if hist is not None:
            self._of(hist, *model).observe(seconds)

    # --- agent metrics -------------------------------------------------------------------------

    def record_agent_run(self, agent: str, seconds: float, *, ok: bool, error_type: str | None = None,
                         cancelled: bool = False) -> None:
        # A cancelled run is `status="cancelled"` where there is a status label; the semantic
        # conventions' families have only error_type, which stays empty for it as on its span
        # (error.type is set for failures only, and a cancellation is not one).
        run = self._h(series.AGENT_RUN_DURATION)
        if run is not None:
            self._of(run, _label(agent), _status(ok, cancelled)).observe(seconds)
        invoke = self._h(series.INVOKE_AGENT_DURATION)
        if invoke is not None:
            err = "" if ok else (error_type or "_OTHER")
            self._of(invoke, _label(agent), err).observe(seconds)

    def record_tool_call(self, agent: str, tool: str, seconds: float, *, error_type: str | None,
                         tool_type: str | None = None, cancelled: bool = False) -> None:
        """`cancelled`: see record_agent_run (error_type is None then: not a failure)."""
        duration = self._h(series.TOOL_CALL_DURATION)
        if duration is not None:
            self._of(duration, _label(agent), _label(tool), _status(error_type is None, cancelled)).observe(seconds)
        failures = self._c(series.TOOL_CALL_FAILURES)
        if failures is not None and error_type is not None:
            self._of(failures, _label(agent), _label(tool), error_type).inc()
        execute = self._h(series.EXECUTE_TOOL_DURATION)
        if execute is not None:
            self._of(execute, _label(agent), _label(tool), tool_type or "", error_type or "").observe(seconds)

    def record_decision(self, agent: str, decision: str, confidence: float | None) -> None:
        self._of(self._count[series.DECISIONS.name], _label(agent), _label(decision)).inc()
        if confidence is not None:
            self._of(self._hist[series.DECISION_CONFIDENCE.name], _label(agent), _label(decision)).observe(confidence)

    def record_reasoning_step(self, agent: str) -> None:
        self._of(self._count[series.REASONING_STEPS.name], _label(agent)).inc()

    def record_error(self, agent: str, operation: str, error_type: str) -> None:
        self._of(self._count[series.ERRORS.name], _label(agent), _label(operation), _label(error_type)).inc()

    def add_cost(self, agent: str, usd: float, *, provider: str | None, model: str | None) -> None:
        if usd < 0:
            raise ValueError(f"cost must not be negative, got {usd}")
        self._of(self._count[series.COST.name], _label(agent), _label(provider), _label(model)).inc(usd)

    def set_info(self, *, service: str, agent_id: str, version: str) -> None:
        self._of(self._info, _label(service), _label(agent_id), _label(version)).set(1)

    def set_audit_seq(self, agent_id: str, seq: int) -> None:
        self._of(self._audit_seq, _label(agent_id)).set(seq)

    # --- exposition ---------------------------------------------------------------------------

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:  # noqa: S104 - pods are scraped from outside
        """Start the exposition HTTP server; returns the bound port (useful with port 0)."""
        self._server = Exposition(self.registry, port, addr)
        return self._server.port

    def serving(self) -> bool:
        """True when this process answers scrapes (not a child forked after `serve()`)."""
        return self._server is not None and self._server.serving()

    def wait_for_scrape(self, timeout: float) -> bool:
        """Wait for one scrape that starts after this call (see exposition.py); False on timeout."""
        return self._server.wait_for_scrape(timeout) if self._server is not None else False

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def exposition(self) -> bytes:
        """The current text exposition, as a scrape would see it."""
        return generate_latest(self.registry)

    def sample(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """Value of one sample (e.g. `agentobs_agent_decisions_total`), for tests and tools."""
        return self.registry.get_sample_value(name, dict(labels or {}))


class DisabledMetrics(AgentMetrics):
    """OTEL_SDK_DISABLED: every recording call is a no-op and nothing is served."""

    def __getattribute__(self, name: str) -> object:
        if name.startswith(("record_", "add_", "set_")):
            return _ignore
        return super().__getattribute__(name)


def _ignore(*args: object, **kwargs: object) -> None:
    return None
