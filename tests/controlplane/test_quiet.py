"""An unchanged stack costs the API server nothing, and drift is still repaired at once.

Each test runs its own operator, scoped to namespaces of its own and with a node log collector
in a namespace of its own, so the requests it counts (the operator's `agentobs_api_requests_total`,
by verb) are those of that process alone, the collector's syncs included. Objects rendered with SSA
twice keep their generation and resourceVersion.
"""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_rendered_objects import SPECS

from agentobs.api.spec import AgentObservabilitySpec
from agentobs.kube import WRITE_VERBS, Kube, is_namespaced
from agentobs.render import Owner, collector, make_stack
from agentobs.stack.desired import stamp

from cluster_support import OperatorProcess, free_port
from conftest import API, KIND, SESSION_PREFIX, condition, get_resource, make_resource, wait_for, wait_ready
from placeholders import placeholder_material

# Kinds whose objects the operator renders into a stack's namespace, to compare before and after.
CHILD_KINDS = [("v1", "Secret"), ("v1", "ConfigMap"), ("v1", "Service"), ("v1", "ServiceAccount"),
               ("apps/v1", "StatefulSet"), ("apps/v1", "Deployment"), ("apps/v1", "DaemonSet"),
               ("batch/v1", "CronJob"), ("policy/v1", "PodDisruptionBudget"),
               ("networking.k8s.io/v1", "NetworkPolicy"), ("rbac.authorization.k8s.io/v1", "Role"),
               ("rbac.authorization.k8s.io/v1", "RoleBinding")]


class QuietOperator(OperatorProcess):
    def __init__(self, prefix: str, resync: float, log_path: Path) -> None:
        self.metrics_port = free_port()
        self.webhook_configuration = f"agentobs-webhook-{prefix}"
        self.collector_namespace = f"{prefix}-logging"
        super().__init__({
            "AGENTOBS_LOG_COLLECTOR_NAMESPACE": self.collector_namespace,
            # As the chart runs it: its Deployment (made by the fixture) owns the collector.
            "AGENTOBS_OPERATOR_DEPLOYMENT": "operator",
            "AGENTOBS_BIND_ADDRESS": "127.0.0.1", "AGENTOBS_RESYNC_SECONDS": str(resync),
            "AGENTOBS_NAMESPACES": f"{prefix}-*", "AGENTOBS_WEBHOOK_PORT": str(free_port()),
            "AGENTOBS_WEBHOOK_CONFIGURATION": self.webhook_configuration,
            "AGENTOBS_METRICS_PORT": str(self.metrics_port), "AGENTOBS_HEALTH_PORT": str(free_port()),
        }, log_path)

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
        return [(s.labels, s.value) for family in text_string_to_metric_families(text)
                for s in family.samples if s.name == name]

    def requests(self) -> dict[tuple[str, str], float]:
        return {(labels["verb"], labels["resource"]): value
                for labels, value in self.samples("agentobs_api_requests_total")}

    def passes(self) -> float:
        return sum(value for _, value in self.samples("agentobs_reconcile_total"))


@pytest.fixture
def quiet_operator(request: pytest.FixtureRequest, kube: Kube, kubectl: Callable[..., Any],
                   tmp_path: Path) -> Iterator[tuple[QuietOperator, str]]:
    resync = float(request.param)
    prefix = f"{SESSION_PREFIX}q{uuid.uuid4().hex[:4]}"
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    op = QuietOperator(prefix, resync, tmp_path / "operator.log")
    kubectl("create", "namespace", op.collector_namespace)
    kubectl("label", "namespace", op.collector_namespace, "pod-security.kubernetes.io/enforce=privileged")
    kubectl("create", "deployment", "operator", "--image=agentobs-operator", "-n", op.collector_namespace)
    op.start()
    try:
        def serving() -> bool:
            try:
                return bool(op.samples("agentobs_managed_resources"))
            except OSError:  # not listening yet
                return False

        wait_for("the operator's metrics", serving)
        yield op, namespace
    finally:
        op.stop()
        kube.delete("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None,
                    op.webhook_configuration)
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        kubectl("delete", "namespace", op.collector_namespace, "--wait=false", check=False)
        for kind in ("clusterrole", "clusterrolebinding"):
            kubectl("delete", kind, f"{collector.NAME}-{op.collector_namespace}", "--ignore-not-found", check=False)


def _collector_versions(kube: Kube, namespace: str) -> dict[tuple[str, str], str]:
    """(kind, name) -> resourceVersion of the node log collector's objects in its namespace."""
    selector = ",".join(f"{k}={v}" for k, v in sorted(collector.selector_labels().items()))
    return {(kind, obj["metadata"]["name"]): obj["metadata"]["resourceVersion"]
            for api, kind in CHILD_KINDS for obj in kube.list(api, kind, namespace, selector)}


def _versions(kube: Kube, namespace: str, name: str) -> dict[tuple[str, str], tuple[str, int]]:
    """(kind, name) -> (resourceVersion, generation) of the resource and every labelled child."""
    found = {}
    for api, kind in CHILD_KINDS:
        for obj in kube.list(api, kind, namespace, f"agentobs.io/owner={name}"):
            meta = obj["metadata"]
            found[(kind, meta["name"])] = (meta["resourceVersion"], meta.get("generation", 0))
    resource = kube.get(API, KIND, namespace, name)
    assert resource is not None
    found[(KIND, name)] = (resource["metadata"]["resourceVersion"], resource["metadata"]["generation"])
    return found


def _writes(requests: dict[tuple[str, str], float]) -> float:
    return sum(v for (verb, resource), v in requests.items() if verb in WRITE_VERBS and resource != "leases")


def _reads(requests: dict[tuple[str, str], float]) -> float:
    return sum(v for (verb, _), v in requests.items() if verb in ("get", "list"))


@pytest.mark.parametrize("quiet_operator", [2.0], indirect=True)
def test_ready_stack_sends_no_request_over_two_resyncs(kube: Kube, quiet_operator: tuple[QuietOperator, str]
                                                      ) -> None:
    op, namespace = quiet_operator
    kube.apply(make_resource("still", namespace, {}))
    wait_ready(kube, namespace, "still", generation=1)
    # Pods turning ready may still move a count in status; settle on a Ready status no pass changes.
    previous: dict[tuple[str, str], tuple[str, int]] = {}

    def settled() -> bool:
        nonlocal previous
        now = _versions(kube, namespace, "still")
        done = now == previous
        previous = now
        return done

    wait_for("the stack to settle", settled, interval=3.0)
    # Its logs go through the collector: its route is in the collector's ConfigMap.
    wait_for("the stack's route in the log collector", lambda: f'id = "{namespace}_still"' in (
        (kube.get("v1", "ConfigMap", op.collector_namespace, collector.NAME) or {}).get("data") or {}).get(
        "routes.lua", ""))
    collector_before = _collector_versions(kube, op.collector_namespace)
    assert ("DaemonSet", collector.NAME) in collector_before
    daemonset = kube.get("apps/v1", "DaemonSet", op.collector_namespace, collector.NAME) or {}
    assert [r["name"] for r in daemonset["metadata"].get("ownerReferences", [])] == ["operator"]
    before, passes_before = op.requests(), op.passes()
    time.sleep(2 * 2.0 * 1.1 + 1.0)  # two resync periods (with their 10 % spread), and a margin
    after, passes_after = op.requests(), op.passes()

    assert passes_after - passes_before >= 2, "resyncs ran in the window"
    assert _writes(after) - _writes(before) == 0, {k: after[k] - before.get(k, 0) for k in after}
    assert _reads(after) - _reads(before) == 0, "children and pods are read from the watch caches"
    assert _versions(kube, namespace, "still") == previous, "no child's resourceVersion or generation moved"
    assert _collector_versions(kube, op.collector_namespace) == collector_before, "the collector is left alone"
    lines = [line for line in op.log().splitlines() if f"{namespace}/still:" in line and " INFO " in line]
    assert lines, "passes that changed something say so"
    assert len(lines) < passes_after, "one line per pass that changed something, not one per pass"
    assert "Handler 'resource_event' succeeded" not in op.log(), "no line per watch event"


@pytest.mark.parametrize("quiet_operator", [600.0], indirect=True)
def test_drift_is_repaired_by_the_watch_not_the_resync(kube: Kube, quiet_operator: tuple[QuietOperator, str]
                                                       ) -> None:
    op, namespace = quiet_operator
    kube.apply(make_resource("mend", namespace, {}))
    wait_ready(kube, namespace, "mend", generation=1)
    # The node log collector too (its own resync is 600 s here): the watch brings its deletion.
    daemonset = wait_for("the log collector", lambda: kube.get("apps/v1", "DaemonSet", op.collector_namespace,
                                                               collector.NAME))
    kube.delete("apps/v1", "DaemonSet", op.collector_namespace, collector.NAME)
    wait_for("the deleted collector to come back", lambda: (kube.get(
        "apps/v1", "DaemonSet", op.collector_namespace, collector.NAME) or daemonset)["metadata"]["uid"]
        != daemonset["metadata"]["uid"], timeout=30)
    policy = kube.get("networking.k8s.io/v1", "NetworkPolicy", namespace, "mend-prometheus")
    sts = kube.get("apps/v1", "StatefulSet", namespace, "mend-prometheus")
    assert policy is not None and sts is not None
    started = time.monotonic()
    kube.delete("networking.k8s.io/v1", "NetworkPolicy", namespace, "mend-prometheus")
    kube.delete("apps/v1", "StatefulSet", namespace, "mend-prometheus")
    wait_for("deleted children to come back", lambda: all(
        (obj := kube.get(api, kind, namespace, "mend-prometheus")) is not None
        and obj["metadata"]["uid"] != uid
        for api, kind, uid in [("networking.k8s.io/v1", "NetworkPolicy", policy["metadata"]["uid"]),
                               ("apps/v1", "StatefulSet", sts["metadata"]["uid"])]), timeout=30)
    assert time.monotonic() - started < 600, "repaired before any resync could have come"
    # A hand edit of an owned field, with another field manager, as `kubectl edit` makes it.
    kube._call("PATCH", f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies/mend-prometheus",
               "NetworkPolicy", {"spec": {"policyTypes": ["Ingress", "Egress"]}},
               query=[("fieldManager", "someone")], content_type="application/merge-patch+json")
    wait_for("the hand edit to be reverted", lambda: (kube.get("networking.k8s.io/v1", "NetworkPolicy", namespace,
                                                               "mend-prometheus") or {})
             .get("spec", {}).get("policyTypes") == policy["spec"]["policyTypes"], timeout=30)


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_applying_every_rendered_kind_twice_changes_nothing(kube: Kube, kubectl: Callable[..., Any],
                                                           spec_name: str) -> None:
    # A namespace no operator watches, and a real owner there so the garbage collector keeps the children.
    namespace = f"{SESSION_PREFIX}g{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", namespace)
    created = kube.apply(make_resource("twice", namespace, {}))
    owner = Owner(name="twice", namespace=namespace, uid=created["metadata"]["uid"],
                  spec=AgentObservabilitySpec.model_validate(SPECS[spec_name]))
    objects = [stamp(o) for o in make_stack(owner, placeholder_material(owner))]
    try:
        first = {(o["kind"], o["metadata"]["name"]): kube.apply(o) for o in objects}
        churned = []
        for obj in objects:
            key = (obj["kind"], obj["metadata"]["name"])
            for _ in range(5):  # a controller's status write between the two reads is not churn
                live = kube.get(obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace"), key[1])
                assert live is not None, key
                again = kube.apply(obj)
                if again["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]:
                    break
            else:
                churned.append(f"{key}: resourceVersion moves on every apply")
            if again["metadata"].get("generation") != first[key]["metadata"].get("generation"):
                churned.append(f"{key}: generation {first[key]['metadata'].get('generation')} -> "
                               f"{again['metadata'].get('generation')}")
        assert not churned, "\n".join(churned)
        assert {"NetworkPolicy", "StatefulSet", "Secret", "ConfigMap"} <= {k for k, _ in first}
    finally:
        for obj in objects:
            if not is_namespaced(obj["apiVersion"], obj["kind"]):
                kube.delete(obj["apiVersion"], obj["kind"], None, obj["metadata"]["name"])
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_the_specs_applied_twice_cover_every_kind_the_operator_renders() -> None:
    """Together, the specs above render every kind (one spec switches Grafana and tracing off, so
    not every spec has a Deployment)."""
    kinds: set[str] = set()
    for spec in SPECS.values():
        owner = Owner(name="t", namespace="n", uid="u", spec=AgentObservabilitySpec.model_validate(spec))
        kinds |= {o["kind"] for o in make_stack(owner, placeholder_material(owner))}
    assert {"ConfigMap", "CronJob", "Deployment", "HorizontalPodAutoscaler", "Ingress", "Job", "NetworkPolicy",
            "PodDisruptionBudget", "Role", "RoleBinding", "Secret", "Service", "ServiceAccount",
            "StatefulSet"} <= kinds


@pytest.mark.parametrize("quiet_operator", [600.0], indirect=True)
@pytest.mark.parametrize("how", ["deleted", "instrumentation off"])
def test_a_deleted_stack_s_pods_go_to_the_overlapping_one_before_any_resync(
        kube: Kube, quiet_operator: tuple[QuietOperator, str], how: str) -> None:
    """Two stacks select the same agent pod; the one that instrumented it is deleted, or turns its
    instrumentation off. The other used to learn of a deletion at its next resync only (60 s or
    more), and of instrumentation turned off never; either now wakes it and it takes the pod."""
    _, namespace = quiet_operator
    # Made before any stack, so the webhook leaves it alone; annotated as the first stack's.
    kube.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "agent", "namespace": namespace, "labels": {"agentobs.io/agent": "true"},
        "annotations": {"agentobs.io/injected": f"{namespace}/first"}},
        "spec": {"containers": [{"name": "agent", "image": "agent"}]}})
    light = {"logging": {"enabled": False}}
    kube.apply(make_resource("first", namespace, light))
    wait_ready(kube, namespace, "first", generation=1)
    kube.apply(make_resource("second", namespace, light))
    wait_ready(kube, namespace, "second", generation=1)

    def coverage() -> str:
        return str(condition(get_resource(kube, namespace, "second"), "InjectionCoverage").get("reason"))

    wait_for("the second stack to name the first", lambda: coverage() == "PodsInstrumentedElsewhere", timeout=30)
    # Settled, so that no change of its own children (pods turning ready) brings a pass meanwhile.
    previous: dict[tuple[str, str], tuple[str, int]] = {}

    def settled() -> bool:
        nonlocal previous
        now = {**_versions(kube, namespace, "first"), **_versions(kube, namespace, "second")}
        done, previous = now == previous, now
        return done

    wait_for("the stacks to settle", settled, interval=3.0)
    started = time.monotonic()
    if how == "deleted":
        kube.delete(API, KIND, namespace, "first")
    else:
        kube.apply(make_resource("first", namespace, {**light, "instrumentation": {"enabled": False}}))
    wait_for("the second stack to count the pod as its own", lambda: coverage() == "PodsNotInstrumented",
             timeout=30)
    assert time.monotonic() - started < 600, "before any resync could have come"
