"""The node log collector is owned by the operator's Deployment (AGENTOBS_OPERATOR_DEPLOYMENT), so
`helm uninstall` deletes it. A Deployment deleted and made again (a reinstall, `helm upgrade
--force`, `kubectl delete --cascade=orphan` and an apply) has a new uid: the collector must end up
owned by the new one, or the next uninstall leaves it running (or the garbage collector deletes it
for an owner that no longer exists)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import test_quiet
from test_quiet import QuietOperator

from agentobs.kube import Kube
from agentobs.render import collector

from conftest import make_resource, wait_for, wait_ready

quiet_operator = test_quiet.quiet_operator  # its fixture: an operator with a collector and a Deployment

NAMESPACED_KINDS = [("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"), ("v1", "ServiceAccount"),
                    ("apps/v1", "DaemonSet"), ("networking.k8s.io/v1", "NetworkPolicy")]


def _owners(kube: Kube, namespace: str) -> dict[str, list[str]]:
    """Kind/name -> the uids of the owners of each of the collector's namespaced objects."""
    selector = ",".join(f"{k}={v}" for k, v in sorted(collector.selector_labels().items()))
    return {f"{kind}/{obj['metadata']['name']}": [r["uid"] for r in obj["metadata"].get("ownerReferences") or []]
            for api, kind in NAMESPACED_KINDS for obj in kube.list(api, kind, namespace, selector)}


def _deployment_uid(kube: Kube, namespace: str) -> str:
    return str((kube.get("apps/v1", "Deployment", namespace, "operator") or {})["metadata"]["uid"])


def _owned_by(kube: Kube, namespace: str, uid: str) -> bool:
    owners = _owners(kube, namespace)
    return f"DaemonSet/{collector.NAME}" in owners and all(o == [uid] for o in owners.values())


@pytest.mark.parametrize("quiet_operator", [2.0], indirect=True)
def test_a_new_deployment_owns_the_collector(kube: Kube, kubectl: Callable[..., Any],
                                             quiet_operator: tuple[QuietOperator, str]) -> None:
    op, namespace = quiet_operator
    where = op.collector_namespace
    kube.apply(make_resource("logs", namespace, {}))
    wait_ready(kube, namespace, "logs", generation=1)
    first = _deployment_uid(kube, where)
    wait_for("the collector owned by the operator's Deployment", lambda: _owned_by(kube, where, first))

    # A reinstall: the operator stops with its Deployment, whose deletion deletes the collector;
    # a new Deployment starts a new operator.
    op.stop()
    kubectl("delete", "deployment", "operator", "-n", where)
    wait_for("the garbage collector to delete the collector",
             lambda: kube.get("apps/v1", "DaemonSet", where, collector.NAME) is None)
    kubectl("create", "deployment", "operator", "--image=agentobs-operator", "-n", where)
    second = _deployment_uid(kube, where)
    op.start()
    wait_for("the collector made again, owned by the new Deployment", lambda: _owned_by(kube, where, second))

    # The Deployment replaced while the same operator runs on (its pods orphaned, as with
    # `kubectl delete --cascade=orphan`): the collector is kept, and owned by the new one.
    daemonset_uid = kube.get("apps/v1", "DaemonSet", where, collector.NAME)["metadata"]["uid"]  # type: ignore[index]
    kubectl("delete", "deployment", "operator", "-n", where, "--cascade=orphan")
    # (kubectl waits for the Deployment to be gone: its orphan finalizer has run by then)
    kubectl("create", "deployment", "operator", "--image=agentobs-operator", "-n", where)
    third = _deployment_uid(kube, where)
    wait_for("the collector owned by the third Deployment", lambda: _owned_by(kube, where, third), timeout=60)
    assert kube.get("apps/v1", "DaemonSet", where, collector.NAME)["metadata"]["uid"] == daemonset_uid, \
        "the collector was kept, not deleted and made again"  # type: ignore[index]
