"""The chart against the local cluster's real API server: every rendered document passes
server-side validation; the operator's pod passes Pod Security `restricted` admission; a bad value
is refused by `helm install`; and `helm install`, `upgrade` and `uninstall` of the stack, with the
operator running out of cluster (operator.enabled=false, webhook.url on 127.0.0.1), converge.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentobs.api.crd import make_crd
from agentobs.kube import KINDS
from agentobs.render import collector

from chart_rbac import APPLIED, NAMED, VERBS_OF_KIND, stack_roles
from chart_support import (
    CHART,
    RELEASE,
    SERVICE_MONITOR_API,
    SESSION_PREFIX,
    VALUE_SETS,
    Render,
    Run,
    as_yaml,
    set_args,
)
from cluster_support import OperatorProcess, free_port, wait_established, wait_for

pytestmark = pytest.mark.controlplane

CRD = "agentobservabilities.agentobs.io"
# The installed release is not called `agentobs`: an operator started without a chart (`make demo`,
# tests/controlplane) creates a MutatingWebhookConfiguration `agentobs-webhook` of its own, which
# Helm would refuse to take over. Names below follow the chart's `<release>-...` pattern.
INSTALLED = f"{RELEASE}-chart"
WEBHOOK_CONFIGURATION = f"{INSTALLED}-webhook"
SERVICE_ACCOUNT = f"{INSTALLED}-operator"
OPERATOR_IDENTITY = "chart-test-operator"


def get_json(kubectl: Run, *args: str) -> Any:
    result = kubectl("get", *args, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def condition(resource: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((resource or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


@pytest.fixture(scope="module")
def service_monitor_crd(kubectl: Run) -> None:
    kubectl("apply", "--server-side", "-f", str(Path(__file__).with_name("monitoring-crds.yaml")))
    wait_established(kubectl, "servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com")


# ---- server-side validation ------------------------------------------------------------------

@pytest.mark.usefixtures("service_monitor_crd")
@pytest.mark.parametrize("name", [*sorted(VALUE_SETS), "service-monitor"])
def test_rendered_documents_pass_server_side_strict_validation(render: Render, kubectl: Run,
                                                                make_namespace: Any, name: str) -> None:
    values = dict(VALUE_SETS.get(name, {}))
    if "operator.watchNamespaces" in values:  # served namespaces must exist for their RoleBindings
        values["operator.watchNamespaces"] = [make_namespace(), make_namespace()]
    if values.get("stack.enabled"):  # the chart's Namespace is then one of this session's
        values["stack.namespace"] = make_namespace()
    namespace = make_namespace()
    api_versions = (SERVICE_MONITOR_API,) if name == "service-monitor" else ()
    # A release name of this session's own: the chart's cluster-scoped objects (ClusterRoles, the
    # webhook configuration) then never meet ones another operator on the cluster owns, such as
    # `make demo`'s, whose webhook configuration carries a `url` the chart's `service` collides with.
    docs = render(values, namespace=namespace, api_versions=api_versions, include_crds=True,
                  release=f"{SESSION_PREFIX}-agentobs")
    assert all(d["metadata"]["name"].startswith(SESSION_PREFIX) or d["kind"] == "CustomResourceDefinition"
               or d["kind"] == "AgentObservability" for d in docs if "namespace" not in d["metadata"])
    if name == "service-monitor":
        assert any(d["kind"] == "ServiceMonitor" for d in docs)
    result = kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=as_yaml(docs), check=False)
    assert result.returncode == 0, result.stderr
    accepted = [ln for ln in result.stdout.splitlines() if ln.endswith("(server dry run)")]
    assert len(accepted) == len(docs), result.stdout


def test_a_misspelled_field_is_refused_by_strict_validation(render: Render, kubectl: Run,
                                                            make_namespace: Any) -> None:
    """The check above can fail: the same dry run refuses a document with an unknown field."""
    namespace = make_namespace()
    [service] = [d for d in render({}, namespace=namespace) if d["metadata"]["name"] == f"{RELEASE}-metrics"]
    service["spec"]["selectr"] = {"app": "x"}
    result = kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=as_yaml([service]),
                     check=False)
    assert result.returncode != 0 and "selectr" in result.stderr, result.stderr


def test_operator_pod_is_admitted_by_pod_security_restricted(render: Render, kubectl: Run,
                                                             make_namespace: Any) -> None:
    namespace = make_namespace(labels={"pod-security.kubernetes.io/enforce": "restricted",
                                       "pod-security.kubernetes.io/enforce-version": "latest"})
    [deployment] = [d for d in render({}, namespace=namespace) if d["kind"] == "Deployment"]
    template = deployment["spec"]["template"]
    kubectl("create", "serviceaccount", template["spec"]["serviceAccountName"], "-n", namespace)
    pod = {"apiVersion": "v1", "kind": "Pod", "spec": template["spec"],
           "metadata": {"name": "operator", "namespace": namespace, "labels": template["metadata"]["labels"]}}

    def dry_run() -> subprocess.CompletedProcess[str] | None:
        result = kubectl("apply", "--dry-run=server", "-f", "-", input=as_yaml([pod]), check=False)
        # The ServiceAccount admission plugin reads a cache that may not hold the new account yet.
        return None if "error looking up service account" in result.stderr else result

    result = wait_for("the ServiceAccount to reach the admission cache", dry_run, timeout=30)
    assert result.returncode == 0, result.stderr

    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    refused = dry_run()
    assert refused is not None and refused.returncode != 0 and "restricted" in refused.stderr, \
        "the namespace must enforce the profile"


@pytest.mark.parametrize(("values", "path"), [
    ({"stack.spec.prometheus.replicas": "two"}, "/stack/spec/prometheus/replicas"),
    ({"operator.replicas": -1}, "/operator/replicas"),
])
def test_helm_install_refuses_values_that_break_the_schema(helm: Run, kubectl: Run, make_namespace: Any,
                                                           values: dict[str, Any], path: str) -> None:
    namespace = make_namespace()
    result = helm("install", "refused", str(CHART), "-n", namespace, *set_args(values), check=False)
    assert result.returncode != 0
    assert f"at '{path}'" in result.stderr, result.stderr
    assert helm("list", "-n", namespace, "-q").stdout.strip() == "", "nothing was installed"


# ---- install, upgrade, uninstall with the operator out of cluster ----------------------------

@dataclass
class Release:
    namespace: str  # the release's: the operator's own objects and the node log collector
    stack_namespace: str  # the stack's and its agents' (stack.namespace), which the chart creates
    stack: str
    values: dict[str, Any]
    log: Path


def chart_operator(namespace: str, stack_namespace: str, webhook_port: int, log: Path) -> OperatorProcess:
    """The operator configured as the chart would configure it, run out of cluster (serving only the
    stack's namespace: the cluster is shared with other tests)."""
    return OperatorProcess({
        "AGENTOBS_NAMESPACES": stack_namespace, "AGENTOBS_BIND_ADDRESS": "127.0.0.1",
        "AGENTOBS_METRICS_PORT": str(free_port()), "AGENTOBS_HEALTH_PORT": str(free_port()),
        "AGENTOBS_WEBHOOK_PORT": str(webhook_port), "AGENTOBS_WEBHOOK_SERVICE": "",
        "AGENTOBS_WEBHOOK_CONFIGURATION": WEBHOOK_CONFIGURATION, "AGENTOBS_OPERATOR_NAMESPACE": namespace,
        "AGENTOBS_LOG_COLLECTOR_NAMESPACE": namespace,
        "AGENTOBS_MANAGE_CRD": "true", "AGENTOBS_RESYNC_SECONDS": "3",
        "AGENTOBS_LEADER_ELECTION": "true", "POD_ID": OPERATOR_IDENTITY}, log)


@pytest.fixture(scope="module")
def release(helm: Run, kubectl: Run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    namespace, stack_namespace = f"{SESSION_PREFIX}-release", f"{SESSION_PREFIX}-agents"
    kubectl("create", "namespace", namespace)
    port = free_port()
    values = {"operator.enabled": False, "stack.enabled": True, "stack.namespace": stack_namespace,
              "webhook.url": f"https://127.0.0.1:{port}/mutate-pods"}
    helm("install", INSTALLED, str(CHART), "-n", namespace, *set_args(values))
    # As after `helm upgrade` to a chart whose CRD changed: Helm leaves the installed CRD as it was.
    kubectl("patch", "crd", CRD, "--type=json", "-p",
            json.dumps([{"op": "replace", "path": "/spec/versions/0/additionalPrinterColumns/0/description",
                         "value": "stale"}]))
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    operator = chart_operator(namespace, stack_namespace, port, log)
    operator.start()
    try:
        yield Release(namespace=namespace, stack_namespace=stack_namespace, stack=INSTALLED, values=values, log=log)
    finally:
        operator.stop()
        helm("uninstall", INSTALLED, "-n", namespace, check=False)
        kubectl("delete", "namespace", namespace, stack_namespace, "--wait=false", check=False)


def _ready(kubectl: Run, release: Release, generation: int) -> dict[str, Any] | None:
    res = get_json(kubectl, "agentobservability", release.stack, "-n", release.stack_namespace)
    if condition(res, "Ready").get("status") == "True" and res["status"].get("observedGeneration") == generation:
        return dict(res)
    return None


def _explain(release: Release) -> str:
    return "\noperator log (end):\n" + release.log.read_text(errors="replace")[-3000:]


def test_install_yields_a_ready_stack(helm: Run, kubectl: Run, release: Release) -> None:
    status = json.loads(helm("status", INSTALLED, "-n", release.namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    assert "kubectl -n" in status["info"]["notes"] and f"{release.stack}-grafana-admin" in status["info"]["notes"]
    res = wait_for("the stack to become Ready" + _explain(release), lambda: _ready(kubectl, release, 1), timeout=180)
    assert condition(res, "PrometheusReady")["status"] == "True"
    assert res["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    # What lets `helm uninstall` delete the stack whether or not the operator still runs (NOTES says so).
    assert not res["metadata"].get("finalizers"), res["metadata"]
    assert not [a for a in res["metadata"].get("annotations") or {} if "kopf" in a or "last-handled" in a]
    assert "finalizer" not in status["info"]["notes"]
    # The cluster's node log collector runs in the release namespace, routing the stack's agents.
    ds = wait_for("the node log collector" + _explain(release), lambda: get_json(
        kubectl, "daemonset", "agentobs-log-collector", "-n", release.namespace))
    assert ds["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    routes = get_json(kubectl, "configmap", "agentobs-log-collector", "-n", release.namespace)["data"]["routes.lua"]
    assert f'id = "{release.stack_namespace}_{release.stack}"' in routes
    # The chart made the stack's namespace, under Pod Security `restricted`, and keeps it on uninstall.
    made = get_json(kubectl, "namespace", release.stack_namespace)["metadata"]
    assert made["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert made["annotations"]["helm.sh/resource-policy"] == "keep"


def test_operator_brings_its_crd_up_to_date(kubectl: Run, release: Release) -> None:
    want = make_crd()["spec"]["versions"][0]["additionalPrinterColumns"][0]["description"]

    def current() -> bool:
        crd = get_json(kubectl, "crd", CRD)
        return bool(crd) and crd["spec"]["versions"][0]["additionalPrinterColumns"][0]["description"] == want

    wait_for("the operator to re-apply its CRD" + _explain(release), current, timeout=60)


def test_operator_leads_on_the_lease_the_chart_grants(kubectl: Run, release: Release) -> None:
    """The Lease the operator really takes is the one the chart's Role names, in the release namespace."""
    lease = wait_for("the operator to take the leader Lease" + _explain(release),
                     lambda: get_json(kubectl, "lease", NAMED["Lease"], "-n", release.namespace))
    assert lease["spec"]["holderIdentity"] == OPERATOR_IDENTITY
    role = get_json(kubectl, "role", f"{INSTALLED}-operator-leader-election", "-n", release.namespace)
    assert [r.get("resourceNames") for r in role["rules"]] == [None, [lease["metadata"]["name"]]]


def _access_reviews(kubectl: Run, checks: list[tuple[str, str, str, str | None, str | None]],
                    user: str) -> list[bool]:
    reviews = [{"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": user, "groups": ["system:serviceaccounts", "system:authenticated"],
                         "resourceAttributes": {"group": group, "resource": resource.split("/")[0], "verb": verb,
                                                "subresource": resource.partition("/")[2],
                                                **({"namespace": ns} if ns else {}),
                                                **({"name": name} if name else {})}}}
               for group, resource, verb, ns, name in checks]
    out = kubectl("create", "-o", "json", "-f", "-",
                  input=json.dumps({"apiVersion": "v1", "kind": "List", "items": reviews}))
    # kubectl prints one JSON document per created object, one after the other.
    decoder, text, answers = json.JSONDecoder(), out.stdout.strip(), []
    while text:
        item, end = decoder.raw_decode(text)
        answers.append(bool(item["status"].get("allowed")))
        text = text[end:].strip()
    return answers


def test_operator_service_account_may_do_what_the_operator_does(kubectl: Run, release: Release) -> None:
    collector_rbac = f"{collector.NAME}-{release.namespace}"
    names = {**NAMED, "MutatingWebhookConfiguration": WEBHOOK_CONFIGURATION,
             "ClusterRole": collector_rbac, "ClusterRoleBinding": collector_rbac}
    checks = []
    for (api_version, kind), info in KINDS.items():
        group = api_version.rpartition("/")[0]
        for verb in sorted(VERBS_OF_KIND.get(kind, APPLIED)):
            served = release.namespace if kind == "Lease" else release.stack_namespace
            checks.append((group, info.plural, verb, served if info.namespaced else None, names.get(kind)))
    checks.append(("agentobs.io", "agentobservabilities/status", "patch", release.stack_namespace, None))
    user = f"system:serviceaccount:{release.namespace}:{SERVICE_ACCOUNT}"
    denied = [c for c, allowed in zip(checks, _access_reviews(kubectl, checks, user), strict=True) if not allowed]
    assert not denied, denied
    # And no more than that: a CRD other than ours may not be patched, another Lease not updated, and
    # no Lease outside the release namespace touched.
    beyond = _access_reviews(kubectl, [
        ("apiextensions.k8s.io", "customresourcedefinitions", "patch", None, "servicemonitors.monitoring.coreos.com"),
        ("coordination.k8s.io", "leases", "update", release.namespace, "kube-scheduler"),
        ("coordination.k8s.io", "leases", "create", "kube-system", None),
        ("coordination.k8s.io", "leases", "list", release.namespace, None),
        ("rbac.authorization.k8s.io", "clusterroles", "patch", None, "cluster-admin"),
        ("rbac.authorization.k8s.io", "clusterrolebindings", "delete", None, "cluster-admin"),
    ], user)
    assert beyond == [False] * len(beyond), beyond


def test_operator_service_account_can_apply_the_stack_it_renders(kubectl: Run, release: Release) -> None:
    """Through the real authorizer, including RBAC's escalation check on the Roles it creates."""
    roles = stack_roles(release.stack_namespace, release.namespace)
    user = f"system:serviceaccount:{release.namespace}:{SERVICE_ACCOUNT}"
    result = kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=agentobs-operator",
                     f"--as={user}", "-f", "-", input=as_yaml(roles), check=False)
    assert result.returncode == 0, result.stderr


def _ca_bundle(kubectl: Run) -> str:
    config = get_json(kubectl, "mutatingwebhookconfiguration", WEBHOOK_CONFIGURATION) or {}
    return str(((config.get("webhooks") or [{}])[0].get("clientConfig") or {}).get("caBundle") or "")


def test_upgrade_with_changed_values_converges_and_keeps_the_injected_ca(helm: Run, kubectl: Run,
                                                                        release: Release) -> None:
    wait_for("the stack to become Ready" + _explain(release), lambda: _ready(kubectl, release, 1), timeout=180)
    ca = wait_for("the operator to inject the webhook CA" + _explain(release), lambda: _ca_bundle(kubectl))
    changed = {**release.values, "stack.spec": {"prometheus": {"replicas": 3}}, "webhook.timeoutSeconds": 7}
    helm("upgrade", INSTALLED, str(CHART), "-n", release.namespace, *set_args(changed))

    res = wait_for("the upgraded stack to become Ready" + _explain(release), lambda: _ready(kubectl, release, 2),
                   timeout=180)
    assert res["status"]["components"]["prometheus"] == {"ready": 3, "desired": 3}
    sts = get_json(kubectl, "statefulset", f"{release.stack}-prometheus", "-n", release.stack_namespace)
    assert sts["spec"]["replicas"] == 3
    config = get_json(kubectl, "mutatingwebhookconfiguration", WEBHOOK_CONFIGURATION)
    assert config["webhooks"][0]["timeoutSeconds"] == 7, "the chart's fields follow the upgrade"
    assert _ca_bundle(kubectl) == ca, "the operator's caBundle survives the upgrade"


RETAINED = "agentobs.io/retained-on-delete"
WEBHOOK_KEY_SECRET = f"{WEBHOOK_CONFIGURATION}-tls"
OWNED_KINDS = "configmaps,secrets,services,serviceaccounts,statefulsets,deployments,daemonsets,jobs," \
              "poddisruptionbudgets,networkpolicies,roles,rolebindings,pods,persistentvolumeclaims"


def test_uninstall_removes_everything_but_the_data(helm: Run, kubectl: Run, release: Release) -> None:
    ns, selector = release.stack_namespace, f"agentobs.io/owner={release.stack}"
    wait_for("the stack to become Ready" + _explain(release),
             lambda: _ready(kubectl, release, 2) or _ready(kubectl, release, 1), timeout=180)

    def data() -> dict[str, set[str]]:
        items = get_json(kubectl, "persistentvolumeclaims,secrets", "-n", ns, "-l", selector)["items"]
        return {"pvc": {i["metadata"]["name"] for i in items if i["kind"] == "PersistentVolumeClaim"},
                "secrets": {i["metadata"]["name"] for i in items if i["kind"] == "Secret"
                            and (i["metadata"].get("annotations") or {}).get(RETAINED) == "true"}}

    before = wait_for("PVCs and generated credentials", lambda: (d := data())["pvc"] and d["secrets"] and d)
    helm("uninstall", INSTALLED, "-n", release.namespace, "--wait", "--timeout", "3m")

    wait_for("the AgentObservability to be deleted" + _explain(release),
             lambda: get_json(kubectl, "agentobservability", release.stack, "-n", ns) is None, timeout=120)

    def leftovers() -> list[str]:
        items = get_json(kubectl, OWNED_KINDS, "-n", ns, "-l", selector)["items"]
        # The node log collector (here in the release's namespace) belongs to no one stack: the
        # operator deletes it when the last route goes, and its pods go after the DaemonSet.
        items += get_json(kubectl, OWNED_KINDS, "-n", release.namespace, "-l",
                          f"app.kubernetes.io/instance={collector.NAME}")["items"]
        return [f"{i['kind']}/{i['metadata']['name']}" for i in items
                if i["kind"] != "PersistentVolumeClaim"
                and (i["metadata"].get("annotations") or {}).get(RETAINED) != "true"]

    wait_for("the stack's other objects and the log collector to be deleted", lambda: not leftovers() or None,
             timeout=120)
    assert data() == before, "PVCs and generated credentials are kept"
    kept = get_json(kubectl, "persistentvolumeclaims,secrets", "-n", ns, "-l", selector)["items"]
    assert all(not i["metadata"].get("ownerReferences") for i in kept), "nothing would collect them later"

    def everything(namespace: str) -> set[str]:
        items = get_json(kubectl, "all,configmaps,secrets,serviceaccounts,roles,rolebindings,networkpolicies,"
                                  "poddisruptionbudgets,persistentvolumeclaims", "-n", namespace)["items"]
        return {i["metadata"]["name"] for i in items if i["kind"] not in ("ConfigMap",)
                or i["metadata"]["name"] != "kube-root-ca.crt"}

    expected = before["pvc"] | before["secrets"]
    names = everything(ns)
    unexpected = names - expected - {"default"}
    assert not unexpected and expected <= names, f"left behind: {sorted(unexpected)}"
    assert get_json(kubectl, "namespace", ns) is not None, "the stack's namespace stays: it holds the data"
    # The webhook's key Secret goes through the garbage collector, maybe later: see the next test.
    unexpected = everything(release.namespace) - {"default", WEBHOOK_KEY_SECRET}
    assert not unexpected, f"left behind in the release namespace: {sorted(unexpected)}"
    for kind, name in [("clusterrole", f"{INSTALLED}-operator"), ("clusterrole", f"{INSTALLED}-operator-cluster"),
                       ("clusterrolebinding", f"{INSTALLED}-operator"),
                       ("mutatingwebhookconfiguration", WEBHOOK_CONFIGURATION)]:
        assert get_json(kubectl, kind, name) is None, f"{kind}/{name} left behind"
    assert get_json(kubectl, "crd", CRD) is not None, "Helm keeps the CRD of crds/"
    cluster_scoped = get_json(kubectl, "clusterroles,clusterrolebindings", "-l",
                              f"{selector},agentobs.io/owner-namespace={ns}")["items"]
    assert not cluster_scoped, "the operator deletes the stack's cluster-scoped objects when it goes"
    # The node log collector went with the last stack that collected logs.
    assert get_json(kubectl, "clusterrole", f"agentobs-log-collector-{release.namespace}") is None
    assert yaml.safe_load(helm("list", "-n", release.namespace, "-o", "yaml").stdout) == []


def test_uninstall_leaves_no_webhook_key_secret(kubectl: Run, release: Release) -> None:
    """The operator's key Secret is owned by the chart's webhook configuration, so it goes with it."""
    assert get_json(kubectl, "mutatingwebhookconfiguration", WEBHOOK_CONFIGURATION) is None, "run after uninstall"
    wait_for("the garbage collector to delete the webhook's key Secret",
             lambda: get_json(kubectl, "secret", WEBHOOK_KEY_SECRET, "-n", release.namespace) is None, timeout=60)
