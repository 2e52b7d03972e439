"""Prometheus metrics about the operator itself, served by `agentobs.main` on the metrics port."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "agentobs_reconcile_total", "Reconcile passes, by result (ok or error).", ["result"]
)
RECONCILE_SECONDS = Histogram(
    "agentobs_reconcile_duration_seconds",
    "Time one reconcile pass takes, render to status write.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
APPLY_ERRORS = Counter(
    "agentobs_apply_errors_total", "Objects the API server refused to apply, by kind.", ["kind"]
)
RECONCILE_FAILURES = Counter(
    "agentobs_reconcile_failures_total",
    "Reconcile passes that could not finish (API server unreachable); kopf retries them.",
)
MANAGED_RESOURCES = Gauge(
    "agentobs_managed_resources", "AgentObservability resources this operator reconciles."
)
