"""The stack's NetworkPolicies, flow by flow: every connection the stack needs is admitted, and
connections it does not need are refused, in and out.

No CNI that enforces policies runs here (kwok runs no pods), so a small evaluator of the
NetworkPolicy semantics of `networking.k8s.io/v1` judges the rendered objects: a flow is admitted
when the source's egress and the destination's ingress both admit it; a pod no policy of a
direction selects is open in that direction; peers combine as the API documents (podSelector
alone: the policy's namespace; namespaceSelector alone: every pod there; both in one peer: AND;
ipBlock: addresses outside the cluster's pods); an absent `to`/`from` or `ports` admits all.
The evaluator's own semantics are tested first, on hand-written policies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from agentobs.api.spec import AgentObservabilitySpec
from agentobs.render import Owner, make_stack
from agentobs.render.prometheus import AGENT_NAMESPACES, OPERATOR_METRICS_TARGET

from placeholders import placeholder_material


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)  # named container ports


@dataclass(frozen=True)
class External:
    """An address outside the pod network (the API server's host, a SaaS endpoint)."""

    name: str
    ip: str


Endpoint = Pod | External


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def _ip_in(ip: str, cidr: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)


class Cluster:
    def __init__(self, policies: list[dict[str, Any]], namespaces: dict[str, dict[str, str]]) -> None:
        self.policies = policies
        self.namespace_labels = {n: {"kubernetes.io/metadata.name": n, **labels} for n, labels in namespaces.items()}

    def _selecting(self, pod: Pod, direction: str) -> list[dict[str, Any]]:
        out = []
        for policy in self.policies:
            spec = policy["spec"]
            types = spec.get("policyTypes") or (["Ingress", "Egress"] if "egress" in spec else ["Ingress"])
            if (policy["metadata"]["namespace"] == pod.namespace and direction in types
                    and _matches(spec["podSelector"], pod.labels)):
                out.append(policy)
        return out

    def _peer_matches(self, peer: dict[str, Any], policy_ns: str, other: Endpoint) -> bool:
        if "ipBlock" in peer:
            block = peer["ipBlock"]
            return isinstance(other, External) and _ip_in(other.ip, block["cidr"]) and not any(
                _ip_in(other.ip, c) for c in block.get("except") or [])
        if isinstance(other, External):
            return False
        if "namespaceSelector" in peer:
            if not _matches(peer["namespaceSelector"], self.namespace_labels[other.namespace]):
                return False
        elif other.namespace != policy_ns:
            return False
        return "podSelector" not in peer or _matches(peer["podSelector"], other.labels)

    @staticmethod
    def _port_matches(rule: dict[str, Any], dst: Endpoint, port: int, protocol: str) -> bool:
        if not rule.get("ports"):
            return True
        for entry in rule["ports"]:
            if entry.get("protocol", "TCP") != protocol:
                continue
            want = entry.get("port")
            if want is None:
                return True
            if isinstance(want, str):
                want = dst.ports.get(want) if isinstance(dst, Pod) else None
            if want is not None and want <= port <= entry.get("endPort", want):
                return True
        return False

    def _admits(self, selected: Pod, direction: str, other: Endpoint, dst: Endpoint, port: int,
                protocol: str) -> bool:
        policies = self._selecting(selected, direction)
        if not policies:
            return True
        key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        for policy in policies:
            for rule in policy["spec"].get(key) or []:
                peers = rule.get(peers_key)
                if (not peers or any(self._peer_matches(p, policy["metadata"]["namespace"], other)
                                     for p in peers)) and self._port_matches(rule, dst, port, protocol):
                    return True
        return False

    def allows(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
        out = not isinstance(src, Pod) or self._admits(src, "Egress", dst, dst, port, protocol)
        into = not isinstance(dst, Pod) or self._admits(dst, "Ingress", src, dst, port, protocol)
        return out and into


# --- the evaluator itself ---------------------------------------------------------------------

def _np(namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": "p"}, "spec": spec}


def test_evaluator_semantics() -> None:
    a = Pod("a", "ns1", {"app": "a"})
    b = Pod("b", "ns1", {"app": "b"}, ports={"web": 8080})
    c = Pod("c", "ns2", {"app": "a"})
    api = External("api", "10.0.0.1")
    open_cluster = Cluster([], {"ns1": {}, "ns2": {}})
    assert open_cluster.allows(a, b, 1) and open_cluster.allows(a, api, 443)

    deny_in = Cluster([_np("ns1", {"podSelector": {"matchLabels": {"app": "b"}}, "policyTypes": ["Ingress"]})],
                      {"ns1": {}, "ns2": {}})
    assert not deny_in.allows(a, b, 8080) and deny_in.allows(b, a, 1)  # only b's ingress is closed

    named = Cluster([_np("ns1", {"podSelector": {}, "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"port": "web"}]}]})],
        {"ns1": {}, "ns2": {}})
    assert named.allows(a, b, 8080) and not named.allows(a, b, 8081)
    assert not named.allows(c, b, 8080)  # a podSelector alone means the policy's own namespace

    both = Cluster([_np("ns1", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "x"}}, "podSelector": {"matchLabels": {"app": "a"}}}]}]})],
        {"ns1": {}, "ns2": {"team": "x"}})
    either = Cluster([_np("ns1", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "x"}}}, {"podSelector": {"matchLabels": {"app": "zz"}}}]}]})],
        {"ns1": {}, "ns2": {"team": "x"}})
    other_app = Pod("d", "ns2", {"app": "other"})
    assert both.allows(c, b, 1) and not both.allows(other_app, b, 1)  # one peer: AND
    assert either.allows(other_app, b, 1) and not either.allows(a, b, 1)  # two peers: OR

    block = {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.9.0.0/16"]}}
    egress = Cluster([_np("ns1", {"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"],
                                  "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}, {"to": [block]}]})],
                     {"ns1": {}, "ns2": {}})
    assert egress.allows(a, b, 53, "UDP") and not egress.allows(a, b, 53, "TCP")
    assert egress.allows(a, api, 6443) and not egress.allows(a, External("x", "10.9.1.1"), 6443)
    assert not egress.allows(a, b, 8080)  # ipBlock does not name pods here
    assert egress.allows(b, a, 8080)  # b's egress is open


# --- the stack ----------------------------------------------------------------------------------

NS = "agents"
DNS = Pod("coredns", "kube-system", {"k8s-app": "kube-dns"})
API_SERVER = External("api-server", "172.18.0.2")
INTERNET = External("saas", "203.0.113.7")


def _world(spec: dict[str, Any], extra: dict[str, Any] | None = None,
           namespaces: dict[str, dict[str, str]] | None = None) -> tuple[Cluster, dict[str, Pod]]:
    owner = Owner(name="demo", namespace=NS, uid="u", spec=AgentObservabilitySpec.model_validate(spec),
                  extra=extra or {})
    objects = make_stack(owner, placeholder_material(owner))
    pods: dict[str, Pod] = {}
    for obj in objects:
        template = (obj["spec"]["jobTemplate"]["spec"]["template"] if obj["kind"] == "CronJob"
                    else obj["spec"].get("template") if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet")
                    else None)
        if template is None:
            continue
        ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])
                 if "name" in p}
        component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
        pods[component] = Pod(component, NS, template["metadata"]["labels"], ports)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    return Cluster(policies, {NS: {}, "kube-system": {}, "elsewhere": {}, **(namespaces or {})}), pods


AGENT_LABELS = {"agentobs.io/agent": "true"}
AGENT = Pod("agent", NS, AGENT_LABELS)
FAR_AGENT = Pod("far-agent", "elsewhere", AGENT_LABELS)
INTRUDER = Pod("intruder", "elsewhere", {"app": "curious"})

# (source, destination, port, protocol): what the stack needs.
NEEDED = [
    ("prometheus", "prometheus", 9090, "TCP"), ("prometheus", "alertmanager", 9093, "TCP"),
    ("prometheus", AGENT, 9464, "TCP"), ("prometheus", API_SERVER, 6443, "TCP"),
    ("alertmanager", "alertmanager", 9094, "TCP"),
    ("grafana", "prometheus", 9090, "TCP"), ("grafana", "jaeger-query", 16686, "TCP"),
    ("grafana", "elasticsearch", 9200, "TCP"),
    ("jaeger-collector", "elasticsearch", 9200, "TCP"), ("jaeger-query", "elasticsearch", 9200, "TCP"),
    ("es-retention", "elasticsearch", 9200, "TCP"), ("elasticsearch", "elasticsearch", 9300, "TCP"),
    ("fluentd", "elasticsearch", 9200, "TCP"), ("prometheus", "fluentd", 24231, "TCP"),
    (AGENT, "jaeger-collector", 4317, "TCP"), (FAR_AGENT, "jaeger-collector", 4318, "TCP"),
]
# What it does not need: each must be refused.
NOT_NEEDED = [
    ("jaeger-collector", "prometheus", 9090, "TCP"), ("prometheus", "elasticsearch", 9200, "TCP"),
    ("grafana", "elasticsearch", 9300, "TCP"), ("elasticsearch", INTERNET, 443, "TCP"),
    ("alertmanager", INTERNET, 443, "TCP"), ("es-retention", "prometheus", 9090, "TCP"),
    ("jaeger-query", API_SERVER, 6443, "TCP"), ("grafana", API_SERVER, 6443, "TCP"),
    ("prometheus", AGENT, 8080, "TCP"), ("prometheus", FAR_AGENT, 9464, "TCP"),
    ("prometheus", INTRUDER, 9464, "TCP"), ("jaeger-collector", "jaeger-query", 16686, "TCP"),
    (AGENT, "elasticsearch", 9200, "TCP"), (AGENT, "prometheus", 9090, "TCP"),
    (INTRUDER, "prometheus", 9090, "TCP"), (INTRUDER, "alertmanager", 9094, "TCP"),
    ("elasticsearch", "prometheus", 9090, "TCP"), ("alertmanager", "elasticsearch", 9200, "TCP"),
    ("fluentd", "alertmanager", 9093, "TCP"), ("fluentd", API_SERVER, 6443, "TCP"),
]


def _resolve(pods: dict[str, Pod], end: str | Endpoint) -> Endpoint:
    return pods[end] if isinstance(end, str) else end


def _name(end: str | Endpoint) -> str:
    return end if isinstance(end, str) else end.name


@pytest.mark.parametrize(("src", "dst", "port", "protocol"), NEEDED,
                         ids=[f"{_name(s)}->{_name(d)}:{p}" for s, d, p, _ in NEEDED])
def test_each_needed_flow_is_admitted(src: str | Endpoint, dst: str | Endpoint, port: int, protocol: str) -> None:
    cluster, pods = _world({})
    assert cluster.allows(_resolve(pods, src), _resolve(pods, dst), port, protocol)


@pytest.mark.parametrize(("src", "dst", "port", "protocol"), NOT_NEEDED,
                         ids=[f"{_name(s)}->{_name(d)}:{p}" for s, d, p, _ in NOT_NEEDED])
def test_each_unneeded_flow_is_refused(src: str | Endpoint, dst: str | Endpoint, port: int, protocol: str) -> None:
    cluster, pods = _world({})
    assert not cluster.allows(_resolve(pods, src), _resolve(pods, dst), port, protocol)


def test_every_component_resolves_names_and_no_other_port_leaves() -> None:
    cluster, pods = _world({})
    for name, pod in pods.items():
        assert cluster.allows(pod, DNS, 53, "UDP") and cluster.allows(pod, DNS, 53, "TCP"), name
        assert not cluster.allows(pod, DNS, 80), name
        assert not cluster.allows(pod, INTERNET, 25), name


def test_agents_in_selected_namespaces_are_scraped_and_others_are_not() -> None:
    spec = {"instrumentation": {"namespaceSelector": {"matchLabels": {"team": "search"}}}}
    cluster, pods = _world(spec, {AGENT_NAMESPACES: ["team-a"]},
                           namespaces={"team-a": {"team": "search"}, "team-z": {"team": "ads"}})
    assert cluster.allows(pods["prometheus"], Pod("a", "team-a", AGENT_LABELS), 9464)
    assert not cluster.allows(pods["prometheus"], Pod("z", "team-z", AGENT_LABELS), 9464)


def test_users_receivers_and_external_stores_open_only_their_ports() -> None:
    spec = {"prometheus": {"alertmanager": {"receiversSecret": {"name": "am", "key": "alertmanager.yml"}}},
            "elasticsearch": {"external": {"url": "https://es.example.com:9243", "credentialsSecret": "es"}},
            "grafana": {"oidc": {"issuerUrl": "https://id.example.com", "authUrl": "https://id.example.com/auth",
                                 "tokenUrl": "https://id.example.com/token", "userinfoUrl": "https://id.example.com/me",
                                 "clientId": "grafana", "clientSecret": {"name": "oidc", "key": "secret"}}}}
    cluster, pods = _world(spec)
    assert cluster.allows(pods["alertmanager"], INTERNET, 443)  # Slack, PagerDuty, a webhook: the user's
    assert cluster.allows(pods["alertmanager"], INTERNET, 587)
    for client in ("jaeger-collector", "jaeger-query", "grafana", "es-retention"):
        assert cluster.allows(pods[client], INTERNET, 9243), client
        assert not cluster.allows(pods[client], INTERNET, 9200), client
    assert cluster.allows(pods["grafana"], INTERNET, 443)
    assert not cluster.allows(pods["jaeger-query"], INTERNET, 443)


def test_switched_off_components_are_not_reachable_destinations() -> None:
    cluster, pods = _world({"tracing": {"enabled": False}, "prometheus": {"alertmanager": {"enabled": False}}})
    assert "jaeger-query" not in pods and "alertmanager" not in pods
    grafana = cluster._selecting(pods["grafana"], "Egress")[0]["spec"]["egress"]
    assert not any("jaeger-query" in str(rule) for rule in grafana)
    prometheus = cluster._selecting(pods["prometheus"], "Egress")[0]["spec"]["egress"]
    assert not any("alertmanager" in str(rule) for rule in prometheus)


def test_prometheus_reaches_the_operators_metrics_port_when_told_where() -> None:
    operator = Pod("operator", "agentobs-system", {"app.kubernetes.io/name": "agentobs-operator"})
    cluster, pods = _world({}, {OPERATOR_METRICS_TARGET: "agentobs-operator.agentobs-system.svc:8080"},
                           namespaces={"agentobs-system": {}})
    assert cluster.allows(pods["prometheus"], operator, 8080)
    assert not cluster.allows(pods["prometheus"], operator, 8081)
    bare, pods = _world({}, namespaces={"agentobs-system": {}})
    assert not bare.allows(pods["prometheus"], operator, 8080)
