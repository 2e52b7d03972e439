"""Prometheus metrics about the operator itself, served by `agentobs.main` on the metrics port."""

from __future__ import annotations

import contextlib

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
WEBHOOK_REQUESTS = Counter(
    "agentobs_webhook_requests_total", "Pod admissions seen by the webhook, by result.", ["result"]
)
WEBHOOK_FAIL_OPEN = Counter(
    "agentobs_webhook_failopen_total",
    "Pods admitted without injection because the webhook hit an error, by error type.",
    ["reason"],
)
WEBHOOK_SERVING = Gauge(
    "agentobs_webhook_serving", "1 while the pod webhook's HTTPS server is listening, 0 while it cannot start."
)
WEBHOOK_START_FAILURES = Counter(
    "agentobs_webhook_start_failures_total",
    "Failed attempts to start the webhook's server (port taken, key material unreadable), by error type.",
    ["reason"],
)
WEBHOOK_SECONDS = Histogram(
    "agentobs_webhook_duration_seconds",
    "Time the webhook spends on one pod admission.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
INJECTION_PODS = Gauge(
    "agentobs_injection_pods",
    "Selected agent pods by injection state (current, stale or missing), per resource.",
    ["namespace", "resource", "state"],
)
CERTIFICATE_EXPIRY = Gauge(
    "agentobs_certificate_expiry_timestamp_seconds",
    "Expiry (notAfter, Unix seconds) of each serving certificate the operator manages; "
    "the AgentObsCertificateNearExpiry alert watches it.",
    ["namespace", "resource", "component"],
)
RESOURCE_CONDITION = Gauge(
    "agentobs_resource_condition",
    "1 while a condition (Ready, Degraded) of the resource is True, else 0; each stack's Prometheus "
    "alerts on its own Degraded (AgentObsStackDegraded).",
    ["namespace", "resource", "condition"],
)
# The per-resource gauges, with their label names: a deleted resource's series go with it.
_PER_RESOURCE = ((INJECTION_PODS, ("namespace", "resource", "state")),
                 (CERTIFICATE_EXPIRY, ("namespace", "resource", "component")),
                 (RESOURCE_CONDITION, ("namespace", "resource", "condition")))
API_REQUESTS = Counter(
    "agentobs_api_requests_total",
    "Requests the operator sent to the API server, by verb (get, list, watch, create, update, patch, apply, "
    "delete) and resource (with its subresource, e.g. agentobservabilities/status).",
    ["verb", "resource"],
)
SKIPPED_APPLIES = Counter(
    "agentobs_apply_skipped_total",
    "Children not re-applied because the watch cache showed them in place, by kind.", ["kind"],
)
QUEUE_DEPTH = Gauge(
    "agentobs_queue_depth", "Resources waiting for a pass, by priority (new, child, resync).", ["priority"]
)
RESYNC_PERIOD = Gauge(
    "agentobs_resync_period_seconds", "The routine resync period in use (grows with the number of resources)."
)
CACHE_OBJECTS = Gauge(
    "agentobs_cache_objects", "Objects held by the watch-fed caches, by kind.", ["kind"]
)


def forget_resource(namespace: str | None = None, resource: str | None = None) -> None:
    """Drop a deleted resource's series, so that no alert fires on a stack that is gone; with no
    arguments, every resource's (a replica that stops leading: its values would go stale)."""
    for gauge, names in _PER_RESOURCE:
        for metric in gauge.collect():
            for sample in metric.samples:
                if namespace is None or (sample.labels.get("namespace") == namespace
                                         and sample.labels.get("resource") == resource):
                    with contextlib.suppress(KeyError):  # removed meanwhile by another thread
                        gauge.remove(*(sample.labels[n] for n in names))
