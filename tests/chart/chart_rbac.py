"""RBAC as the API server evaluates it, for the chart's rendered roles: which verbs the operator's
ServiceAccount holds where, and the Roles the operator itself renders for a stack."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentobs.api.spec import AgentObservabilitySpec
from agentobs.pki import KeyPair
from agentobs.render import Material, Owner, certificate_requests, collector, credential_requests, make_stack

Rule = dict[str, Any]

# What the operator does with each kind of KINDS, when it does less than apply it (create/patch,
# read back, watch, delete). A kind added to KINDS is taken as applied until listed here.
APPLIED = {"get", "list", "watch", "create", "patch", "delete"}
VERBS_OF_KIND: dict[str, set[str]] = {
    "Pod": {"get", "list", "watch"},  # injection coverage; never written
    "Namespace": {"get", "list", "watch"},  # selection by namespace labels
    "ReplicaSet": {"get"},  # the Deployment behind a pod
    "Event": {"create"},  # posted, never patched (the operator's and kopf's)
    "CustomResourceDefinition": {"get", "list", "watch", "patch"},  # patch: operator.manageCRD
    "MutatingWebhookConfiguration": {"get", "patch"},  # caBundle only
    "AgentObservability": {"get", "list", "watch", "patch"},  # patch: kopf drops old finalizers; status apart
    "Lease": {"get", "create", "update"},  # leader election: polled by name, replaced on renewal
}
# Objects a verb is restricted to by resourceNames (the tests render the chart into namespace `obs`,
# whose node log collector's ClusterRole and binding are named after it).
NAMED = {"CustomResourceDefinition": "agentobservabilities.agentobs.io",
         "MutatingWebhookConfiguration": "agentobs-webhook",
         "Lease": "agentobs-operator-leader",
         "ClusterRole": f"{collector.NAME}-obs", "ClusterRoleBinding": f"{collector.NAME}-obs"}
# Kinds the operator touches only in its own (the release) namespace, not in the ones it serves.
IN_OPERATOR_NAMESPACE = {"Lease"}

# Specs whose rendering covers the components that create roles.
STACK_SPECS: list[dict[str, Any]] = [{}]


def _matches(rule: Rule, group: str, resource: str, verb: str, name: str | None) -> bool:
    def has(key: str, value: str) -> bool:
        return value in rule.get(key, []) or "*" in rule.get(key, [])

    if not (has("apiGroups", group) and has("resources", resource) and has("verbs", verb)):
        return False
    names = rule.get("resourceNames")
    return not names or name in names


@dataclass
class Permissions:
    """What one ServiceAccount may do: rules bound cluster-wide, and rules bound per namespace."""

    cluster: list[Rule] = field(default_factory=list)
    namespaced: dict[str, list[Rule]] = field(default_factory=dict)

    def allows(self, group: str, resource: str, verb: str, namespace: str | None, name: str | None = None) -> bool:
        rules = self.cluster + (self.namespaced.get(namespace, []) if namespace else [])
        return any(_matches(rule, group, resource, verb, name) for rule in rules)


def permissions_of(docs: list[dict[str, Any]]) -> Permissions:
    """The operator ServiceAccount's permissions from the chart's rendered roles and bindings."""
    [account] = [d for d in docs if d["kind"] == "ServiceAccount"]
    subject = {"kind": "ServiceAccount", "name": account["metadata"]["name"],
               "namespace": account["metadata"]["namespace"]}
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d["rules"]
             for d in docs if d["kind"] in ("ClusterRole", "Role")}
    perms = Permissions()
    for binding in docs:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding") or subject not in binding["subjects"]:
            continue
        ref = binding["roleRef"]
        namespace = binding["metadata"].get("namespace")
        rules = roles[(ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"])]
        if binding["kind"] == "ClusterRoleBinding":
            perms.cluster += rules
        else:
            perms.namespaced.setdefault(namespace, []).extend(rules)
    return perms


def stack_roles(namespace: str, collector_namespace: str = "obs") -> list[dict[str, Any]]:
    """Every Role and ClusterRole the operator renders for the example specs (and for the node log
    collector in `collector_namespace`, the release's)."""
    placeholder = KeyPair(cert_pem=b"-----CERT-----\n", key_pem=b"-----KEY-----\n")
    out = []
    for spec in STACK_SPECS:
        owner = Owner(name="stack", namespace=namespace, uid="00000000-0000-0000-0000-000000000001",
                      spec=AgentObservabilitySpec.model_validate(spec))
        material = Material(
            ca=placeholder,
            certs={component: placeholder for component in certificate_requests(owner)},
            credentials={r.suffix: {key: "x" for key in r.recipe} for r in credential_requests(owner)},
        )
        out += [m for m in make_stack(owner, material) if m["kind"] in ("Role", "ClusterRole")]
    # The cluster's node log collector, which the operator renders in its own namespace.
    route = collector.Route(namespace, "stack", (namespace,), {}, f"stack-fluentd.{namespace}.svc", 24224, "CA")
    out += [m for m in collector.render(collector_namespace, [route]) if m["kind"] in ("Role", "ClusterRole")]
    assert out, "the stack renders no roles: the escalation test would check nothing"
    return out
