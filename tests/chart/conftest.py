"""Fixtures of the chart tests: a real `helm` (the pinned build of tools/ensure.sh), rendering
helpers, and for the tests marked `controlplane` the local cluster with kubectl.

The cluster is the project's own (`hack/cluster.sh up`, which honours AGENTOBS_CLUSTER_DIR); it is
reused when already running. Before anything is installed, the chart's CRDs are applied, so that
server-side dry runs of the custom resources the chart renders have their schemas to check.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from chart_support import CHART, RELEASE, SESSION_PREFIX, Run, set_args
from cluster_support import start_cluster, tool_dir, wait_established


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Run helm with its config, cache and data in a private directory (no user repositories)."""
    binary = tool_dir("helm") + "/helm"
    home = tmp_path_factory.mktemp("helm-home")
    dirs = {"HELM_CONFIG_HOME": str(home / "config"), "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data")}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # The environment of the call: KUBECONFIG is set once the cluster fixture has run.
        result = subprocess.run([binary, *args], capture_output=True, text=True, check=False,
                                env={**os.environ, **dirs})
        if check and result.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result

    return run


@pytest.fixture(scope="session")
def render(helm: Run) -> Callable[..., list[dict[str, Any]]]:
    """`helm template` of the chart with dotted-path values, as parsed documents."""

    def run(values: dict[str, Any] | None = None, namespace: str = "agentobs",
            api_versions: tuple[str, ...] = (), include_crds: bool = False,
            release: str = RELEASE) -> list[dict[str, Any]]:
        args = ["template", release, str(CHART), "--namespace", namespace, *set_args(values or {})]
        if include_crds:
            args.append("--include-crds")
        for api in api_versions:
            args += ["--api-versions", api]
        return [doc for doc in yaml.safe_load_all(helm(*args).stdout) if doc]

    return run


# ---- the local cluster (tests marked controlplane) -------------------------------------------

@pytest.fixture(scope="session")
def kubeconfig() -> str:
    return start_cluster()


@pytest.fixture(scope="session")
def kubectl(kubeconfig: str) -> Run:
    binary = tool_dir("kubernetes") + "/kubectl"

    def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([binary, "--kubeconfig", kubeconfig, *args], input=input, capture_output=True,
                                text=True, check=False)
        if check and result.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result

    run("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    wait_established(run, "agentobservabilities.agentobs.io")
    return run


@pytest.fixture
def make_namespace(kubectl: Run) -> Iterator[Callable[..., str]]:
    """Create namespaces named after the session prefix; all are deleted after the test."""
    made: list[str] = []

    def make(suffix: str = "", labels: dict[str, str] | None = None) -> str:
        name = f"{SESSION_PREFIX}-{suffix or uuid.uuid4().hex[:6]}"
        kubectl("create", "namespace", name)
        if labels:
            kubectl("label", "namespace", name, *[f"{k}={v}" for k, v in labels.items()])
        made.append(name)
        return name

    yield make
    for name in made:
        kubectl("delete", "namespace", name, "--wait=false", check=False)
