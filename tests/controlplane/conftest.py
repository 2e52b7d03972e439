"""Control-plane fixtures: one local cluster per session, the operator as a subprocess, a
namespace per test.

The cluster is the project's own (`hack/cluster.sh up`: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok built from pinned Go modules); it is reused when
already running, so `make demo` and `make test` share it. kwok's nodes run no containers: these
tests assert objects, validity and the operator's reaction, not what a Prometheus pod serves.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentobs.kube import Kube, KubeError

ROOT = Path(__file__).resolve().parents[2]
# Namespaces of this session share a prefix the operator under test is scoped to, so another
# operator on the same cluster (`make demo`, a second test run) never touches them.
SESSION_PREFIX = f"t{uuid.uuid4().hex[:6]}"
API = "agentobs.io/v1alpha1"
KIND = "AgentObservability"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "controlplane" in str(item.path):
            item.add_marker(pytest.mark.controlplane)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90.0, interval: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except KubeError as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    result = subprocess.run([str(ROOT / "hack" / "cluster.sh"), "up"], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        pytest.fail(f"the local cluster did not start:\n{result.stderr[-4000:]}")
    path = result.stdout.strip().splitlines()[-1].removeprefix("export KUBECONFIG=")
    os.environ["KUBECONFIG"] = path
    return path


@pytest.fixture(scope="session")
def kubectl(kubeconfig: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    binary = subprocess.run([str(ROOT / "tools" / "ensure.sh"), "kubernetes"], capture_output=True,
                            text=True, check=True).stdout.strip() + "/kubectl"

    def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([binary, "--kubeconfig", kubeconfig, *args], input=input, capture_output=True,
                              text=True, check=check)

    run("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    run("wait", "--for=condition=Established", "crd/agentobservabilities.agentobs.io", "--timeout=60s")
    return run


@pytest.fixture(scope="session")
def kube(kubectl: Callable[..., Any]) -> Kube:
    return Kube()


class Operator:
    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.metrics_port = _free_port()
        self.health_port = _free_port()
        self.webhook_port = _free_port()
        self.webhook_configuration = f"agentobs-webhook-{SESSION_PREFIX}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "AGENTOBS_BIND_ADDRESS": "127.0.0.1", "AGENTOBS_RESYNC_SECONDS": "3",
               "AGENTOBS_NAMESPACES": f"{SESSION_PREFIX}-*",
               "AGENTOBS_WEBHOOK_PORT": str(self.webhook_port),
               "AGENTOBS_WEBHOOK_CONFIGURATION": self.webhook_configuration,
               "AGENTOBS_METRICS_PORT": str(self.metrics_port), "AGENTOBS_HEALTH_PORT": str(self.health_port)}
        log = self.log_path.open("ab")
        self.process = subprocess.Popen([sys.executable, "-m", "agentobs.main"], env=env, stdout=log,
                                        stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def operator(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    op = Operator(tmp_path_factory.mktemp("operator") / "operator.log")
    op.start()
    wait_for("the operator's webhook configuration", lambda: kube.get(
        "admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None, op.webhook_configuration))
    yield op
    op.stop()
    kube.delete("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None, op.webhook_configuration)


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
