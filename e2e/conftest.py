"""e2e fixtures: a real cluster (kind) where pods run, prepared by `hack/e2e-kind.sh`.

On the kwok control plane no container runs, so every test here skips with that reason unless
AGENTOBS_E2E_KUBECONFIG names a cluster with kubelets.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.kind)


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    path = os.environ.get("AGENTOBS_E2E_KUBECONFIG")
    if not path:
        pytest.skip("needs running pods: a kind cluster (make e2e, where Docker runs); kwok runs no containers")
    os.environ["KUBECONFIG"] = path
    return path


@pytest.fixture(scope="session")
def stack_namespace(kubeconfig: str) -> str:
    """The namespace of the chart's stack and its agents (`stack.namespace`)."""
    return os.environ.get("AGENTOBS_E2E_NAMESPACE", "agents")


@pytest.fixture(scope="session")
def operator_namespace(kubeconfig: str) -> str:
    """The release namespace: the operator and the node log collector."""
    return os.environ.get("AGENTOBS_E2E_OPERATOR_NAMESPACE", "agentobs-system")


@pytest.fixture(scope="session")
def kubectl_bin() -> str:
    out = subprocess.run([str(ROOT / "tools" / "ensure.sh"), "kubernetes"], capture_output=True, text=True,
                         check=True)
    return out.stdout.strip() + "/kubectl"


@contextmanager
def port_forward(kubectl: str, namespace: str, target: str, port: int) -> Iterator[int]:
    """Forward a Service port to a free loopback port for the duration of the block."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        local = int(s.getsockname()[1])
    proc = subprocess.Popen([kubectl, "port-forward", "-n", namespace, "--address", "127.0.0.1", target,
                             f"{local}:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", local)) == 0:
                    break
            time.sleep(0.3)
        yield local
    finally:
        proc.terminate()
        proc.wait(timeout=10)
