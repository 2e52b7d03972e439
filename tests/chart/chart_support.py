"""Helpers shared by the chart tests (imported by tests/chart/conftest.py and the test modules)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "agentobs"
RELEASE = "agentobs"
# Namespaces of this session share a prefix, so leftovers of a run are easy to tell apart.
SESSION_PREFIX = f"c{uuid.uuid4().hex[:6]}"

Run = Callable[..., subprocess.CompletedProcess[str]]
Render = Callable[..., list[dict[str, Any]]]

# Value sets every rendering test runs with; test_chart_cluster.py sends the same to the API server.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "stack": {"stack.enabled": True, "stack.spec": {"prometheus": {"replicas": 3, "retention": "30d"}}},
    "out-of-cluster": {"operator.enabled": False, "webhook.url": "https://127.0.0.1:9443/mutate-pods",
                       "stack.enabled": True},
    "namespaced": {"operator.watchNamespaces": ["team-a", "team-b"], "stack.enabled": True},
    "single-replica": {"operator.replicas": 1, "operator.leaderElection.enabled": False,
                       "operator.manageCRD": False},
}
SERVICE_MONITOR_API = "monitoring.coreos.com/v1"


def tool_dir(tool: str) -> str:
    result = subprocess.run([str(ROOT / "tools" / "ensure.sh"), tool], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"tools/ensure.sh {tool} failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90.0, interval: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


def set_args(values: dict[str, Any]) -> list[str]:
    """`--set-json path=value` for each dotted path, so types survive (a list stays a list)."""
    return [arg for path, value in values.items() for arg in ("--set-json", f"{path}={json.dumps(value)}")]


def as_yaml(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)
