"""Helpers shared by the chart tests (imported by tests/chart/conftest.py and the test modules)."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from typing import Any

import yaml

from cluster_support import ROOT

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


def set_args(values: dict[str, Any]) -> list[str]:
    """`--set-json path=value` for each dotted path, so types survive (a list stays a list)."""
    return [arg for path, value in values.items() for arg in ("--set-json", f"{path}={json.dumps(value)}")]


def as_yaml(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)


def kind_of(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = kind_of(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The one container of the operator Deployment."""
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(docs)["env"]}
