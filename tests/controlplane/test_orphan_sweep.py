"""The orphan sweep deletes the children of deleted resources that no owner reference collects
(cluster-scoped ones, copies in other namespaces), and only those of the namespaces this operator
watches (found on the real node: an operator scoped to one team's namespaces was refused reading
another's resources, and would have judged its children)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from agentobs.kube import Kube
from agentobs.render.common import ELSEWHERE_LABEL, MANAGED_BY, OWNER_LABEL, OWNER_NAMESPACE_LABEL
from agentobs.stack.prune import sweep_orphans


def _child(name: str, owner_namespace: str) -> dict[str, object]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": MANAGED_BY,
                                                  OWNER_LABEL: "gone", OWNER_NAMESPACE_LABEL: owner_namespace}},
            "rules": []}


def test_sweep_deletes_orphans_of_watched_namespaces_only(kube: Kube, namespace: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    mine, theirs = f"sweep-mine-{suffix}", f"sweep-theirs-{suffix}"
    other_team = f"other-team-{suffix}"
    kube.apply(_child(mine, namespace))
    kube.apply(_child(theirs, other_team))
    try:
        deleted = sweep_orphans(kube, lambda ns: ns == namespace)
        assert f"ClusterRole {mine}" in deleted
        assert kube.get("rbac.authorization.k8s.io/v1", "ClusterRole", None, mine) is None
        assert kube.get("rbac.authorization.k8s.io/v1", "ClusterRole", None, theirs) is not None
        assert f"ClusterRole {theirs}" not in deleted
    finally:
        for name in (mine, theirs):
            kube.delete("rbac.authorization.k8s.io/v1", "ClusterRole", None, name)


def _copy(name: str, namespace: str, owner_namespace: str, elsewhere: bool = True) -> dict[str, object]:
    """A ConfigMap of a resource in another namespace, as the CA bundle copies are."""
    labels = {"app.kubernetes.io/managed-by": MANAGED_BY, OWNER_LABEL: "gone", OWNER_NAMESPACE_LABEL: owner_namespace}
    if elsewhere:
        labels[ELSEWHERE_LABEL] = "true"
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace,
                                                                  "labels": labels}, "data": {}}


def test_sweep_deletes_copies_left_in_other_namespaces(kube: Kube, namespace: str,
                                                       kubectl: Callable[..., Any]) -> None:
    """A CA bundle copy or a discovery Role in an agents' namespace has no owner reference: when its
    resource went while no operator ran, only the sweep can find it, by its label."""
    suffix = uuid.uuid4().hex[:8]
    agents = f"{namespace}-agents"
    kubectl("create", "namespace", agents)
    try:
        kube.apply(_copy("mine", agents, namespace))
        kube.apply(_copy("theirs", agents, f"other-team-{suffix}"))
        kube.apply(_copy("unlabelled", agents, namespace, elsewhere=False))
        deleted = sweep_orphans(kube, lambda ns: ns == namespace)
        assert f"ConfigMap {agents}/mine" in deleted
        left = {c["metadata"]["name"] for c in kube.list("v1", "ConfigMap", agents, OWNER_LABEL)}
        assert left == {"theirs", "unlabelled"}, "only copies of watched, deleted resources go"
    finally:
        kubectl("delete", "namespace", agents, "--wait=false", check=False)
