"""Egress rules of the stack's NetworkPolicies: each component may reach DNS, its peers, the
services it talks to and, for Prometheus' discovery, the API server; nothing else. Pure.

Three destinations have no pod a selector could name, so their rules admit a port rather than a
peer, and say why:
- DNS: cluster DNS runs as pods in most clusters, but NodeLocal DNSCache answers on a link-local
  address of the node, so port 53 (UDP and TCP) is admitted to any address.
- The API server is reached through the `kubernetes` Service, whose endpoints are the control
  plane's host addresses (not pods) and differ per cluster: ports 443 and 6443, to any address.
- Outside the cluster: an external Elasticsearch (its URL's port), Grafana's OIDC provider (443),
  and the receivers of a user's Alertmanager config (any: it may name any host and port).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from agentobs.render.addresses import ELASTICSEARCH_PORT
from agentobs.render.common import Owner, metadata, selector_labels

Rule = dict[str, Any]
API_SERVER_PORTS = (443, 6443)


def _ports(ports: tuple[int, ...] | list[int], protocol: str = "TCP") -> list[dict[str, Any]]:
    return [{"protocol": protocol, "port": p} for p in ports]


def dns() -> Rule:
    return {"ports": _ports([53], "UDP") + _ports([53])}


def to_component(owner: Owner, component: str, *ports: int) -> Rule:
    """Pods of another component of the same stack (the policy's own namespace)."""
    return {"to": [{"podSelector": {"matchLabels": selector_labels(owner, component)}}], "ports": _ports(ports)}


def to_pods(namespace: str, pod_labels: dict[str, str], *ports: int) -> Rule:
    """Pods of another namespace, named by its `kubernetes.io/metadata.name` (which the API server
    sets on every namespace, so no one can claim another's name by labelling)."""
    return {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                    "podSelector": {"matchLabels": pod_labels}}], "ports": _ports(ports)}


def api_server() -> Rule:
    return {"ports": _ports(API_SERVER_PORTS)}


def any_address(*ports: int) -> Rule:
    return {"ports": _ports(ports)}


def elasticsearch(owner: Owner) -> Rule:
    """The stack's Elasticsearch, or the external cluster's port."""
    external = owner.spec.elasticsearch.external
    if external is None:
        return to_component(owner, "elasticsearch", ELASTICSEARCH_PORT)
    return any_address(urlsplit(external.url).port or 443)


def agents(owner: Owner, port: int) -> Rule:
    """The agent pods the instrumentation selects, in the namespaces it selects."""
    inst = owner.spec.instrumentation
    namespaces = dict(inst.namespace_selector.match_labels) or {"kubernetes.io/metadata.name": owner.namespace}
    return {"to": [{"namespaceSelector": {"matchLabels": namespaces},
                    "podSelector": {"matchLabels": dict(inst.pod_selector.match_labels)}}],
            "ports": _ports([port])}


def policy(owner: Owner, component: str, ingress: list[Rule] | None, egress: list[Rule]) -> dict[str, Any]:
    """A NetworkPolicy of `component`'s pods: ingress as given (None or empty: none admitted), and
    egress only to what `egress` names. An empty list is never sent (the API server drops it, and
    server-side apply would then see a change on every pass)."""
    spec: dict[str, Any] = {"podSelector": {"matchLabels": selector_labels(owner, component)},
                            "policyTypes": ["Ingress", "Egress"], "egress": egress}
    if ingress:
        spec["ingress"] = ingress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": metadata(owner, component), "spec": spec}
