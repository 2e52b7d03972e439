"""The stack on a cluster whose pods really run: components serve over TLS with the generated
credentials, and what an instrumented agent emits arrives."""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.request
from typing import Any

from agentobs.kube import Kube

from conftest import port_forward

STACK = "agentobs"


def _secret(kube: Kube, namespace: str, name: str, key: str) -> str:
    obj = kube.get("v1", "Secret", namespace, name)
    assert obj is not None, name
    return base64.b64decode(obj["data"][key]).decode()


def _tls(kube: Kube, namespace: str) -> ssl.SSLContext:
    bundle = kube.get("v1", "ConfigMap", namespace, f"{STACK}-ca-bundle")
    assert bundle is not None
    context = ssl.create_default_context(cadata=bundle["data"]["ca.crt"])
    context.check_hostname = False  # reached through a port-forward on 127.0.0.1
    return context


def _get(url: str, context: ssl.SSLContext, user: str | None = None, password: str | None = None) -> Any:
    request = urllib.request.Request(url)
    if user:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return json.loads(response.read() or b"null")


def test_every_component_pod_runs_and_is_ready(kubeconfig: str, stack_namespace: str) -> None:
    kube = Kube()
    deadline = time.monotonic() + 600
    while True:
        pods = kube.list("v1", "Pod", stack_namespace, f"agentobs.io/owner={STACK}")
        not_ready = [p["metadata"]["name"] for p in pods
                     if not all(c.get("ready") for c in p.get("status", {}).get("containerStatuses", []))]
        if pods and not not_ready:
            break
        assert time.monotonic() < deadline, f"pods not ready: {not_ready}"
        time.sleep(5)
    components = {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods}
    assert {"prometheus", "alertmanager", "elasticsearch", "jaeger-collector", "jaeger-query", "grafana"} <= components


def test_prometheus_serves_tls_with_basic_auth_and_scrapes_itself(kubeconfig: str, stack_namespace: str,
                                                                   kubectl_bin: str) -> None:
    kube = Kube()
    password = _secret(kube, stack_namespace, f"{STACK}-prometheus-web-auth", "password")
    with port_forward(kubectl_bin, stack_namespace, f"svc/{STACK}-prometheus", 9090) as port:
        result = _get(f"https://127.0.0.1:{port}/api/v1/query?query=up%7Bjob%3D%22prometheus%22%7D",
                      _tls(kube, stack_namespace), "agentobs", password)
    assert result["status"] == "success"
    assert {s["value"][1] for s in result["data"]["result"]} == {"1"}


def test_elasticsearch_cluster_is_green(kubeconfig: str, stack_namespace: str, kubectl_bin: str) -> None:
    kube = Kube()
    password = _secret(kube, stack_namespace, f"{STACK}-elasticsearch-elastic", "password")
    with port_forward(kubectl_bin, stack_namespace, f"svc/{STACK}-elasticsearch", 9200) as port:
        health = _get(f"https://127.0.0.1:{port}/_cluster/health?wait_for_status=green&timeout=120s",
                      _tls(kube, stack_namespace), "elastic", password)
    assert health["status"] == "green" and health["number_of_nodes"] == 3


def test_grafana_refuses_anonymous_and_knows_its_datasources(kubeconfig: str, stack_namespace: str,
                                                             kubectl_bin: str) -> None:
    kube = Kube()
    password = _secret(kube, stack_namespace, f"{STACK}-grafana-admin", "admin-password")
    context = _tls(kube, stack_namespace)
    with port_forward(kubectl_bin, stack_namespace, f"svc/{STACK}-grafana", 3000) as port:
        try:
            _get(f"https://127.0.0.1:{port}/api/datasources", context)
            raise AssertionError("anonymous access must be refused")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
        sources = _get(f"https://127.0.0.1:{port}/api/datasources", context, "admin", password)
    assert {"agentobs-prometheus", "agentobs-jaeger"} <= {s["uid"] for s in sources}
