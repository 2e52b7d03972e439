"""The trace path of a stack running for real on the real node: the example agent, injected by the
webhook, sends spans over OTLP/TLS to the Jaeger v2 collector the operator renders, which stores
them in an Elasticsearch-API store given as `spec.elasticsearch.external` (HTTPS, basic auth from
a Secret, the store's CA from a Secret); the test reads them back through Jaeger query's HTTPS
API and from the store itself.

Asserted against the running processes:
- the stand-in answers only with the credentials, over TLS its CA verifies;
- a trace of the agent read back through Jaeger query: one `invoke_agent` root, its four children
  (LLM call, decision, two tool calls) pointing at it, `gen_ai.*` attributes, the injected
  resource attributes; the same spans are documents in the store's span index;
- the agent's JSON log lines (`kubectl logs`) carry the trace and span ids of its spans;
- a Job of the stack that cannot start (the retention set-up: its Elasticsearch image is not built
  here) is named in `ElasticsearchReady` rather than the stack reported Ready;
- a collector pod killed while the agent keeps sending: every span the agent finished after the
  collector Service again routed only to live collectors arrives (the SDK's exporter retries);
  the figures for before, during and after are printed.

The Elasticsearch-API stand-in. No build of Elasticsearch can be had here, so the store is
OpenSearch 2.19.6 assembled from Maven Central (hack/standin.py) with Debian's nginx in the same
pod terminating TLS and checking basic auth (a file of users the test writes). Jaeger recognises
OpenSearch 2.x and uses its Elasticsearch 7 index mappings. What this does NOT prove:
- Elasticsearch 8 itself: its 8.x mappings and client path in Jaeger, its compatibility headers,
  its security (file realm users, roles and privileges the provisioned cluster gets: the jaeger
  user here may do anything), TLS and auth done by Elasticsearch rather than a proxy;
- retention: index lifecycle management (ILM) does not exist in OpenSearch (it has ISM); the
  retention Job and CronJob the operator renders use the Elasticsearch image, which is not built
  here, so their pods never start and no lifecycle policy is put or checked;
- a multi-node cluster, replicas allocated (the span indices stay yellow with one node), or the
  operator-provisioned Elasticsearch StatefulSet;
- NetworkPolicies: the node's bridge CNI does not enforce them, so the egress rules to the
  external store are checked by the unit tests' policy evaluator, not by this run.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentobs import pki

from cluster_support import ROOT, wait_established, wait_for
from conftest import (
    RESTRICTED,
    Kubectl,
    agent_pod,
    get_json,
    namespace_manifest,
    namespaced_operator,
    pod_logs,
    pod_ready,
)

STANDIN_IMAGE = "agentobs.local/opensearch-standin:2.19.6"
NAME = "trace"
SMALL = {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}}
SPANS_PER_RUN = 5  # invoke_agent, chat, decision, search, calculator (examples/agent)
NGINX_CONF = (Path(__file__).parent / "standin-nginx.conf").read_text()


def _b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def _ssha(password: str) -> str:
    """An nginx `auth_basic_user_file` entry's hash: {SSHA} = base64(sha1(password + salt) + salt)."""
    salt = os.urandom(8)
    return "{SSHA}" + _b64(hashlib.sha1(password.encode() + salt).digest() + salt)


class Flow:
    def __init__(self, kubectl: Kubectl, namespace: str, store_ca: bytes, password: str) -> None:
        self.kubectl, self.namespace, self.password = kubectl, namespace, password
        self.store_context = ssl.create_default_context(cadata=store_ca.decode())
        self.store_context.check_hostname = False  # reached by pod address; the CA check stays
        self._stack_context: ssl.SSLContext | None = None

    @property
    def stack_context(self) -> ssl.SSLContext:
        if self._stack_context is None:
            data = get_json(self.kubectl, "secret", f"{NAME}-ca", "-n", self.namespace)["data"]
            self._stack_context = ssl.create_default_context(cadata=base64.b64decode(data["ca.crt"]).decode())
            self._stack_context.check_hostname = False
        return self._stack_context

    def pods(self, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = get_json(self.kubectl, "pods", "-n", self.namespace, "-l", selector)["items"]
        return [p for p in items if p.get("status", {}).get("podIP") and not p["metadata"].get("deletionTimestamp")]

    def ready(self, component: str, count: int) -> list[dict[str, Any]] | None:
        pods = self.pods(f"app.kubernetes.io/component={component}")
        return pods if len(pods) == count and all(pod_ready(p) for p in pods) else None

    def store(self, path: str, auth: bool = True) -> tuple[int, Any]:
        (pod,) = self.pods("app=standin")
        request = urllib.request.Request(f"https://{pod['status']['podIP']}:9200{path}")
        if auth:
            request.add_header("Authorization", "Basic " + _b64(f"jaeger:{self.password}"))
        try:
            with urllib.request.urlopen(request, context=self.store_context, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, None

    def query(self, path: str) -> Any:
        """Jaeger query's HTTP API, over HTTPS with the stack's CA; None for 404 (not stored yet)."""
        pod = wait_for("a ready Jaeger query pod", lambda: self.ready("jaeger-query", 1), timeout=300, interval=3)[0]
        try:
            with urllib.request.urlopen(f"https://{pod['status']['podIP']}:16686{path}", context=self.stack_context,
                                        timeout=20) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def runs(self) -> list[dict[str, Any]]:
        """The agent's `run N done` log lines (JSON), each logged inside its run's root span."""
        out = []
        for line in pod_logs(self.kubectl, self.namespace, "agent").splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("logger") == "example_agent" and str(record.get("message", "")).endswith(" done"):
                    out.append(record)
        return out


def _standin(namespace: str) -> list[dict[str, Any]]:
    labels = {"app": "standin"}
    container = {"securityContext": RESTRICTED, "imagePullPolicy": "Never", "image": STANDIN_IMAGE}
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "standin", "namespace": namespace, "labels": labels},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {**container, "name": "opensearch",
                 "resources": {"requests": {"cpu": "100m", "memory": "768Mi"}, "limits": {"memory": "1Gi"}}},
                {**container, "name": "tls-proxy",
                 "command": ["/usr/sbin/nginx", "-e", "stderr", "-c", "/etc/standin/nginx/nginx.conf",
                             "-g", "daemon off;"],
                 "ports": [{"name": "https", "containerPort": 9200}],
                 "readinessProbe": {"httpGet": {"path": "/standin-ready", "port": 9200, "scheme": "HTTPS"},
                                    "periodSeconds": 3},
                 "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                 "volumeMounts": [{"name": "nginx", "mountPath": "/etc/standin/nginx", "readOnly": True},
                                  {"name": "tls", "mountPath": "/etc/standin/tls", "readOnly": True},
                                  {"name": "auth", "mountPath": "/etc/standin/auth", "readOnly": True}]},
            ],
            "volumes": [{"name": "nginx", "configMap": {"name": "standin-nginx"}},
                        {"name": "tls", "secret": {"secretName": "standin-tls"}},
                        {"name": "auth", "secret": {"secretName": "standin-htpasswd"}}],
        },
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "standin", "namespace": namespace},
               "spec": {"selector": labels, "ports": [{"name": "https", "port": 9200, "targetPort": "https"}]}}
    return [pod, service]


@pytest.fixture(scope="module")
def flow(real_node: str, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    # The API this test uses, whichever test (or none) installed the chart before.
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    wait_established(kubectl, "agentobservabilities.agentobs.io")
    namespace = f"aobs-trace-{uuid.uuid4().hex[:6]}"
    kubectl("apply", "-f", "-", input=json.dumps(
        namespace_manifest(namespace, {"pod-security.kubernetes.io/enforce": "restricted"})))
    configuration = f"agentobs-webhook-{namespace}"
    operator = namespaced_operator(namespace, Path(tmp_path_factory.mktemp("trace")) / "operator.log", 10)
    # The store's own CA and serving certificate (names of its Service), and the jaeger user.
    now = dt.datetime.now(dt.UTC)
    ca = pki.make_ca("opensearch stand-in CA", now, dt.timedelta(days=1))
    dns = [f"standin.{namespace}.svc", f"standin.{namespace}.svc.cluster.local"]
    serving = pki.issue(ca, dns[0], dns, now, dt.timedelta(days=1), client=False)
    password = base64.urlsafe_b64encode(os.urandom(18)).decode()
    secrets = {"standin-tls": {"tls.crt": serving.cert_pem, "tls.key": serving.key_pem},
               "standin-htpasswd": {"htpasswd": f"jaeger:{_ssha(password)}\n"},
               "standin-ca": {"ca.crt": ca.cert_pem},
               "standin-credentials": {"username": "jaeger", "password": password}}
    for name, data in secrets.items():
        kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "data": {k: _b64(v) for k, v in data.items()}}))
    kubectl("create", "configmap", "standin-nginx", "-n", namespace, f"--from-literal=nginx.conf={NGINX_CONF}")
    for manifest in _standin(namespace):
        kubectl("apply", "-f", "-", input=json.dumps(manifest))
    resource = {
        "apiVersion": "agentobs.io/v1alpha1", "kind": "AgentObservability",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "instrumentation": {"podSelector": {"matchLabels": {"app": "example-agent"}}},
            "tracing": {"collector": {"replicas": 2, "resources": SMALL}, "queryReplicas": 1,
                        "queryResources": SMALL},
            "prometheus": {"enabled": False}, "grafana": {"enabled": False}, "logging": {"enabled": False},
            "elasticsearch": {"external": {"url": f"https://{dns[0]}:9200",
                                           "credentialsSecret": "standin-credentials", "caSecret": "standin-ca"}},
        },
    }
    flow = Flow(kubectl, namespace, ca.cert_pem, password)
    try:
        # Jaeger checks the store when it starts: the store first, so nothing crash-loops.
        wait_for("the stand-in store ready (TLS proxy and OpenSearch)",
                 lambda: (p := flow.pods("app=standin")) and pod_ready(p[0]), timeout=300, interval=3)
        operator.start()
        wait_for("the operator's webhook configuration",
                 lambda: kubectl("get", "mutatingwebhookconfiguration", configuration, check=False).returncode == 0,
                 timeout=120)
        kubectl("apply", "-f", "-", input=json.dumps(resource))
        wait_for("the stack's CA", lambda: kubectl("get", "secret", f"{NAME}-ca", "-n", namespace,
                                                  check=False).returncode == 0, timeout=120)
        kubectl("apply", "-f", "-", input=json.dumps(agent_pod(namespace, "0.5")))
        yield flow
    finally:
        resource_now = kubectl("get", "agentobservability", NAME, "-n", namespace, "-o", "json", check=False).stdout
        conditions = json.loads(resource_now).get("status", {}).get("conditions", []) if resource_now else []
        print("\nconditions at the end: " + "; ".join(f"{c['type']}={c['status']} ({c.get('reason', '')})"
                                                    for c in conditions))
        jobs = kubectl("get", "pods", "-n", namespace, "-l", "job-name", "-o", "json", check=False).stdout
        print("retention job pods: " + "; ".join(
            f"{p['metadata']['name']} {p['status'].get('phase')} "
            + ",".join(str((c.get('state') or {}).get('waiting', {}).get('reason', ''))
                       for c in p['status'].get('containerStatuses') or [])
            for p in (json.loads(jobs)["items"] if jobs else [])))
        operator.stop()
        problems = [line for line in operator.log().splitlines() if "ERROR" in line or "Traceback" in line]
        print("\noperator log, errors:\n" + "\n".join(problems[-20:]) if problems else "\noperator log: no errors")
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        kubectl("delete", "mutatingwebhookconfiguration", configuration, "--ignore-not-found", check=False)


def test_the_store_answers_over_tls_only_with_the_credentials(flow: Flow) -> None:
    _status, info = wait_for("the stand-in to answer with the jaeger credentials",
                            lambda: (r := flow.store("/")) and r[0] == 200 and r, timeout=120, interval=3)
    assert info["version"]["distribution"] == "opensearch" and info["version"]["number"].startswith("2.")
    assert flow.store("/", auth=False)[0] == 401
    saved, flow.password = flow.password, "wrong"
    try:
        assert flow.store("/")[0] == 401
    finally:
        flow.password = saved


def _trace(flow: Flow, trace_id: str) -> dict[str, Any] | None:
    body = flow.query(f"/api/traces/{trace_id}")
    if not body or not body.get("data"):
        return None
    trace: dict[str, Any] = body["data"][0]
    return trace if len(trace["spans"]) >= SPANS_PER_RUN else None


def test_a_trace_of_the_agent_reads_back_through_jaeger_query_from_the_store(flow: Flow) -> None:
    wait_for("both collectors and the query ready", lambda: flow.ready("jaeger-collector", 2)
             and flow.ready("jaeger-query", 1), timeout=300, interval=3)
    (agent,) = flow.pods("app=example-agent")
    assert agent["metadata"]["annotations"].get("agentobs.io/injected"), "the webhook did not inject the agent"
    env = {e["name"]: e.get("value") for e in agent["spec"]["containers"][0]["env"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("https://") and env["OTEL_EXPORTER_OTLP_CERTIFICATE"]
    run = wait_for("a run of the agent logged", lambda: flow.runs()[2:3], timeout=120, interval=2)[0]
    trace = wait_for(f"trace {run['trace_id']} in Jaeger query", lambda: _trace(flow, run["trace_id"]),
                     timeout=120, interval=3)
    spans = {s["spanID"]: s for s in trace["spans"]}
    assert len(spans) == SPANS_PER_RUN, [s["operationName"] for s in spans.values()]
    roots = [s for s in spans.values() if not s["references"]]
    assert len(roots) == 1
    root = roots[0]
    tags = {s["spanID"]: {t["key"]: t["value"] for t in s["tags"]} for s in spans.values()}
    assert tags[root["spanID"]]["gen_ai.operation.name"] == "invoke_agent"
    children = [s for s in spans.values() if s is not root]
    for child in children:
        assert [(r["refType"], r["spanID"]) for r in child["references"]] == [("CHILD_OF", root["spanID"])]
    operations = sorted(tags[c["spanID"]].get("gen_ai.operation.name", "") for c in children)
    assert operations.count("execute_tool") == 2 and "chat" in operations, operations
    (chat,) = [tags[c["spanID"]] for c in children if tags[c["spanID"]].get("gen_ai.operation.name") == "chat"]
    assert chat["gen_ai.request.model"] == "fake-model-1" and chat["gen_ai.usage.input_tokens"] > 0
    process = trace["processes"][root["processID"]]
    process_tags = {t["key"]: t["value"] for t in process["tags"]}
    assert process["serviceName"] and process_tags["k8s.pod.name"] == "agent"
    assert process_tags["k8s.namespace.name"] == flow.namespace
    # The same spans, as documents of the store's daily span index.
    index = f"agentobs_{flow.namespace}_{NAME}_traces-jaeger-span-*"
    status, found = flow.store(f"/{index}/_search?size=0&q=traceID:{run['trace_id']}")
    assert status == 200 and found["hits"]["total"]["value"] == SPANS_PER_RUN, found
    # And the operator reads the tracing components back as ready.
    wait_for("TracingReady in the resource's status", lambda: _condition(flow, "TracingReady") == "True",
             timeout=120, interval=3)


def _condition(flow: Flow, kind: str, field: str = "status") -> str | None:
    status = get_json(flow.kubectl, "agentobservability", NAME, "-n", flow.namespace).get("status", {})
    return next((c.get(field) for c in status.get("conditions", []) if c["type"] == kind), None)


def test_a_retention_job_that_cannot_start_is_reported(flow: Flow) -> None:
    # The retention set-up Job runs the Elasticsearch image, which is not built for this node, so
    # its pod cannot pull it. The first runs found the stack reported Ready regardless (no
    # condition looked at Jobs); the operator must name the cause.
    reason = wait_for("ElasticsearchReady false naming the image pull",
                      lambda: _condition(flow, "ElasticsearchReady") == "False"
                      and _condition(flow, "ElasticsearchReady", "reason"), timeout=180, interval=3)
    assert reason in ("ImagePullBackOff", "ErrImagePull"), reason
    assert "es-setup" in str(_condition(flow, "ElasticsearchReady", "message"))
    assert _condition(flow, "Ready") == "False"


def test_the_agent_log_lines_carry_the_ids_of_its_spans(flow: Flow) -> None:
    runs = wait_for("three runs of the agent logged", lambda: (r := flow.runs()) and len(r) >= 3 and r,
                    timeout=120, interval=2)
    for run in runs[:3]:
        assert len(run["trace_id"]) == 32 and int(run["trace_id"], 16)
        trace = wait_for(f"trace {run['trace_id']}", lambda r=run: _trace(flow, r["trace_id"]), timeout=120, interval=3)
        root = next(s for s in trace["spans"] if not s["references"])
        # Logged inside the run: the line names the run's root span.
        assert run["span_id"] == root["spanID"], (run, root["spanID"])


def _stamp(record: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(str(record["ts"]).replace("Z", "+00:00")).timestamp()


def _ready_addresses(flow: Flow) -> set[str]:
    slices = get_json(flow.kubectl, "endpointslices", "-n", flow.namespace, "-l",
                      f"kubernetes.io/service-name={NAME}-jaeger-collector")["items"]
    return {a for s in slices for e in s.get("endpoints") or [] if e.get("conditions", {}).get("ready")
            for a in e["addresses"]}


def test_a_killed_collector_loses_no_span_sent_after_the_service_routes_to_live_ones(flow: Flow) -> None:
    collectors = wait_for("two collectors ready", lambda: flow.ready("jaeger-collector", 2), timeout=300, interval=3)
    # A run finished 15 s ago has passed the SDK's and the collector's batching.
    wait_for("the agent's traces arriving", lambda: (r := [x for x in flow.runs() if _stamp(x) < time.time() - 15])
             and _trace(flow, r[-1]["trace_id"]), timeout=120, interval=3)
    victim = collectors[0]
    window_start = time.time()
    time.sleep(10)
    killed_at = time.time()
    flow.kubectl("delete", "pod", "-n", flow.namespace, victim["metadata"]["name"], "--grace-period=1",
                 "--wait=false")
    wait_for("the collector Service routing only to live collectors",
             lambda: (a := _ready_addresses(flow)) and victim["status"]["podIP"] not in a, timeout=120, interval=0.2)
    routed_at = time.time()
    wait_for("the replacement collector ready", lambda: flow.ready("jaeger-collector", 2), timeout=300, interval=2)
    time.sleep(max(0.0, routed_at + 20 - time.time()))
    window_end = time.time()
    runs = [r for r in flow.runs() if window_start <= _stamp(r) <= window_end]
    phases = {"before the kill": [r for r in runs if _stamp(r) < killed_at],
              "until the Service routed to live collectors": [r for r in runs if killed_at <= _stamp(r) < routed_at],
              "after": [r for r in runs if _stamp(r) >= routed_at]}
    assert phases["after"], "the agent logged no run after the Service routed to live collectors"

    def arrived(records: list[dict[str, Any]]) -> int:
        body = flow.query("/api/traces?" + urllib.parse.urlencode({
            "service": service, "limit": 5000, "start": int(window_start * 1e6) - 10_000_000,
            "end": int(window_end * 1e6) + 10_000_000}))
        counts = {t["traceID"]: len(t["spans"]) for t in (body or {}).get("data") or []}
        return sum(min(counts.get(r["trace_id"], 0), SPANS_PER_RUN) for r in records)

    first = _trace(flow, phases["before the kill"][0]["trace_id"]) if phases["before the kill"] else None
    assert first is not None, "no trace from before the kill"
    service = first["processes"][first["spans"][0]["processID"]]["serviceName"]
    after_sent = SPANS_PER_RUN * len(phases["after"])
    # Spans reach the store up to a batch interval of the SDK and one of the collector later.
    try:
        wait_for("every span sent after the Service routed to live collectors", lambda: arrived(phases["after"])
                 == after_sent, timeout=90, interval=5)
    finally:
        figures = {name: (SPANS_PER_RUN * len(records), arrived(records)) for name, records in phases.items()}
        print("\nspans sent/arrived around the collector kill: "
              + "; ".join(f"{name}: {sent} sent, {got} arrived" for name, (sent, got) in figures.items()))
    assert figures["after"] == (after_sent, after_sent)
