"""Pieces every rendered object shares: names, labels, owner references, pod hardening.

All functions here are pure: they take what they need and return plain dicts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from agentobs.api import API_VERSION, KIND
from agentobs.api.formats import resource_name_problem
from agentobs.api.spec import AgentObservabilitySpec, ResourceRequirements
from agentobs.pki import KeyPair

Manifest = dict[str, Any]

MANAGED_BY = "agentobs-operator"
PART_OF = "agentobs"
# Set on every child so the operator finds the resource a child belongs to without an index.
OWNER_LABEL = "agentobs.io/owner"
OWNER_NAMESPACE_LABEL = "agentobs.io/owner-namespace"
ELSEWHERE_LABEL = "agentobs.io/outside-owner-namespace"  # no owner reference can collect it
# Pod-template annotations: a change of config or certificate rolls the pods.
CONFIG_HASH_ANNOTATION = "agentobs.io/config-hash"
CERT_HASH_ANNOTATION = "agentobs.io/cert-hash"


@dataclass(frozen=True)
class Owner:
    """The `AgentObservability` being rendered: identity plus its validated spec."""

    name: str
    namespace: str
    uid: str
    spec: AgentObservabilitySpec
    generation: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def child_name(self, component: str) -> str:
        return f"{self.name}-{component}"

    def service_host(self, component: str) -> str:
        return f"{self.child_name(component)}.{self.namespace}.svc"


def owner_of(body: Mapping[str, Any]) -> Owner | None:
    """The stack a stored resource describes, or None when none is made for it: its spec is
    invalid, or its name cannot prefix its children's (reconcile reports both as InvalidSpec)."""
    meta = body.get("metadata") or {}
    name = meta.get("name", "")
    if resource_name_problem(name) is not None:
        return None
    try:
        spec = AgentObservabilitySpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return None
    return Owner(name=name, namespace=meta.get("namespace", ""), uid=meta.get("uid", ""), spec=spec)


@dataclass(frozen=True)
class CredentialRequest:
    """A Secret of generated values. Recipes: `random`, `literal:<value>`, `bcrypt:<key>`."""

    component: str
    suffix: str  # the Secret is named <resource>-<suffix>
    recipe: Mapping[str, str]


@dataclass(frozen=True)
class Material:
    """Generated inputs to rendering, made once and kept in Secrets."""

    ca: KeyPair
    certs: Mapping[str, KeyPair] = field(default_factory=dict)  # component -> serving certificate
    credentials: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # suffix -> values


def selector_labels(owner: Owner, component: str) -> dict[str, str]:
    """Labels that select a component's pods; they never change for the life of the resource."""
    return {
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/instance": owner.name,
    }


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        **selector_labels(owner, component),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        OWNER_LABEL: owner.name,
        OWNER_NAMESPACE_LABEL: owner.namespace,
    }


def moved_to(meta: dict[str, Any], namespace: str) -> dict[str, Any]:
    """`meta` (from `metadata`) for an object in another namespace than its resource's: without
    owner reference, which cannot cross namespaces, and labelled so that the operator finds it when
    its resource went while no operator ran (`agentobs.stack.prune.sweep_orphans`)."""
    meta["namespace"] = namespace
    meta.pop("ownerReferences", None)
    meta["labels"][ELSEWHERE_LABEL] = "true"
    return meta


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(owner: Owner, component: str, name: str | None = None,
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name or owner.child_name(component),
        "namespace": owner.namespace,
        "labels": labels(owner, component),
        "ownerReferences": [owner_reference(owner)],
    }
    if annotations:
        meta["annotations"] = annotations
    return meta


def content_hash(*parts: Any) -> str:
    """A stable short hash of JSON-serialisable inputs, for pod-template annotations."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()[:16]


def pod_security_context(uid: int = 65534) -> dict[str, Any]:
    """Pod-level settings that satisfy the Pod Security `restricted` profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def resources(spec: ResourceRequirements) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if spec.requests:
        out["requests"] = dict(spec.requests)
    if spec.limits:
        out["limits"] = dict(spec.limits)
    return out


def spread_replicas(owner: Owner, component: str) -> list[dict[str, Any]]:
    """Prefer replicas of one component on different nodes (required would block small clusters).

    A soft topology spread, not a preferred pod anti-affinity: to score a node for a pod with
    anti-affinity the scheduler checks the terms of every pod on every node, so the cost of each
    placement grows with the whole cluster. A pod that states its own spread also skips the
    scheduler's default one, which looks up the Services of its namespace."""
    return [{
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": selector_labels(owner, component)},
    }]


def disruption_budgets(owner: Owner, component: str, replicas: int | None) -> list[Manifest]:
    """A budget of one pod down at a time, for a component of `replicas` (None: an autoscaler sets
    the count). None for a single replica: `maxUnavailable: 1` would let its only pod go anyway,
    and each budget in a namespace is matched against every pod change there by the disruption
    controller, so a useless one still costs the cluster."""
    if replicas is not None and replicas < 2:
        return []
    return [{
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(owner, component),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(owner, component)},
        },
    }]
