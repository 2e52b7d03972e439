"""The traces and logs side against the real API server: Elasticsearch, Jaeger v2, Fluentd, retention.

The API server's refusals of an even node count, fewer than 3 nodes and an incomplete `external`
are in `tests/cases.py` (run by test_api_validation.py); here are the neighbours those cases do not
cover. kwok runs no containers: these tests assert objects, admission and status, not data flow.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from agentobs.kube import Kube, KubeError

from conftest import Operator, condition, make_resource, wait_for, wait_ready

EXTERNAL_URL = "https://es.example.org:9243"
EXTERNAL = {"url": EXTERNAL_URL, "credentialsSecret": "team-es", "caSecret": "team-es-ca"}
WORKLOADS = [("apps/v1", "StatefulSet"), ("apps/v1", "Deployment"), ("apps/v1", "DaemonSet"),
             ("batch/v1", "CronJob")]


def _objects(kube: Kube, namespace: str, name: str) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for api, kind in [*WORKLOADS, ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"),
                      ("policy/v1", "PodDisruptionBudget"), ("networking.k8s.io/v1", "NetworkPolicy"),
                      ("autoscaling/v2", "HorizontalPodAutoscaler")]:
        for obj in kube.list(api, kind, namespace, f"agentobs.io/owner={name}"):
            found[(kind, obj["metadata"]["name"])] = obj
    return found


def _container_env(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = workload["spec"]
    pod = spec["jobTemplate"]["spec"]["template"]["spec"] if workload["kind"] == "CronJob" else spec["template"]["spec"]
    return {e["name"]: e for e in pod["containers"][0].get("env", [])}


@pytest.mark.parametrize(("spec", "field"), [
    ({"elasticsearch": {"external": {"url": "http://es.example.org:9200", "credentialsSecret": "s"}}},
     "spec.elasticsearch.external.url"),
    ({"elasticsearch": {"external": {"url": "", "credentialsSecret": "s"}}}, "spec.elasticsearch.external.url"),
    ({"elasticsearch": {"external": {"url": EXTERNAL_URL, "credentialsSecret": ""}}},
     "spec.elasticsearch.external.credentialsSecret"),
    ({"elasticsearch": {"nodes": 2}}, "spec.elasticsearch.nodes"),
], ids=["external-plain-http", "external-empty-url", "external-empty-credentials", "two-nodes"])
def test_api_refuses_elasticsearch_it_cannot_run(kube: Kube, namespace: str, spec: dict[str, Any],
                                                 field: str) -> None:
    with pytest.raises(KubeError) as refused:
        kube.apply(make_resource("bad", namespace, spec))
    assert refused.value.status == 422 and field in refused.value.message, refused.value.message


@pytest.mark.parametrize("elasticsearch", [{"nodes": 5}, {"nodes": 1, "external": EXTERNAL}],
                         ids=["five-nodes", "external-needs-no-quorum"])
def test_api_accepts_what_can_run(kube: Kube, namespace: str, elasticsearch: dict[str, Any]) -> None:
    created = kube.apply(make_resource("fine", namespace, {"paused": True, "elasticsearch": elasticsearch}))
    assert created["spec"]["elasticsearch"]["nodes"] == elasticsearch["nodes"]


def test_default_stack_is_ready_with_traces_and_logs(kube: Kube, operator: Operator, namespace: str) -> None:
    kube.apply(make_resource("stack", namespace, {}))
    res = wait_ready(kube, namespace, "stack", timeout=180)
    for type_ in ("ElasticsearchReady", "TracingReady", "LoggingReady"):
        assert condition(res, type_)["status"] == "True", condition(res, type_)
    status = res["status"]
    assert status["endpoints"]["otlpGrpc"] == f"https://stack-jaeger-collector.{namespace}.svc:4317"
    assert status["endpoints"]["otlpHttp"] == f"https://stack-jaeger-collector.{namespace}.svc:4318"
    assert status["components"]["elasticsearch"] == {"ready": 3, "desired": 3}

    objects = _objects(kube, namespace, "stack")
    assert {("StatefulSet", "stack-elasticsearch"), ("Service", "stack-elasticsearch-headless"),
            ("Deployment", "stack-jaeger-collector"), ("Deployment", "stack-jaeger-query"),
            ("StatefulSet", "stack-fluentd"), ("CronJob", "stack-es-retention"),
            ("Secret", "stack-elasticsearch-grafana"), ("Secret", "stack-elasticsearch-tls"),
            ("PodDisruptionBudget", "stack-elasticsearch")} <= objects.keys()
    grafana_creds = objects[("Secret", "stack-elasticsearch-grafana")]["data"]
    assert {"username", "password"} <= grafana_creds.keys()
    assert status["components"]["fluentd"] == {"ready": 2, "desired": 2}
    # The stack reads no node files: nothing of it is cluster-scoped (the node collector is shared).
    for kind in ("ClusterRole", "ClusterRoleBinding"):
        assert not kube.list("rbac.authorization.k8s.io/v1", kind, None,
                             f"agentobs.io/owner=stack,agentobs.io/owner-namespace={namespace}")
    claims = kube.list("v1", "PersistentVolumeClaim", namespace, "app.kubernetes.io/name=elasticsearch")
    assert len(claims) == 3


def test_external_elasticsearch_creates_none_and_wires_every_client(kube: Kube, operator: Operator,
                                                                    namespace: str) -> None:
    for name, data in [("team-es", {"username": "agents", "password": "given-by-the-team"}),
                       ("team-es-ca", {"ca.crt": "-----BEGIN CERTIFICATE-----\n"})]:
        kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
                    "stringData": data})
    kube.apply(make_resource("ext", namespace, {"elasticsearch": {"external": EXTERNAL}}))
    res = wait_ready(kube, namespace, "ext", timeout=180)
    assert condition(res, "ElasticsearchReady") == {}, "nothing of Elasticsearch is provisioned to report on"
    assert condition(res, "TracingReady")["status"] == "True" and condition(res, "LoggingReady")["status"] == "True"

    objects = _objects(kube, namespace, "ext")
    assert not [k for k, o in objects.items() if "elasticsearch" in o["metadata"]["labels"].get(
        "app.kubernetes.io/name", "") or k[1].startswith("ext-elasticsearch")]
    assert not kube.list("v1", "PersistentVolumeClaim", namespace, "app.kubernetes.io/name=elasticsearch")
    collector = yaml.safe_load(objects[("ConfigMap", "ext-jaeger-collector")]["data"]["config.yaml"])
    backend = collector["extensions"]["jaeger_storage"]["backends"]["elasticsearch"]["elasticsearch"]
    assert backend["server_urls"] == [EXTERNAL_URL]
    assert f"hosts {EXTERNAL_URL}\n" in objects[("ConfigMap", "ext-fluentd")]["data"]["fluent.conf"]
    grafana_config = [json.dumps(o["data"]) for k, o in objects.items()
                      if k[0] == "ConfigMap" and o["metadata"]["labels"]["app.kubernetes.io/name"] == "grafana"]
    assert any(EXTERNAL_URL in text for text in grafana_config), "Grafana's datasource points at the external url"
    for key in [("Deployment", "ext-jaeger-collector"), ("Deployment", "ext-jaeger-query"),
                ("StatefulSet", "ext-fluentd"), ("CronJob", "ext-es-retention")]:
        assert _container_env(objects[key])["ES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "team-es", key


def test_switching_to_external_removes_the_provisioned_cluster(kube: Kube, operator: Operator,
                                                               namespace: str) -> None:
    kube.apply(make_resource("move", namespace, {}))
    wait_ready(kube, namespace, "move", generation=1, timeout=180)
    kube.apply(make_resource("move", namespace, {"elasticsearch": {"external": EXTERNAL}}))
    wait_ready(kube, namespace, "move", generation=2, timeout=180)
    wait_for("the provisioned Elasticsearch to be removed",
             lambda: kube.get("apps/v1", "StatefulSet", namespace, "move-elasticsearch") is None)
    kept = {o["metadata"]["name"] for o in kube.list("v1", "Secret", namespace, "agentobs.io/owner=move")}
    assert "move-elasticsearch-grafana" in kept, "generated credentials are kept, like the data volumes"


@pytest.fixture
def restricted_namespace(kubectl: Callable[..., Any], namespace: str) -> str:
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    return namespace


def test_restricted_namespace_admits_every_workload(kube: Kube, kubectl: Callable[..., Any],
                                                    operator: Operator, restricted_namespace: str) -> None:
    ns = restricted_namespace
    kube.apply(make_resource("strict", ns, {}))
    res = wait_ready(kube, ns, "strict", timeout=180)
    for type_ in ("ElasticsearchReady", "TracingReady", "LoggingReady"):
        assert condition(res, type_)["status"] == "True", condition(res, type_)
    refused = [e["message"] for e in kube.list("v1", "Event", ns) if e.get("reason") == "FailedCreate"]
    assert refused == []
    # The index set-up Job's pod is admitted and runs to completion (kwok's stage for Job pods).
    wait_for("the index set-up Job to complete", lambda: [
        j for j in kube.list("batch/v1", "Job", ns, "agentobs.io/owner=strict")
        if (j.get("status") or {}).get("succeeded")])
    # The daily CronJob has not run yet; its pod is admitted all the same.
    cronjob = kube.get("batch/v1", "CronJob", ns, "strict-es-retention")
    assert cronjob is not None
    template = cronjob["spec"]["jobTemplate"]["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "retention-probe", "namespace": ns,
                                                           "labels": template["metadata"]["labels"]},
           "spec": template["spec"]}
    result = kubectl("create", "--dry-run=server", "-o", "name", "-f", "-", input=json.dumps(pod), check=False)
    assert result.returncode == 0 and "forbidden" not in result.stderr, result.stderr
