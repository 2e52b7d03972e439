"""`helm uninstall` left the node log collector running (its DaemonSet tailing every node's logs
with each stack's client key) because nothing owned it. The operator's Deployment now owns the
collector's objects in its own namespace: deleting the Deployment deletes them through the garbage
collector, while restarts and rollouts, which keep the Deployment, keep them."""
from __future__ import annotations

import base64
from typing import Any

import pytest

from agentobs.render import fluentd
from agentobs.render.common import owner_of
from agentobs.render.tls import CA_BUNDLE_KEY, ca_bundle_name, tls_secret_name
from agentobs.stack import logroutes

BODY = {"apiVersion": "agentobs.io/v1alpha1", "kind": "AgentObservability",
        "metadata": {"name": "demo", "namespace": "agents", "uid": "uid-demo", "generation": 1}, "spec": {}}


class FakeKube:
    """Holds objects by (kind, namespace, name); records what is applied."""

    def __init__(self, deployment_namespace: str) -> None:
        owner = owner_of(BODY)
        assert owner is not None
        pem = base64.b64encode(b"PEM").decode()
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {
            ("Namespace", None, "agentobs"): {"metadata": {"name": "agentobs", "labels": {}}},
            ("ConfigMap", "agents", ca_bundle_name(owner)): {"metadata": {}, "data": {CA_BUNDLE_KEY: "CA"}},
            ("Secret", "agents", tls_secret_name(owner, fluentd.COLLECTOR_CLIENT)): {
                "metadata": {}, "data": {"tls.crt": pem, "tls.key": pem}},
            ("Deployment", deployment_namespace, "agentobs-operator"): {
                "metadata": {"name": "agentobs-operator", "namespace": deployment_namespace, "uid": "uid-op"}},
        }
        self.applied: list[dict[str, Any]] = []

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    def list(self, *_: Any) -> list[Any]:
        return []

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(manifest)
        return manifest


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logroutes, "_state", logroutes._State())
    monkeypatch.setattr(logroutes, "OPERATOR_DEPLOYMENT", "agentobs-operator", raising=False)


def test_the_operator_deployment_owns_the_collector_in_its_namespace() -> None:
    kube = FakeKube("agentobs")
    result = logroutes.sync(kube, "agentobs", [BODY])  # type: ignore[arg-type]
    assert result.routes and kube.applied
    kinds = set()
    for manifest in kube.applied:
        refs = manifest["metadata"].get("ownerReferences")
        if manifest["kind"].startswith("Cluster"):  # a namespaced owner cannot own a cluster-scoped object
            assert refs is None
            continue
        kinds.add(manifest["kind"])
        assert refs == [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "agentobs-operator",
                         "uid": "uid-op"}]
    assert "DaemonSet" in kinds


def test_a_collector_in_another_namespace_has_no_owner() -> None:
    kube = FakeKube("operator-elsewhere")
    logroutes.sync(kube, "agentobs", [BODY])  # type: ignore[arg-type]
    assert kube.applied
    assert all("ownerReferences" not in m["metadata"] for m in kube.applied)


def test_once_the_deployment_is_gone_the_collector_is_not_made_again() -> None:
    """The garbage collector deletes what the Deployment owned; a replica still running (helm
    uninstall stops it a little later) must not make it again for the collector to delete."""
    kube = FakeKube("agentobs")
    logroutes.sync(kube, "agentobs", [BODY])  # type: ignore[arg-type]
    del kube.objects[("Deployment", "agentobs", "agentobs-operator")]
    kube.applied.clear()
    result = logroutes.sync(kube, "agentobs", [BODY])  # type: ignore[arg-type]
    assert not kube.applied and "agentobs-operator" in result.problem
