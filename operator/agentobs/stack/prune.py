"""Deleting children the spec no longer asks for (a component turned off, a namespace no longer
selected), and the ones owner references cannot reach when the resource goes (cluster-scoped
objects and CA bundles in other namespaces).

Children are found by the owner labels every rendered object carries. Generated credentials
(annotated `agentobs.io/retained-on-delete`) and data volumes are never deleted here.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

from agentobs.kube import KINDS, Kube, KubeError
from agentobs.render.common import ELSEWHERE_LABEL, MANAGED_BY, OWNER_LABEL, OWNER_NAMESPACE_LABEL, Owner
from agentobs.render.tls import RETAINED_ANNOTATION

log = logging.getLogger(__name__)

Key = tuple[str, str, str, str]  # apiVersion, kind, namespace ("" when cluster-scoped), name

NOT_PRUNED = {"Pod", "PersistentVolumeClaim", "Namespace", "Event", "ReplicaSet", "AgentObservability",
              "CustomResourceDefinition", "MutatingWebhookConfiguration", "Lease"}
# Kinds the operator may put outside the resource's namespace.
CROSS_NAMESPACE = {"ConfigMap", "Role", "RoleBinding"}
PRUNABLE = [(api, kind) for (api, kind) in KINDS if kind not in NOT_PRUNED]

# uid -> digest of the keys its last prune kept (a digest: the keys themselves cost kilobytes a resource).
_pruned_for: dict[str, bytes] = {}


def _digest(keys: set[Key]) -> bytes:
    return hashlib.sha256("\n".join(sorted("/".join(k) for k in keys)).encode()).digest()


def key_of(manifest: dict[str, object]) -> Key:
    meta = manifest["metadata"]
    assert isinstance(meta, dict)
    return (str(manifest["apiVersion"]), str(manifest["kind"]), str(meta.get("namespace", "")), str(meta["name"]))


def _described(kind: str, meta: dict[str, Any]) -> str:
    """`Kind namespace/name`, or `Kind name` for a cluster-scoped object."""
    namespace = meta.get("namespace")
    return f"{kind} {namespace}/{meta['name']}" if namespace else f"{kind} {meta['name']}"


def prune(kube: Kube, owner: Owner, desired: set[Key], force: bool = False) -> list[str]:
    """Delete labelled children not in `desired`. Skipped when `desired` is what it was at the last
    prune of this resource (in this process), unless `force`."""
    frozen = _digest(desired)
    if not force and _pruned_for.get(owner.uid) == frozen:
        return []
    selector = f"{OWNER_LABEL}={owner.name},{OWNER_NAMESPACE_LABEL}={owner.namespace}"
    deleted: list[str] = []
    for api, kind in PRUNABLE:
        where = None if (not KINDS[(api, kind)].namespaced or kind in CROSS_NAMESPACE) else owner.namespace
        try:
            found = kube.list(api, kind, where, selector)
        except KubeError as exc:
            if exc.status in (403, 404):  # a kind this cluster lacks (cert-manager) or we may not list
                continue
            raise
        for obj in found:
            meta = obj["metadata"]
            if key_of(obj) in desired or (meta.get("annotations") or {}).get(RETAINED_ANNOTATION) == "true":
                continue
            kube.delete(api, kind, meta.get("namespace"), meta["name"])
            deleted.append(_described(kind, meta))
    if deleted:
        log.debug("%s/%s: deleted %s", owner.namespace, owner.name, ", ".join(deleted))  # the pass's line says it
    _pruned_for[owner.uid] = frozen
    return deleted


def forget(uid: str) -> None:
    _pruned_for.pop(uid, None)


def sweep_orphans(kube: Kube, watched: Callable[[str], bool] = lambda _namespace: True) -> list[str]:
    """Delete the children no owner reference collects (cluster-scoped ones, and copies in other
    namespaces than their resource's) whose resource is gone: deleted while no operator watched.

    Only children of resources in namespaces this operator watches: another operator (another
    team's, scoped to its own namespaces) owns the rest, and this one may not even read them."""
    deleted: list[str] = []
    for api, kind in PRUNABLE:
        namespaced = KINDS[(api, kind)].namespaced
        if namespaced and kind not in CROSS_NAMESPACE:
            continue
        # Copies elsewhere carry a label of their own: a selector on the owner labels alone would
        # list every ConfigMap of every stack, each time.
        selector = f"app.kubernetes.io/managed-by={MANAGED_BY},{OWNER_LABEL}" + (
            f",{ELSEWHERE_LABEL}=true" if namespaced else "")
        try:
            found = kube.list(api, kind, None, selector)
        except KubeError as exc:
            if exc.status in (403, 404):  # namespaced operators may not list across namespaces
                continue
            raise
        for obj in found:
            meta = obj["metadata"]
            labels = meta.get("labels") or {}
            namespace, name = labels.get(OWNER_NAMESPACE_LABEL), labels.get(OWNER_LABEL)
            if not namespace or not name or not watched(namespace):
                continue
            if kube.get("agentobs.io/v1alpha1", "AgentObservability", namespace, name) is None:
                kube.delete(api, kind, meta.get("namespace"), meta["name"])
                deleted.append(_described(kind, meta))
    if deleted:
        log.info("deleted orphaned children: %s", ", ".join(deleted))
    return deleted
