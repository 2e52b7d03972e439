"""Namespaces a chart's `webhook.excludeNamespaces` adds are left out by the webhook configuration
only; the operator learns them from that configuration (read on its CA check), so a stack in one
of them is told no pod there will be instrumented, as one in kube-system is."""
from __future__ import annotations

from typing import Any

import pytest

from agentobs import handlers
from agentobs.admission import webhook
from agentobs.kube import Manifest
from agentobs.stack.reconcile import WEBHOOK_EXCLUDED_EXTRA

SETTINGS = webhook.WebhookSettings(port=9443, bind="127.0.0.1", configuration="agentobs-webhook",
                                   service="agentobs/agentobs-webhook", operator_namespace="agentobs",
                                   host="127.0.0.1")
CA = b"-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"


def _chart_configuration(*excluded: str) -> Manifest:
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": SETTINGS.configuration, "labels": {"app.kubernetes.io/managed-by": "Helm"}},
            "webhooks": [{"name": webhook.WEBHOOK_NAME, "clientConfig": {"caBundle": ""},
                          "namespaceSelector": {"matchExpressions": [
                              {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                               "values": list(excluded)}]}}]}


class OneConfiguration:
    """The API server holding one webhook configuration (the chart's)."""

    def __init__(self, stored: Manifest) -> None:
        self.stored = stored
        self.applied: list[Manifest] = []

    def get(self, *_: Any) -> Manifest:
        return self.stored

    def apply(self, manifest: Manifest, **_: Any) -> Manifest:
        self.applied.append(manifest)
        return manifest


@pytest.fixture(autouse=True)
def _forget_exclusions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook, "_configured_exclusions", frozenset())
    monkeypatch.setenv("AGENTOBS_OPERATOR_NAMESPACE", "agentobs")


def test_a_namespace_the_chart_leaves_out_is_known_after_the_ca_check() -> None:
    assert "batch-jobs" not in handlers.owner_extra()[WEBHOOK_EXCLUDED_EXTRA].split(",")
    kube = OneConfiguration(_chart_configuration("agentobs", "batch-jobs", "kube-system"))
    webhook.publish_ca(kube, SETTINGS, CA)  # type: ignore[arg-type]
    assert kube.applied, "the CA was still published"
    assert handlers.owner_extra()[WEBHOOK_EXCLUDED_EXTRA].split(",") == ["agentobs", "batch-jobs", "kube-system"]


def test_a_namespace_taken_off_the_list_is_served_again() -> None:
    webhook.publish_ca(OneConfiguration(_chart_configuration("batch-jobs")), SETTINGS, CA)  # type: ignore[arg-type]
    webhook.publish_ca(OneConfiguration(_chart_configuration()), SETTINGS, CA)  # type: ignore[arg-type]
    assert webhook.excluded_namespaces("agentobs") == ["agentobs", "kube-system"]


def test_only_namespaces_every_webhook_leaves_out_count() -> None:
    both = _chart_configuration("a", "b")
    other = _chart_configuration("b", "c")["webhooks"][0] | {"name": "other.agentobs.io"}
    both["webhooks"].append(other)
    assert webhook.left_out(both) == {"b"}
    assert webhook.left_out({"webhooks": [{"name": "x", "namespaceSelector": {"matchLabels": {"a": "b"}}}]}) == set()
    assert webhook.left_out({}) == set()


def test_a_configuration_the_operator_makes_is_noted_too() -> None:
    class Empty(OneConfiguration):
        def get(self, *_: Any) -> None:  # type: ignore[override]
            return None

    webhook.publish_ca(Empty({}), SETTINGS, CA)  # type: ignore[arg-type]
    assert webhook._configured_exclusions == {"agentobs", "kube-system"}
