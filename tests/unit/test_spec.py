"""The spec model: defaults, bounds and cross-field rules, without a cluster."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from pydantic import ValidationError

from agentobs.api.formats import format_go_duration
from agentobs.api.spec import AgentObservabilitySpec, parse_go_duration

from cases import INVALID_SPECS


def test_empty_spec_gets_production_defaults() -> None:
    spec = AgentObservabilitySpec.model_validate({})
    assert spec.prometheus.replicas == 2 and spec.prometheus.high_availability
    assert spec.prometheus.alertmanager.replicas == 3
    assert spec.elasticsearch.nodes == 3
    assert spec.tracing.collector.replicas == 2
    assert spec.instrumentation.pod_selector.match_labels == {"agentobs.io/agent": "true"}
    assert spec.tls.renewal_window * 3 == parse_go_duration(spec.tls.certificate_lifetime)


@pytest.mark.parametrize(("spec", "field"), [(s, f) for _, s, f in INVALID_SPECS],
                         ids=[i for i, _, _ in INVALID_SPECS])
def test_invalid_spec_rejected_naming_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AgentObservabilitySpec.model_validate(spec)
    # The whole path, as the API server names it: an error on the right top-level area but the
    # wrong field (or one only a sibling's bound raised) would otherwise pass.
    errors = caught.value.errors()
    locations = {re.sub(r"\.([0-9]+)", r"[\1]", "spec." + ".".join(str(p) for p in e["loc"])) for e in errors}
    # A rule over several fields is raised on their object and names the field in its message.
    messages = " ".join(e["msg"] for e in errors)
    assert any(loc.startswith(field) for loc in locations) or field.removeprefix("spec.") in messages, (
        locations, messages)


@pytest.mark.parametrize(("lifetime", "window"), [("720h", "240h"), ("24h", "8h"), ("1h", "20m")])
def test_a_lifetime_alone_is_valid_and_renews_at_a_third_of_it(lifetime: str, window: str) -> None:
    """Shortening certificateLifetime alone is sensible; a stored 720h renewBefore made any lifetime
    up to 720h invalid, with a message about a field the user never set."""
    tls = AgentObservabilitySpec.model_validate({"tls": {"certificateLifetime": lifetime}}).tls
    assert tls.renew_before is None
    assert tls.renewal_window == parse_go_duration(window)


def test_a_renew_before_given_is_used_as_is() -> None:
    tls = AgentObservabilitySpec.model_validate({"tls": {"certificateLifetime": "24h", "renewBefore": "2h"}}).tls
    assert tls.renewal_window == parse_go_duration("2h")


def test_object_names_and_keys_as_kubernetes_allows_them_are_accepted() -> None:
    spec = AgentObservabilitySpec.model_validate({
        "grafana": {"adminSecret": "grafana-admin.v2"},
        "prometheus": {"storage": {"storageClassName": "ebs.csi.aws.com"}, "alertmanager": {
            "receiversSecret": {"name": "alertmanager", "key": "Alertmanager_Config.yml"}}},
        "elasticsearch": {"nodes": 1, "external": {"url": "https://es:9200", "credentialsSecret": "es-creds",
                                                   "caSecret": "es-ca"}},
        "tls": {"issuerRef": {"name": "letsencrypt.prod", "kind": "ClusterIssuer"}},
    })
    assert spec.prometheus.alertmanager.receivers_secret is not None
    assert spec.prometheus.alertmanager.receivers_secret.key == "Alertmanager_Config.yml"


def test_external_elasticsearch_lifts_the_node_rule() -> None:
    spec = AgentObservabilitySpec.model_validate(
        {"elasticsearch": {"nodes": 1, "external": {"url": "https://es:9200", "credentialsSecret": "c"}}}
    )
    assert spec.elasticsearch.external is not None


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        AgentObservabilitySpec.model_validate({"prometheus": {"replica": 3}})


@pytest.mark.parametrize(("text", "seconds"), [("2160h", 2160 * 3600), ("1h30m", 5400), ("1.5s", 1.5), ("250ms", 0.25)])
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "seconds"), [("720h", 720 * 3600), ("8h20m", 30000), ("45s", 45.9), ("0s", 0)])
def test_go_durations_written_back(text: str, seconds: float) -> None:
    assert format_go_duration(dt.timedelta(seconds=seconds)) == text


@pytest.mark.parametrize("text", ["", "10", "h", "10x", "1d"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_go_duration(text)


def test_a_storage_class_alone_keeps_each_component_s_default_size() -> None:
    classed = {"storageClassName": "fast"}
    spec = AgentObservabilitySpec.model_validate(
        {"elasticsearch": {"storage": classed}, "logging": {"storage": classed}, "prometheus": {"storage": classed}})
    assert (spec.elasticsearch.storage.size, spec.logging.storage.size, spec.prometheus.storage.size) == (
        "50Gi", "5Gi", "10Gi")
    assert spec.elasticsearch.storage.storage_class_name == "fast"


def test_resources_say_that_a_value_replaces_the_default_whole() -> None:
    """A value given for resources is taken as is (as in a pod spec); the CRD says so, with the default."""
    spec = AgentObservabilitySpec.model_validate({"elasticsearch": {"resources": {"limits": {"memory": "4Gi"}}}})
    assert spec.elasticsearch.resources.requests == {}
    field = type(spec.elasticsearch).model_fields["resources"]
    assert "replaces the default whole" in (field.description or "")
    assert "memory 2Gi" in (field.description or "")
