"""The real-node tier: kubelet and containerd on this machine (hack/node.sh), joined to the local
control plane, running real containers from images the project assembles (hack/images.py).

The node comes up once per session, on first use, and goes down at the end of the session
whatever the tests did. Where the machine cannot run it (not root, no cgroup v1, missing
programs), every test here skips with the reason `hack/node.sh check` gives.

A test puts a namespace on the real node with `real_namespace()`: its annotations make the API
server's PodNodeSelector and PodTolerationRestriction plugins steer every pod of the namespace to
the node and let it tolerate the node's taint, so the product's own manifests are used unchanged.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster_support import ROOT, OperatorProcess, free_port, start_cluster, tool_dir

NODE = "agentobs-node"
TOOLS = ("kubernetes", "helm", "prometheus", "alertmanager", "jaeger", "coredns")
# One real node per machine: a second test run (another clone, a benchmark) waits for the first.
NODE_LOCK = Path("/run/lock/agentobs-node.lock")
NODE_LOCK_WAIT = 3600.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.node)


Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def real_node() -> Iterator[str]:
    """The kubeconfig of the local cluster, with the real node joined and Ready."""
    check = subprocess.run([str(ROOT / "hack" / "node.sh"), "check"], capture_output=True, text=True)
    if check.returncode != 0:
        pytest.skip(f"needs a real node on this machine, which cannot run one: {check.stdout.strip()}")
    for tool in TOOLS:
        tool_dir(tool)
    NODE_LOCK.parent.mkdir(parents=True, exist_ok=True)
    lock = NODE_LOCK.open("w")
    deadline = time.monotonic() + NODE_LOCK_WAIT
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                lock.close()
                pytest.skip(f"needs the machine's one real node, held by another run for over {NODE_LOCK_WAIT:.0f} s")
            time.sleep(5)
    kubeconfig = start_cluster()
    up = subprocess.run([str(ROOT / "hack" / "node.sh"), "up"], capture_output=True, text=True)
    try:
        if up.returncode != 0:
            pytest.fail(f"hack/node.sh up failed:\n{up.stderr[-4000:]}")
        yield kubeconfig
    finally:
        if os.environ.get("AGENTOBS_KEEP_NODE") != "1":
            subprocess.run([str(ROOT / "hack" / "node.sh"), "down"], capture_output=True, text=True)
            left = subprocess.run([str(ROOT / "hack" / "node.sh"), "leftovers"], capture_output=True, text=True)
            assert left.returncode == 0, f"the node left things behind on this machine:\n{left.stdout}"
        lock.close()


@pytest.fixture(scope="session")
def kubectl(real_node: str) -> Kubectl:
    binary = tool_dir("kubernetes") + "/kubectl"

    def run(*args: str, input: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([binary, "--kubeconfig", real_node, *args], input=input, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    return run


def get_json(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def namespace_manifest(name: str, labels: dict[str, str] | None = None, *, on_node: bool = True) -> dict[str, Any]:
    """A namespace whose pods the API server steers to the real node (unless `on_node` is False)."""
    annotations = {
        "scheduler.alpha.kubernetes.io/node-selector": "agentobs.io/real-node=true",
        "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(
            [{"key": "agentobs.io/real-node", "operator": "Exists", "effect": "NoSchedule"}]),
    } if on_node else {}
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels or {}, "annotations": annotations}}


@pytest.fixture
def real_namespace(kubectl: Kubectl) -> Iterator[Callable[..., str]]:
    """Make namespaces whose pods run on the real node; deleted after the test."""
    made: list[str] = []

    def make(prefix: str, labels: dict[str, str] | None = None, on_node: bool = True) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        kubectl("apply", "-f", "-", input=json.dumps(namespace_manifest(name, labels, on_node=on_node)))
        made.append(name)
        return name

    yield make
    for name in made:
        kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def chart_version() -> str:
    for line in (ROOT / "charts" / "agentobs" / "Chart.yaml").read_text().splitlines():
        if line.startswith("appVersion:"):
            return line.split(":", 1)[1].strip().strip('"')
    raise AssertionError("Chart.yaml has no appVersion")


def pod_logs(kubectl: Kubectl, namespace: str, pod: str, container: str | None = None) -> str:
    args = ["logs", "-n", namespace, pod]
    if container:
        args += ["-c", container]
    return kubectl(*args, check=False).stdout


def pod_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def namespaced_operator(namespace: str, log_path: Path, resync_seconds: int) -> OperatorProcess:
    """The operator as a local process limited to one namespace, with a webhook configuration of
    its own (`agentobs-webhook-<namespace>`) and no node log collector."""
    return OperatorProcess({
        "AGENTOBS_BIND_ADDRESS": "127.0.0.1", "AGENTOBS_RESYNC_SECONDS": str(resync_seconds),
        "AGENTOBS_NAMESPACES": namespace, "AGENTOBS_WEBHOOK_PORT": str(free_port()),
        "AGENTOBS_WEBHOOK_CONFIGURATION": f"agentobs-webhook-{namespace}",
        "AGENTOBS_METRICS_PORT": str(free_port()), "AGENTOBS_HEALTH_PORT": str(free_port()),
        "AGENTOBS_LOG_COLLECTOR_NAMESPACE": "",
    }, log_path)


RESTRICTED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def agent_image() -> str:
    return f"ghcr.io/agentobs/example-agent:{chart_version()}"


def agent_pod(namespace: str, interval: str) -> dict[str, Any]:
    """The example agent (hack/images.py), as a restricted pod the webhook instruments."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "agent", "namespace": namespace, "labels": {"app": "example-agent"}},
        "spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                                     "seccompProfile": {"type": "RuntimeDefault"}},
                 "terminationGracePeriodSeconds": 2,
                 "containers": [{"name": "agent", "image": agent_image(),
                                 "imagePullPolicy": "Never",
                                 "env": [{"name": "EXAMPLE_AGENT_INTERVAL", "value": interval}],
                                 "securityContext": RESTRICTED}]},
    }
