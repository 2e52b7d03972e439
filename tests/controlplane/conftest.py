"""Control-plane fixtures: one local cluster per session, the operator as a subprocess, a
namespace per test.

The cluster is the project's own (`hack/cluster.sh up`: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok built from pinned Go modules); it is reused when
already running, so `make demo` and `make test` share it. kwok's nodes run no containers: these
tests assert objects, validity and the operator's reaction, not what a Prometheus pod serves.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentobs.kube import Kube

from cluster_support import ROOT, OperatorProcess, free_port, start_cluster, tool_dir, wait_established, wait_for

# Namespaces of this session share a prefix the operator under test is scoped to, so another
# operator on the same cluster (`make demo`, a second test run) never touches them.
SESSION_PREFIX = f"t{uuid.uuid4().hex[:6]}"
# Where the operator under test runs the node log collector: this session's, Pod Security privileged
# like the operator's namespace of the chart (the collector reads the nodes' log files).
COLLECTOR_NAMESPACE = f"{SESSION_PREFIX}-logging"
API = "agentobs.io/v1alpha1"
KIND = "AgentObservability"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "controlplane" in str(item.path):
            item.add_marker(pytest.mark.controlplane)


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    return start_cluster()


@pytest.fixture(scope="session")
def kubectl(kubeconfig: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    binary = tool_dir("kubernetes") + "/kubectl"

    def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([binary, "--kubeconfig", kubeconfig, *args], input=input, capture_output=True,
                              text=True, check=check)

    run("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    wait_established(run, "agentobservabilities.agentobs.io")
    return run


@pytest.fixture(scope="session")
def kube(kubectl: Callable[..., Any]) -> Kube:
    return Kube()


class Operator(OperatorProcess):
    """The operator under test: scoped to this session's namespaces, with its own webhook."""

    def __init__(self, log_path: Path) -> None:
        self.metrics_port, self.health_port, self.webhook_port = free_port(), free_port(), free_port()
        self.webhook_configuration = f"agentobs-webhook-{SESSION_PREFIX}"
        super().__init__({
            "AGENTOBS_BIND_ADDRESS": "127.0.0.1", "AGENTOBS_RESYNC_SECONDS": "3",
            "AGENTOBS_NAMESPACES": f"{SESSION_PREFIX}-*",
            "AGENTOBS_WEBHOOK_PORT": str(self.webhook_port),
            "AGENTOBS_WEBHOOK_CONFIGURATION": self.webhook_configuration,
            "AGENTOBS_METRICS_PORT": str(self.metrics_port), "AGENTOBS_HEALTH_PORT": str(self.health_port),
            "AGENTOBS_LOG_COLLECTOR_NAMESPACE": COLLECTOR_NAMESPACE,
        }, log_path)


@pytest.fixture(scope="session")
def operator(kube: Kube, kubectl: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    kubectl("create", "namespace", COLLECTOR_NAMESPACE)
    kubectl("label", "namespace", COLLECTOR_NAMESPACE, "pod-security.kubernetes.io/enforce=privileged")
    op = Operator(tmp_path_factory.mktemp("operator") / "operator.log")
    op.start()
    wait_for("the operator's webhook configuration", lambda: kube.get(
        "admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None, op.webhook_configuration))
    yield op
    op.stop()
    kube.delete("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None, op.webhook_configuration)
    kubectl("delete", "namespace", COLLECTOR_NAMESPACE, "--wait=false", check=False)
    for kind in ("clusterrole", "clusterrolebinding"):
        kubectl("delete", kind, f"agentobs-log-collector-{COLLECTOR_NAMESPACE}", "--ignore-not-found", check=False)


@pytest.fixture
def namespace(kube: Kube, kubectl: Callable[..., Any]) -> Iterator[str]:
    name = f"{SESSION_PREFIX}-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def make_resource(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": KIND, "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def condition(resource: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((resource or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def get_resource(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    return kube.get(API, KIND, namespace, name)


def wait_ready(kube: Kube, namespace: str, name: str, generation: int | None = None,
               timeout: float = 120.0) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        res = get_resource(kube, namespace, name)
        cond = condition(res, "Ready")
        if cond.get("status") != "True" or res is None:
            return None
        if generation is not None and res["status"].get("observedGeneration") != generation:
            return None
        return res

    return dict(wait_for(f"{namespace}/{name} Ready", ready, timeout=timeout))
