"""What the control-plane and chart suites share: ports, polling, the pinned tools, the local
cluster, and the operator run as a process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentobs.kube import KubeError

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90.0, interval: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` and the last value.
    An API error counts as not yet (the server may be busy), and is shown if it is the last."""
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


def wait_established(kubectl: Callable[..., subprocess.CompletedProcess[str]], *crds: str,
                     timeout: float = 60.0) -> None:
    """Until each CRD (by name) is Established. Not `kubectl wait --for=condition=Established`: on a
    CRD so new that the API server has not yet written its status, that fails at once
    (`.status.conditions accessor error: <nil>`) instead of waiting, which a cold CI run hit."""
    query = 'jsonpath={.status.conditions[?(@.type=="Established")].status}'
    for crd in crds:
        wait_for(f"CRD {crd} to be Established",
                 lambda crd=crd: kubectl("get", f"crd/{crd}", "-o", query, check=False).stdout.strip() == "True",
                 timeout=timeout, interval=0.2)


def tool_dir(tool: str) -> str:
    """Where `tools/ensure.sh` keeps a pinned tool (building it first if needed)."""
    result = subprocess.run([str(ROOT / "tools" / "ensure.sh"), tool], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"tools/ensure.sh {tool} failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip()



def pinned_program(tool: str, program: str, env: str) -> str:
    """A program of a pinned tool: `$env` when set (it must be executable), else the build that
    `tools/ensure.sh` keeps; without Go to build it, the test is skipped, saying so."""
    explicit = os.environ.get(env)
    if explicit:
        if not os.access(explicit, os.X_OK):
            pytest.fail(f"{env}={explicit} is not an executable")
        return explicit
    if shutil.which("go") is None:
        pytest.skip(f"needs the {tool} build: set {env} or install Go for `tools/ensure.sh {tool}`")
    return str(Path(tool_dir(tool)) / program)

def start_cluster() -> str:
    """Start (or reuse) the local cluster; returns its kubeconfig and exports it as KUBECONFIG."""
    result = subprocess.run([str(ROOT / "hack" / "cluster.sh"), "up"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"the local cluster did not start:\n{result.stderr[-4000:]}")
    path = result.stdout.strip().splitlines()[-1].removeprefix("export KUBECONFIG=")
    os.environ["KUBECONFIG"] = path
    return path


class OperatorProcess:
    """`python -m agentobs.main` with the given settings on top of this environment."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "agentobs.main"], env={**os.environ, **self.env},
                                            stdout=out, stderr=subprocess.STDOUT)

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
