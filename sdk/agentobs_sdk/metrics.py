"""Prometheus metrics of one configured SDK instance: collectors, recording API, exposition server.

The collectors are built from `series.SERIES` only, registered in a private CollectorRegistry
(so two configurations, or a test and the application, never share state), and served with
prometheus-client's own HTTP server on the injected port.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from . import series
from .exposition import Exposition
from .series import SeriesSpec

# Label values come from callers. Attributes the semantic conventions require (operation,
# provider, request model) get a visible placeholder when missing; optional ones (response model,
# error type) stay empty, which Prometheus treats as the label being absent.
_UNKNOWN = "unknown"


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


class AgentMetrics:
    """The SDK's metric families in one registry, with methods in the agent's vocabulary."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        reg, built = self.registry, set[str]()
        self._token_usage = _histogram(series.TOKEN_USAGE, reg, built)
        self._op_duration = _histogram(series.OPERATION_DURATION, reg, built)
        self._run_duration = _histogram(series.AGENT_RUN_DURATION, reg, built)
        self._tool_duration = _histogram(series.TOOL_CALL_DURATION, reg, built)
        self._tool_failures = _counter(series.TOOL_CALL_FAILURES, reg, built)
        self._decisions = _counter(series.DECISIONS, reg, built)
        self._confidence = _histogram(series.DECISION_CONFIDENCE, reg, built)
        self._steps = _counter(series.REASONING_STEPS, reg, built)
        self._errors = _counter(series.ERRORS, reg, built)
        self._cost = _counter(series.COST, reg, built)
        self._info = _gauge(series.SDK_INFO, reg, built)
        self._audit_seq = _gauge(series.AUDIT_LAST_SEQ, reg, built)
        # A family added to the contract but not wired here would silently never be emitted.
        unwired = {spec.name for spec in series.SERIES} - built
        if unwired:
            raise RuntimeError(f"series without a collector: {sorted(unwired)}")
        self._server: Exposition | None = None

    # --- GenAI semantic-convention metrics --------------------------------------------------

    def record_token_usage(
        self,
        token_type: str,
        tokens: int,
        *,
        operation: str,
        provider: str | None,
        request_model: str | None,
        response_model: str | None,
    ) -> None:
        """One observation of gen_ai.client.token.usage (token_type is `input` or `output`)."""
        self._token_usage.labels(
            _label(token_type), _label(operation), _label(provider), _label(request_model),
            response_model or "",
        ).observe(tokens)

    def record_operation_duration(
        self,
        seconds: float,
        *,
        operation: str,
        provider: str | None,
        request_model: str | None,
        response_model: str | None,
        error_type: str | None = None,
    ) -> None:
        # Successful calls carry an empty error_type, which Prometheus treats as "label absent",
        # so `{error_type!=""}` selects exactly the failed operations.
        self._op_duration.labels(
            _label(operation), _label(provider), _label(request_model), response_model or "",
            error_type or "",
        ).observe(seconds)

    # --- agent metrics -------------------------------------------------------------------------

    def record_agent_run(self, agent: str, seconds: float, *, ok: bool) -> None:
        status = series.STATUS_OK if ok else series.STATUS_ERROR
        self._run_duration.labels(_label(agent), status).observe(seconds)

    def record_tool_call(self, agent: str, tool: str, seconds: float, *, error_type: str | None) -> None:
        status = series.STATUS_OK if error_type is None else series.STATUS_ERROR
        self._tool_duration.labels(_label(agent), _label(tool), status).observe(seconds)
        if error_type is not None:
            self._tool_failures.labels(_label(agent), _label(tool), error_type).inc()

    def record_decision(self, agent: str, decision: str, confidence: float | None) -> None:
        self._decisions.labels(_label(agent), _label(decision)).inc()
        if confidence is not None:
            self._confidence.labels(_label(agent), _label(decision)).observe(confidence)

    def record_reasoning_step(self, agent: str) -> None:
        self._steps.labels(_label(agent)).inc()

    def record_error(self, agent: str, operation: str, error_type: str) -> None:
        self._errors.labels(_label(agent), _label(operation), _label(error_type)).inc()

    def add_cost(self, agent: str, usd: float, *, provider: str | None, model: str | None) -> None:
        if usd < 0:
            raise ValueError(f"cost must not be negative, got {usd}")
        self._cost.labels(_label(agent), _label(provider), _label(model)).inc(usd)

    def set_info(self, *, service: str, agent_id: str, version: str) -> None:
        self._info.labels(_label(service), _label(agent_id), _label(version)).set(1)

    def set_audit_seq(self, agent_id: str, seq: int) -> None:
        self._audit_seq.labels(_label(agent_id)).set(seq)

    # --- exposition ---------------------------------------------------------------------------

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:  # noqa: S104 - pods are scraped from outside
        """Start the exposition HTTP server; returns the bound port (useful with port 0)."""
        self._server = Exposition(self.registry, port, addr)
        return self._server.port

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
