"""The orphan sweep deletes cluster-scoped children of deleted resources, and only those of the
namespaces this operator watches (found on the real node: an operator scoped to one team's
namespaces was refused reading another's resources, and would have judged its children)."""

from __future__ import annotations

import uuid

from agentobs.kube import Kube
from agentobs.render.common import MANAGED_BY, OWNER_LABEL, OWNER_NAMESPACE_LABEL
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
