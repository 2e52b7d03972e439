"""The log pipeline as the unit tests render it: an owner from a spec, placeholder key material
with a distinctive value per credential (so a leak is found by searching for it), a whole stack,
and collector routes of three resources that overlap (shared by `tests/unit/test_log_*`).
"""

from __future__ import annotations

from typing import Any

from agentobs.api.spec import AgentObservabilitySpec
from agentobs.pki import KeyPair
from agentobs.render import Material, Owner, certificate_requests, collector, credential_requests, fluentd, make_stack

Objects = dict[tuple[str, str], dict[str, Any]]
EXTERNAL = {"url": "https://es.example.org:9243/", "credentialsSecret": "team-es", "caSecret": "team-es-ca"}


def owner_of(spec: dict[str, Any], name: str = "demo", namespace: str = "agents",
             extra: dict[str, Any] | None = None) -> Owner:
    return Owner(name=name, namespace=namespace, uid=f"uid-{namespace}-{name}",
                 spec=AgentObservabilitySpec.model_validate(spec), extra=dict(extra or {}))


def material_for(owner: Owner) -> Material:
    def pair(name: str) -> KeyPair:
        return KeyPair(cert_pem=f"-----{name} CERT-----\n".encode(), key_pem=f"-----{name} KEY-----\n".encode())

    return Material(ca=pair("ca"), certs={c: pair(c) for c in certificate_requests(owner)},
                    credentials={r.suffix: {k: f"SECRET-{r.suffix}-{k}" for k in r.recipe}
                                 for r in credential_requests(owner)})


def render(spec: dict[str, Any], **kwargs: Any) -> Objects:
    owner = owner_of(spec, **kwargs)
    return {(o["kind"], o["metadata"]["name"]): o for o in make_stack(owner, material_for(owner))}


def route(namespace: str, name: str, namespaces: tuple[str, ...], labels: dict[str, str]) -> collector.Route:
    owner = owner_of({}, name=name, namespace=namespace)
    return collector.Route(owner_namespace=namespace, owner_name=name, namespaces=namespaces, pod_labels=labels,
                           host=fluentd.service_host(owner), port=fluentd.FORWARD_PORT,
                           ca_pem=f"-----CA of {namespace}/{name}-----\n",
                           client_cert_pem=f"-----client cert for {namespace}/{name}-----\n",
                           client_key_pem=f"-----client key for {namespace}/{name}-----\n")


ROUTES = [
    route("team-a", "obs", ("team-a",), {"agentobs.io/agent": "true"}),
    route("team-b", "obs", ("team-b", "shared"), {}),
    # Selects team-a's agents too, from another namespace: team-a's own resource wins there.
    route("aaa", "central", ("team-a", "shared"), {"tier": "gold"}),
]


def collector_objects(routes: list[collector.Route] = ROUTES) -> Objects:
    return {(o["kind"], o["metadata"]["name"]): o for o in collector.render("agentobs", routes)}


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"]["spec"])
