"""The operator's per-resource series: a deleted resource's go, and a replica that stops leading
drops every resource's (the new leader exports them; stale values would reach each stack's alerts)."""

from __future__ import annotations

from agentobs import metrics


def _resources() -> set[tuple[str, str]]:
    found = set()
    for gauge in (metrics.RESOURCE_CONDITION, metrics.CERTIFICATE_EXPIRY, metrics.INJECTION_PODS):
        for metric in gauge.collect():
            found |= {(s.labels["namespace"], s.labels["resource"]) for s in metric.samples}
    return found


def test_a_deleted_resource_s_series_go_and_a_former_leader_drops_all() -> None:
    for resource in ("a", "b"):
        metrics.RESOURCE_CONDITION.labels(namespace="ns-m", resource=resource, condition="Ready").set(1)
        metrics.CERTIFICATE_EXPIRY.labels(namespace="ns-m", resource=resource, component="grafana").set(2e9)
        metrics.INJECTION_PODS.labels(namespace="ns-m", resource=resource, state="current").set(3)
    assert {("ns-m", "a"), ("ns-m", "b")} <= _resources()
    metrics.forget_resource("ns-m", "a")
    assert ("ns-m", "a") not in _resources() and ("ns-m", "b") in _resources()
    metrics.forget_resource()
    assert _resources() == set()
