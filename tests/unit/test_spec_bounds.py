"""Bounds that keep a mistake on the spec's field: what they still accept, and what the operator
does with a resource stored before them (the API server checks a changed field only)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from agentobs.api.spec import AgentObservabilitySpec
from agentobs.stack.reconcile import reconcile

from cases import VALID_BOUNDARY_SPECS
from recording_kube import RecordingKube


@pytest.mark.parametrize("spec", [s for _, s in VALID_BOUNDARY_SPECS], ids=[i for i, _ in VALID_BOUNDARY_SPECS])
def test_the_sensible_values_at_each_bound_are_accepted(spec: dict[str, Any]) -> None:
    AgentObservabilitySpec.model_validate(spec)


# Values an older CRD stored: each now leaves the stack Degraded, InvalidSpec, naming the field,
# with nothing applied (rather than a StatefulSet the API server refuses, or a silent default).
STORED_BEFORE: list[tuple[dict[str, Any], str]] = [
    ({"prometheus": {"resources": {"requests": {"CPU": "1"}}}}, "spec.prometheus.resources.requests"),
    ({"grafana": {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}}}},
     "spec.grafana.resources.limits"),
    ({"prometheus": {"retention": "0d"}}, "spec.prometheus.retention"),
    ({"elasticsearch": {"heap": "0g", "storage": {"size": "0Gi"}}}, "spec.elasticsearch.heap"),
    ({"tls": {"issuerRef": {"name": "ca", "group": "Cert-Manager.io"}}}, "spec.tls.issuerRef.group"),
]


@pytest.mark.parametrize(("spec", "field"), STORED_BEFORE)
def test_a_stored_spec_the_new_bounds_refuse_is_reported_invalid(spec: dict[str, Any], field: str) -> None:
    kube = RecordingKube()
    body = {"metadata": {"name": "team", "namespace": "agents", "uid": "uid-1", "generation": 1}, "spec": spec}
    outcome = reconcile(kube, body, lambda: dt.datetime(2030, 1, 1, tzinfo=dt.UTC))  # type: ignore[arg-type]
    degraded = next(c for c in outcome.status.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "InvalidSpec")
    assert field in degraded.message, degraded.message
    assert [m for m, _ in kube.calls if m not in ("patch_status", "get")] == [], kube.calls
