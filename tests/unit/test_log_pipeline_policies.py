"""The log pipeline's NetworkPolicies (issue 13's design), flow by flow, in and out: the cluster's
one node collector in the operator's namespace, each stack's Fluentd aggregator, the es-setup Job
and the retention CronJob.

Judged by the NetworkPolicy evaluator of `test_network_policies` (its semantics are tested there)
over what the operator renders: two stacks in two namespaces, and the collector rendered for their
two routes, as `agentobs.stack.logroutes` would.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_network_policies import API_SERVER, DNS, INTERNET, Cluster, Endpoint, Pod

from agentobs.api.spec import AgentObservabilitySpec
from agentobs.render import Owner, collector, fluentd, make_stack

from placeholders import placeholder_material

OPERATOR_NS = "agentobs-system"
TEAM_A, TEAM_B = "team-a", "team-b"


def _template(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] == "CronJob":
        return dict(obj["spec"]["jobTemplate"]["spec"]["template"])
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return dict(obj["spec"]["template"])
    return None


def _pods(objects: list[dict[str, Any]], namespace: str, prefix: str) -> dict[str, Pod]:
    """One pod per workload, named `<prefix>/<component>` (the set-up Job: `<prefix>/es-setup`)."""
    out: dict[str, Pod] = {}
    for obj in objects:
        template = _template(obj)
        if template is None:
            continue
        ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"]
                 for p in c.get("ports", []) if "name" in p}
        component = "es-setup" if obj["kind"] == "Job" else obj["metadata"]["labels"]["app.kubernetes.io/component"]
        out[f"{prefix}/{component}"] = Pod(f"{prefix}/{component}", namespace, template["metadata"]["labels"], ports)
    return out


def _world(specs: dict[str, dict[str, Any]], routed: tuple[str, ...] | None = None
           ) -> tuple[Cluster, dict[str, Pod]]:
    """Stacks `a` (in team-a) and `b` (in team-b) from `specs`, and the collector with a route for
    each stack in `routed` (default: every stack with logging on)."""
    objects: list[dict[str, Any]] = []
    pods: dict[str, Pod] = {}
    routes: list[collector.Route] = []
    for prefix, namespace in (("a", TEAM_A), ("b", TEAM_B)):
        owner = Owner(name=f"stack-{prefix}", namespace=namespace, uid=prefix,
                      spec=AgentObservabilitySpec.model_validate(specs.get(prefix, {})),
                      extra={collector.NAMESPACE_EXTRA: OPERATOR_NS})
        stack = make_stack(owner, placeholder_material(owner))
        objects += stack
        pods |= _pods(stack, namespace, prefix)
        if fluentd.enabled(owner) and (routed is None or prefix in routed):
            routes.append(collector.Route(owner_namespace=namespace, owner_name=owner.name, namespaces=(namespace,),
                                          host=fluentd.service_host(owner), port=fluentd.FORWARD_PORT))
    node = collector.render(OPERATOR_NS, routes)
    objects += node
    pods |= _pods(node, OPERATOR_NS, "node")
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    namespaces: dict[str, dict[str, str]] = {n: {} for n in (TEAM_A, TEAM_B, OPERATOR_NS, "kube-system", "elsewhere")}
    return Cluster(policies, namespaces), pods


COLLECTOR = "node/log-collector"
# Pods the pipeline does not know: an agent of stack a, the operator beside the collector, and a
# pod elsewhere dressed in the labels of stack a's Prometheus.
AGENT = Pod("agent", TEAM_A, {"agentobs.io/agent": "true"})
OPERATOR = Pod("operator", OPERATOR_NS, {"app.kubernetes.io/name": "agentobs-operator"})
IMPOSTOR = Pod("impostor", "elsewhere", {"app.kubernetes.io/name": "prometheus",
                                         "app.kubernetes.io/instance": "stack-a"})

Flow = tuple[str | Endpoint, str | Endpoint, int, str]
NEEDED: list[Flow] = [
    (COLLECTOR, "a/fluentd", 24224, "TCP"), (COLLECTOR, "b/fluentd", 24224, "TCP"),
    ("a/prometheus", COLLECTOR, 2020, "TCP"), ("b/prometheus", COLLECTOR, 2020, "TCP"),
    ("a/prometheus", "a/fluentd", 24231, "TCP"), ("b/prometheus", "b/fluentd", 24231, "TCP"),
    ("a/fluentd", "a/elasticsearch", 9200, "TCP"), ("b/fluentd", "b/elasticsearch", 9200, "TCP"),
    ("a/es-setup", "a/elasticsearch", 9200, "TCP"), ("a/es-retention", "a/elasticsearch", 9200, "TCP"),
    (COLLECTOR, API_SERVER, 6443, "TCP"), (COLLECTOR, API_SERVER, 443, "TCP"),
    *((src, DNS, 53, proto) for src in (COLLECTOR, "a/fluentd", "a/es-setup", "a/es-retention")
      for proto in ("UDP", "TCP")),
]
NOT_NEEDED: list[Flow] = [
    # The collector: only the aggregators' forward ports, never a store or another service.
    (COLLECTOR, "a/prometheus", 9090, "TCP"), (COLLECTOR, "a/elasticsearch", 9200, "TCP"),
    (COLLECTOR, "a/fluentd", 24231, "TCP"), (COLLECTOR, "a/alertmanager", 9093, "TCP"),
    # (Port 443 to any address stays open to it: the API server's, see render.egress.)
    (COLLECTOR, "a/jaeger-collector", 4317, "TCP"), (COLLECTOR, INTERNET, 9200, "TCP"),
    (COLLECTOR, OPERATOR, 8080, "TCP"),
    # The aggregator: its own Elasticsearch only.
    ("a/fluentd", "a/alertmanager", 9093, "TCP"), ("a/fluentd", "a/prometheus", 9090, "TCP"),
    ("a/fluentd", API_SERVER, 6443, "TCP"), ("a/fluentd", INTERNET, 443, "TCP"),
    ("a/fluentd", "b/elasticsearch", 9200, "TCP"), ("a/fluentd", COLLECTOR, 2020, "TCP"),
    ("a/fluentd", "a/elasticsearch", 9300, "TCP"),
    # Who may send to an aggregator or read a collector's metrics: not agents, not the operator's
    # neighbours, not another stack's Prometheus, not a look-alike elsewhere.
    (AGENT, "a/fluentd", 24224, "TCP"), (OPERATOR, "a/fluentd", 24224, "TCP"),
    ("b/prometheus", "a/fluentd", 24231, "TCP"), ("a/prometheus", "b/fluentd", 24231, "TCP"),
    (AGENT, COLLECTOR, 2020, "TCP"), (IMPOSTOR, COLLECTOR, 2020, "TCP"), ("a/grafana", COLLECTOR, 2020, "TCP"),
    ("a/jaeger-collector", "a/fluentd", 24224, "TCP"),
    # The index set-up and upkeep: Elasticsearch only.
    ("a/es-setup", "a/prometheus", 9090, "TCP"), ("a/es-setup", INTERNET, 443, "TCP"),
    ("a/es-setup", API_SERVER, 6443, "TCP"), ("a/es-retention", "b/elasticsearch", 9200, "TCP"),
]


def _resolve(pods: dict[str, Pod], end: str | Endpoint) -> Endpoint:
    return pods[end] if isinstance(end, str) else end


def _id(flow: Flow) -> str:
    src, dst, port, protocol = flow
    return f"{src if isinstance(src, str) else src.name}->{dst if isinstance(dst, str) else dst.name}:{port}/{protocol}"


@pytest.mark.parametrize("flow", NEEDED, ids=[_id(f) for f in NEEDED])
def test_each_needed_pipeline_flow_is_admitted(flow: Flow) -> None:
    cluster, pods = _world({})
    src, dst, port, protocol = flow
    assert cluster.allows(_resolve(pods, src), _resolve(pods, dst), port, protocol)


@pytest.mark.parametrize("flow", NOT_NEEDED, ids=[_id(f) for f in NOT_NEEDED])
def test_each_unneeded_pipeline_flow_is_refused(flow: Flow) -> None:
    cluster, pods = _world({})
    src, dst, port, protocol = flow
    assert not cluster.allows(_resolve(pods, src), _resolve(pods, dst), port, protocol)


def test_every_pipeline_pod_is_limited_both_ways() -> None:
    """A policy of each direction selects each of the pipeline's pods (no pod is left open)."""
    cluster, pods = _world({})
    for name in (COLLECTOR, "a/fluentd", "b/fluentd", "a/es-setup", "a/es-retention"):
        for direction in ("Ingress", "Egress"):
            assert cluster._selecting(pods[name], direction), f"{name}: no {direction} policy"


def test_a_stack_without_a_route_is_not_reachable_by_the_collector() -> None:
    cluster, pods = _world({}, routed=("a",))
    assert cluster.allows(pods[COLLECTOR], pods["a/fluentd"], 24224)
    assert not cluster.allows(pods[COLLECTOR], pods["b/fluentd"], 24224)
    assert not cluster.allows(pods["b/prometheus"], pods[COLLECTOR], 2020)


def test_an_external_elasticsearch_is_reached_at_its_port_only() -> None:
    external = {"elasticsearch": {"external": {"url": "https://es.example.com:9243", "credentialsSecret": "es"}}}
    cluster, pods = _world({"a": external})
    assert "a/elasticsearch" not in pods
    for client in ("a/fluentd", "a/es-setup", "a/es-retention"):
        assert cluster.allows(pods[client], INTERNET, 9243), client
        assert not cluster.allows(pods[client], INTERNET, 9200), client
        assert not cluster.allows(pods[client], INTERNET, 443), client
    assert not cluster.allows(pods[COLLECTOR], INTERNET, 9243)  # the collector never holds ES credentials


def test_logging_off_leaves_no_aggregator_and_no_route() -> None:
    cluster, pods = _world({"b": {"logging": {"enabled": False}}})
    assert "b/fluentd" not in pods
    assert cluster.allows(pods[COLLECTOR], pods["a/fluentd"], 24224)
    assert not cluster.allows(pods["b/prometheus"], pods[COLLECTOR], 2020)
    prometheus = cluster._selecting(pods["b/prometheus"], "Egress")[0]["spec"]["egress"]
    assert not any("fluentd" in str(rule) or "log-collector" in str(rule) for rule in prometheus)


def test_pipeline_policies_send_no_empty_lists() -> None:
    """An empty `ingress`/`egress` list is dropped by the API server, so server-side apply would see
    a change on every pass (issue 14): absent instead, with policyTypes still denying all."""
    cluster, _ = _world({})
    for policy in cluster.policies:
        spec = policy["spec"]
        assert set(spec["policyTypes"]) == {"Ingress", "Egress"}, policy["metadata"]["name"]
        for key in ("ingress", "egress"):
            assert spec.get(key, None) != [], f"{policy['metadata']['name']}: empty {key}"
