"""Agent logs arrive in Elasticsearch once each, through the node collector and the stack's Fluentd
aggregator, although the collector pod of the agent's node is deleted while the agent writes.

Needs running pods (kind): on the kwok control plane it skips, as the whole e2e suite does.
"""

from __future__ import annotations

import base64
import collections
import json
import ssl
import subprocess
import time
import urllib.request
import uuid
from typing import Any

from agentobs.kube import Kube
from agentobs.render import collector

from conftest import port_forward

STACK = "agentobs"
LINES = 400  # distinct lines, numbered
REPEATS = 20  # one identical line, written this many times: each is a document of its own
WRITER_IMAGE = "docker.io/library/busybox:1.37"


def _es_query(url: str, context: ssl.SSLContext, password: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(f"{url}/{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    request.add_header("Authorization", "Basic " + base64.b64encode(f"elastic:{password}".encode()).decode())
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        return json.loads(response.read())


def _writer_pod(namespace: str, run: str) -> dict[str, Any]:
    # Numbered JSON lines with a pause, so the collector is deleted while the pod still writes.
    script = (f'i=1; while [ $i -le {LINES} ]; do '
              f'echo "{{\\"message\\":\\"e2e {run} line $i\\",\\"e2e_run\\":\\"{run}\\",\\"e2e_seq\\":$i}}"; '
              f'if [ $i -eq 200 ]; then j=0; while [ $j -lt {REPEATS} ]; do '
              f'echo "{{\\"message\\":\\"same\\",\\"e2e_run\\":\\"{run}\\",\\"e2e_seq\\":0}}"; j=$((j+1)); done; fi; '
              f'i=$((i+1)); sleep 0.05; done; sleep 3600')
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"log-writer-{run}", "namespace": namespace,
                     "labels": {"agentobs.io/agent": "true", "app.kubernetes.io/name": "log-writer"}},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "writer", "image": WRITER_IMAGE, "command": ["sh", "-c", script],
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
                            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                                "capabilities": {"drop": ["ALL"]}}}],
        },
    }


def _wait(what: str, check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}")


def test_agent_lines_arrive_once_each_across_a_collector_restart(kubeconfig: str, stack_namespace: str,
                                                                 operator_namespace: str, kubectl_bin: str) -> None:
    kube = Kube()
    run = uuid.uuid4().hex[:10]
    pod = kube.create(_writer_pod(stack_namespace, run))
    name = pod["metadata"]["name"]
    try:
        node = _wait("the writer to be scheduled", lambda: (kube.get("v1", "Pod", stack_namespace, name) or {})
                     .get("spec", {}).get("nodeName"), 180)
        _wait("the writer to run", lambda: (kube.get("v1", "Pod", stack_namespace, name) or {})
              .get("status", {}).get("phase") == "Running", 180)
        time.sleep(5)  # about 100 lines written: the collector is mid-stream
        collectors = [p for p in kube.list("v1", "Pod", operator_namespace, "app.kubernetes.io/name=log-collector")
                      if p["spec"].get("nodeName") == node]
        assert len(collectors) == 1, "one collector pod per node"
        subprocess.run([kubectl_bin, "delete", "pod", "-n", operator_namespace, collectors[0]["metadata"]["name"],
                        "--wait=true"], check=True, capture_output=True)
        _wait("a new collector pod on the node", lambda: [
            p for p in kube.list("v1", "Pod", operator_namespace, f"app.kubernetes.io/name={collector.COMPONENT}")
            if p["spec"].get("nodeName") == node and p["metadata"]["uid"] != collectors[0]["metadata"]["uid"]
            and all(c.get("ready") for c in p.get("status", {}).get("containerStatuses", []))], 180)

        secret = kube.get("v1", "Secret", stack_namespace, f"{STACK}-elasticsearch-elastic")
        assert secret is not None
        password = base64.b64decode(secret["data"]["password"]).decode()
        bundle = kube.get("v1", "ConfigMap", stack_namespace, f"{STACK}-ca-bundle")
        assert bundle is not None
        context = ssl.create_default_context(cadata=bundle["data"]["ca.crt"])
        context.check_hostname = False  # reached through a port-forward on 127.0.0.1
        index = f"agentobs_{stack_namespace}_{STACK}_logs-*"
        query = {"size": 10000, "_source": ["e2e_seq"], "query": {"term": {"e2e_run.keyword": run}}}
        with port_forward(kubectl_bin, stack_namespace, f"svc/{STACK}-elasticsearch", 9200) as port:
            url = f"https://127.0.0.1:{port}"

            def seen() -> list[int]:
                hits = _es_query(url, context, password, f"{index}/_search", query)["hits"]["hits"]
                return [int(h["_source"]["e2e_seq"]) for h in hits]

            _wait("every line in Elasticsearch", lambda: len(seen()) >= LINES + REPEATS, 600)
            time.sleep(30)  # what a duplicate would take to arrive: a retried chunk, a re-read file
            _es_query(url, context, password, f"{index}/_refresh", {})
            counts = collections.Counter(seen())
        assert counts[0] == REPEATS, "identical lines are documents of their own"
        duplicated = {seq: n for seq, n in counts.items() if seq and n != 1}
        missing = set(range(1, LINES + 1)) - set(counts)
        assert (duplicated, missing) == ({}, set())
    finally:
        kube.delete("v1", "Pod", stack_namespace, name)
