"""The chart without a cluster: lint, rendering under several value sets, and RBAC against what the
operator does.

The values schema, the generated files and the image are in test_chart_files.py; server-side
validation of the rendered documents and install/upgrade/uninstall in test_chart_cluster.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from agentobs.kube import KINDS
from agentobs.render import collector

from chart_rbac import (
    APPLIED,
    IN_OPERATOR_NAMESPACE,
    NAMED,
    VERBS_OF_KIND,
    Permissions,
    permissions_of,
    stack_roles,
)
from chart_support import CHART, SERVICE_MONITOR_API, VALUE_SETS, Render, Run, container, env_of, kind_of, one, set_args
from cluster_support import ROOT

# Variables the operator reads that the chart leaves unset, and why.
ENV_NOT_SET_BY_CHART = {
    "AGENTOBS_WEBHOOK_HOST": "only without a Service (out of cluster), where the URL host is given instead",
    "KUBECONFIG": "out of cluster only; in a pod the client uses the ServiceAccount",
}
LEASE = NAMED["Lease"]


# ---- lint and rendering ----------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint_strict(helm: Run, name: str) -> None:
    result = helm("lint", "--strict", str(CHART), *set_args(VALUE_SETS[name]), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_object_is_labelled_and_named_once(render: Render, name: str) -> None:
    docs = render(VALUE_SETS[name])
    keys = [(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), keys
    for doc in docs:
        labels = doc["metadata"]["labels"]
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by",
                    "app.kubernetes.io/part-of", "helm.sh/chart"):
            assert labels.get(key), (doc["kind"], doc["metadata"]["name"], key)


def test_selectors_do_not_change_with_version_or_values(render: Render) -> None:
    """A Deployment's selector is immutable: nothing that changes between upgrades may be in it."""
    before = render({})
    after = render({"operator.image.tag": "9.9.9", "commonLabels": {"team": "obs"}, "operator.replicas": 3})
    selector = one(before, "Deployment")["spec"]["selector"]["matchLabels"]
    assert selector == one(after, "Deployment")["spec"]["selector"]["matchLabels"]
    assert set(selector) == {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}
    pod_labels = one(before, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    for service in kind_of(before, "Service"):
        assert service["spec"]["selector"] == selector, service["metadata"]["name"]


def test_operator_runs_two_replicas_electing_a_leader_ready_when_the_webhook_serves(render: Render) -> None:
    docs = render({}, namespace="obs")
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    env = env_of(docs)
    assert env["AGENTOBS_LEADER_ELECTION"] == "true"
    assert env["AGENTOBS_OPERATOR_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}, "the Lease's"
    assert env["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}, "each replica's holderIdentity"
    assert env["AGENTOBS_NAMESPACES"] == ""
    perms = permissions_of(docs)
    for verb in ("get", "update", "create"):
        assert perms.allows("coordination.k8s.io", "leases", verb, "obs", LEASE), verb
    c = container(docs)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"webhook": 9443, "metrics": 8080, "health": 8081}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    # kopf's /healthz answers before the webhook listens: ready only when the webhook serves.
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "webhook", "scheme": "HTTPS"}
    assert one(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["labelSelector"][
        "matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_nothing_of_kopf_peering_is_left(render: Render, name: str) -> None:
    """The operator elects its leader on a Lease; kopf's peering objects and CRDs are gone."""
    docs = render(VALUE_SETS[name], include_crds=True)
    assert not [d["metadata"]["name"] for d in docs if "kopf.dev" in d["apiVersion"]
                or d["metadata"]["name"].endswith(".kopf.dev")]
    rules = [r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]
    assert not [r for r in rules if "kopf.dev" in r["apiGroups"]]
    if kind_of(docs, "Deployment"):
        assert "AGENTOBS_PEERING" not in env_of(docs)


def test_single_replica_without_leader_election_holds_no_lease_rights(render: Render) -> None:
    docs = render(VALUE_SETS["single-replica"], namespace="obs")
    assert env_of(docs)["AGENTOBS_LEADER_ELECTION"] == "false"
    perms = permissions_of(docs)
    granted = [v for v in ("get", "update", "create") if perms.allows("coordination.k8s.io", "leases", v, "obs", LEASE)]
    assert not granted


def test_more_replicas_without_leader_election_are_refused(helm: Run) -> None:
    values = {"operator.replicas": 2, "operator.leaderElection.enabled": False}
    result = helm("template", "agentobs", str(CHART), *set_args(values), check=False)
    assert result.returncode != 0 and "operator.leaderElection.enabled" in result.stderr, result.stderr
    out_of_cluster = helm("template", "agentobs", str(CHART), *set_args({**values, "operator.enabled": False}),
                          check=False)
    assert out_of_cluster.returncode == 0, "no replicas run in the cluster: " + out_of_cluster.stderr


def test_operator_pod_meets_pod_security_restricted(render: Render) -> None:
    """The fields the `restricted` profile checks (the cluster test has the API server judge)."""
    spec = one(render({}), "Deployment")["spec"]["template"]["spec"]
    pod, ctr = spec["securityContext"], spec["containers"][0]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ctr["allowPrivilegeEscalation"] is False and ctr["capabilities"] == {"drop": ["ALL"]}
    assert ctr["readOnlyRootFilesystem"] is True
    assert all("hostPath" not in v for v in spec["volumes"])
    assert spec["containers"][0]["resources"]["requests"] and spec["containers"][0]["resources"]["limits"]


def test_chart_sets_every_variable_the_operator_reads(render: Render) -> None:
    read = set()
    for path in (ROOT / "operator" / "agentobs").rglob("*.py"):
        read |= set(re.findall(r'environ(?:\.get)?[(\[]"([A-Z][A-Z0-9_]*)"', path.read_text()))
    assert {"AGENTOBS_LEADER_ELECTION", "POD_ID"} <= read, "the scan misses variables; has the configuration moved?"
    env = env_of(render({}))
    missing = sorted(read - env.keys() - ENV_NOT_SET_BY_CHART.keys())
    assert not missing, f"the operator reads {missing}, which the chart does not set"
    assert env["AGENTOBS_WEBHOOK_CONFIGURATION"] == one(render({}), "MutatingWebhookConfiguration")["metadata"]["name"]
    assert env["AGENTOBS_OPERATOR_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_the_operator_may_read_the_deployment_that_owns_its_log_collector(render: Render) -> None:
    """helm uninstall deletes the node log collector with the operator's Deployment, which owns it
    (read with the cluster-wide get that restarts agent workloads)."""
    for values in ({}, VALUE_SETS["namespaced"]):  # the release namespace served, or not
        docs = render(values, namespace="obs")
        deployment = one(docs, "Deployment")["metadata"]["name"]
        assert env_of(docs)["AGENTOBS_OPERATOR_DEPLOYMENT"] == deployment
        assert permissions_of(docs).allows("apps", "deployments", "get", "obs", deployment)


@pytest.mark.parametrize(("name", "hint"), [("AGENTOBS_WORKERS", "set operator.workers instead"),
                                            ("AGENTOBS_LOG_LEVEL", "set operator.logLevel instead"),
                                            ("POD_ID", "its own, not a setting")])
def test_extra_env_repeating_a_chart_variable_is_refused_naming_the_value(helm: Run, name: str, hint: str) -> None:
    """Given twice, Kubernetes kept the extraEnv entry, and a later patch removing it could remove both."""
    values = {"operator.extraEnv": [{"name": name, "value": "x"}]}
    result = helm("template", "agentobs", str(CHART), *set_args(values), check=False)
    assert result.returncode != 0, f"{name} accepted"
    assert f"operator.extraEnv: {name} is set by the chart ({hint})" in result.stderr, result.stderr


def test_extra_env_adds_other_variables_after_the_chart_s(render: Render) -> None:
    env = container(render({"operator.extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}]}))["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names)) and names[-1] == "HTTPS_PROXY"


def test_webhook_configuration_leaves_the_ca_to_the_operator(render: Render) -> None:
    docs = render({}, namespace="obs")
    config = one(docs, "MutatingWebhookConfiguration")
    assert len(config["webhooks"]) == 1
    hook = config["webhooks"][0]
    assert "caBundle" not in hook["clientConfig"], "the operator injects it; the chart must not own it"
    service = one([d for d in docs if d["kind"] == "Service" and d["metadata"]["name"].endswith("-webhook")],
                  "Service")
    assert hook["clientConfig"]["service"] == {"name": service["metadata"]["name"], "namespace": "obs",
                                               "port": 443, "path": "/mutate-pods"}
    assert service["spec"]["ports"][0]["port"] == 443 and service["spec"]["ports"][0]["targetPort"] == "webhook"
    assert hook["name"] == "pods.agentobs.io"
    assert hook["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                              "resources": ["pods"], "scope": "Namespaced"}]
    assert (hook["failurePolicy"], hook["sideEffects"], hook["timeoutSeconds"], hook["reinvocationPolicy"],
            hook["admissionReviewVersions"]) == ("Ignore", "None", 5, "IfNeeded", ["v1"])
    assert hook["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "obs"]}]
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    [expr] = hook["objectSelector"]["matchExpressions"]
    assert expr["operator"] == "NotIn" and pod_labels[expr["key"]] in expr["values"], "operator pods excluded"


def test_out_of_cluster_installs_everything_but_the_operator(render: Render) -> None:
    docs = render(VALUE_SETS["out-of-cluster"])
    assert not kind_of(docs, "Deployment")
    hook = one(docs, "MutatingWebhookConfiguration")["webhooks"][0]
    assert hook["clientConfig"] == {"url": "https://127.0.0.1:9443/mutate-pods"}
    kinds = {d["kind"] for d in docs}
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "AgentObservability"} <= kinds


def test_stack_carries_the_spec_from_values(render: Render) -> None:
    docs = render(VALUE_SETS["stack"], namespace="obs")
    stack = one(docs, "AgentObservability")
    assert stack["metadata"] == {**stack["metadata"], "name": "agentobs", "namespace": "agents"}
    assert stack["spec"] == VALUE_SETS["stack"]["stack.spec"]
    assert not kind_of(render({}), "AgentObservability"), "stack.enabled is off by default"


def test_the_stack_goes_to_its_own_restricted_namespace_never_the_release_s(render: Render, helm: Run) -> None:
    """The webhook never instruments pods of the release namespace: a stack there would see no agent."""
    made = one(render(VALUE_SETS["stack"], namespace="obs"), "Namespace")
    assert made["metadata"]["name"] == "agents"
    assert made["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert made["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    hook = one(render(VALUE_SETS["stack"], namespace="obs"), "MutatingWebhookConfiguration")["webhooks"][0]
    excluded = hook["namespaceSelector"]["matchExpressions"][0]
    assert "obs" in excluded["values"] and "agents" not in excluded["values"]
    assert not kind_of(render({**VALUE_SETS["stack"], "stack.createNamespace": False}), "Namespace")
    refused = helm("template", "x", str(CHART), "--namespace", "agents", *set_args(VALUE_SETS["stack"]),
                   check=False)
    assert refused.returncode != 0 and "is the release namespace" in refused.stderr


def test_a_stack_name_the_operator_would_refuse_fails_the_install(helm: Run) -> None:
    """The default stack name is the release's full name, which no schema sees: a long release
    name made a stack the operator refuses (its Services could not be named)."""
    long = "customer-support-agents-production-observability"
    result = helm("template", long, str(CHART), "--set", "stack.enabled=true", check=False)
    assert result.returncode != 0 and "stack.name" in result.stderr, result.stderr
    helm("template", long, str(CHART), "--set", "stack.enabled=true", "--set", "stack.name=support")
    # Without a stack the name is nobody's: NOTES.txt checked it all the same, and a long release
    # name could not install the operator alone.
    helm("template", long, str(CHART))


def test_namespaced_operator_is_bound_per_namespace_and_elects_in_its_own(render: Render) -> None:
    docs = render(VALUE_SETS["namespaced"], namespace="obs")
    env = env_of(docs)
    assert env["AGENTOBS_NAMESPACES"] == "team-a,team-b,agents", "the stack's namespace joins the list"
    bound = {b["metadata"]["namespace"] for b in kind_of(docs, "RoleBinding")
             if b["roleRef"]["kind"] == "ClusterRole"}
    assert bound == {"team-a", "team-b", "agents"}
    assert [b["roleRef"]["name"] for b in kind_of(docs, "ClusterRoleBinding")] == ["agentobs-operator-cluster"]
    perms = permissions_of(docs)
    assert perms.allows("coordination.k8s.io", "leases", "update", "obs", LEASE)
    for namespace in ("team-a", "team-b"):  # nothing per served namespace for the election
        assert not perms.allows("coordination.k8s.io", "leases", "create", namespace), namespace
    assert {r["metadata"]["namespace"] for r in kind_of(docs, "Role")} == {"obs"}


def test_namespace_globs_bind_cluster_wide_with_any_replicas(render: Render) -> None:
    docs = render({"operator.watchNamespaces": ["team-*"]}, namespace="obs")
    assert env_of(docs)["AGENTOBS_NAMESPACES"] == "team-*"
    assert one(docs, "Deployment")["spec"]["replicas"] == 2
    assert {b["roleRef"]["name"] for b in kind_of(docs, "ClusterRoleBinding")} == {
        "agentobs-operator", "agentobs-operator-cluster"}, "a glob names no namespace to bind in ahead of time"


def test_service_monitor_only_where_the_api_exists(render: Render) -> None:
    assert not kind_of(render({}), "ServiceMonitor")
    docs = render({}, api_versions=(SERVICE_MONITOR_API,))
    monitor = one(docs, "ServiceMonitor")
    metrics = [d for d in kind_of(docs, "Service") if d["metadata"]["name"].endswith("-metrics")]
    assert len(metrics) == 1
    assert monitor["spec"]["selector"]["matchLabels"].items() <= metrics[0]["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == metrics[0]["spec"]["ports"][0]["name"] == "metrics"
    assert not kind_of(render({"metrics.serviceMonitor.enabled": False}, api_versions=(SERVICE_MONITOR_API,)),
                       "ServiceMonitor")


def test_stacks_scrape_every_operator_replica_through_a_headless_service(render: Render) -> None:
    """Only the leader exports a stack's series: the address stacks get resolves to every replica."""
    docs = render({})
    host, _, port = env_of(docs)["AGENTOBS_METRICS_TARGET"].rpartition(":")
    name, namespace, _ = host.split(".", 2)
    [pods] = [d for d in kind_of(docs, "Service") if d["metadata"]["name"] == name]
    assert namespace == "agentobs" and pods["spec"]["clusterIP"] == "None"
    # Readiness is the webhook's: a leader whose webhook cannot start still exports the series.
    assert pods["spec"]["publishNotReadyAddresses"] is True
    assert pods["spec"]["ports"][0]["port"] == int(port) and pods["spec"]["ports"][0]["targetPort"] == "metrics"
    deployment = one(docs, "Deployment")
    assert pods["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    monitor = one(render({}, api_versions=(SERVICE_MONITOR_API,)), "ServiceMonitor")
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= pods["metadata"]["labels"].items(), \
        "the ServiceMonitor would scrape each pod twice"


# ---- RBAC ------------------------------------------------------------------------------------

def _served(values: dict[str, Any]) -> list[str]:
    return list(values.get("operator.watchNamespaces", [])) or ["agents"]


@pytest.mark.parametrize("name", ["defaults", "namespaced"])
def test_rbac_covers_every_kind_the_operator_manages(render: Render, name: str) -> None:
    values = VALUE_SETS[name]
    perms = permissions_of(render(values, namespace="obs"))
    missing = []
    for (api_version, kind), info in KINDS.items():
        group = api_version.rpartition("/")[0]
        for verb in sorted(VERBS_OF_KIND.get(kind, APPLIED)):
            wheres = (["obs"] if kind in IN_OPERATOR_NAMESPACE else _served(values)) if info.namespaced else [None]
            missing += [f"{verb} {info.plural}.{group or 'core'} in {where or 'cluster'}" for where in wheres
                        if not perms.allows(group, info.plural, verb, where, NAMED.get(kind))]
    assert not missing, "the operator's ClusterRoles lack:\n  " + "\n  ".join(missing)
    assert perms.allows("agentobs.io", "agentobservabilities/status", "patch", _served(values)[0])


@pytest.mark.parametrize("name", ["defaults", "namespaced"])
def test_rbac_covers_the_log_collector_in_the_release_namespace(render: Render, name: str) -> None:
    docs = render(VALUE_SETS[name], namespace="obs")
    assert env_of(docs)["AGENTOBS_LOG_COLLECTOR_NAMESPACE"] == "obs"
    perms = permissions_of(docs)
    route = collector.Route("agents", "demo", ("agents",), {}, "demo-fluentd.agents.svc", 24224, "CA")
    missing = []
    for obj in collector.render("obs", [route]):
        api_version, kind = obj["apiVersion"], obj["kind"]
        info = KINDS[(api_version, kind)]
        group = api_version.rpartition("/")[0]
        where = "obs" if info.namespaced else None
        missing += [f"{verb} {info.plural} in {where or 'cluster'}" for verb in sorted(APPLIED)
                    if not perms.allows(group, info.plural, verb, where, obj["metadata"]["name"])]
    assert not missing, "the operator cannot manage the log collector:\n  " + "\n  ".join(missing)


def test_the_log_collector_can_be_turned_off(render: Render) -> None:
    docs = render({"logCollector.enabled": False}, namespace="obs")
    assert env_of(docs)["AGENTOBS_LOG_COLLECTOR_NAMESPACE"] == ""
    # What a release that ran it left in the release namespace, the operator may find and delete
    # (agentobs.stack.logroutes.retire), and no more (an operator serving named namespaces holds
    # nothing else in its own).
    perms = permissions_of(render({**VALUE_SETS["namespaced"], "logCollector.enabled": False}, namespace="obs"))
    route = collector.Route("agents", "demo", ("agents",), {}, "demo-fluentd.agents.svc", 24224, "CA")
    for obj in collector.render("obs", [route]):
        info = KINDS[(obj["apiVersion"], obj["kind"])]
        group = obj["apiVersion"].rpartition("/")[0]
        where = "obs" if info.namespaced else None
        name = obj["metadata"]["name"]
        assert perms.allows(group, info.plural, "list", where) and perms.allows(group, info.plural, "delete", where,
                                                                                 name), obj["kind"]
    assert not perms.allows("apps", "daemonsets", "create", "obs")
    assert env_of(docs)["AGENTOBS_LOG_COLLECTOR_IMAGE"] == ""  # the operator's pinned image
    image = env_of(render({"logCollector.image": "mirror.example/fluent-bit:4.2.8"}))
    assert image["AGENTOBS_LOG_COLLECTOR_IMAGE"] == "mirror.example/fluent-bit:4.2.8"


def test_rbac_grants_nothing_broader_than_needed(render: Render) -> None:
    for role in kind_of(render({}), "ClusterRole") + kind_of(render({}), "Role"):
        for rule in role["rules"]:
            where = f"{role['metadata']['name']}: {rule}"
            assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"], where
            assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"]), where
            # update: the finalizers subresource (owner references that block deletion), and the
            # leader's own Lease, by name; a full replace of anything else would overwrite others' fields.
            assert "update" not in rule["verbs"] or rule["resources"] == ["agentobservabilities/finalizers"] \
                or (rule["resources"] == ["leases"] and rule.get("resourceNames") == [LEASE]), where
    # Cluster RBAC is changed and deleted only where it is the node log collector's: any other
    # ClusterRole or binding (cluster-admin's) stays out of the operator's reach.
    perms = permissions_of(render({}, namespace="obs"))
    for resource in ("clusterroles", "clusterrolebindings"):
        for verb in ("patch", "delete"):
            assert perms.allows("rbac.authorization.k8s.io", resource, verb, None, NAMED["ClusterRole"])
            assert not perms.allows("rbac.authorization.k8s.io", resource, verb, None, "cluster-admin"), resource
    cluster = [r for r in one([d for d in render({}) if d["metadata"]["name"] == "agentobs-operator-cluster"],
                              "ClusterRole")["rules"] if "mutatingwebhookconfigurations" in r["resources"]]
    assert cluster and all(r.get("resourceNames") == ["agentobs-webhook"] for r in cluster)


def test_without_manage_crd_the_operator_cannot_patch_crds(render: Render) -> None:
    perms = permissions_of(render(VALUE_SETS["single-replica"]))
    assert not perms.allows("apiextensions.k8s.io", "customresourcedefinitions", "patch", None,
                            NAMED["CustomResourceDefinition"])
    assert env_of(render(VALUE_SETS["single-replica"]))["AGENTOBS_MANAGE_CRD"] == "false"


@pytest.mark.parametrize("name", ["defaults", "namespaced"])
def test_operator_holds_what_the_roles_it_creates_grant(render: Render, name: str) -> None:
    """RBAC refuses to create a Role granting more than its creator holds (without `escalate`)."""
    perms: Permissions = permissions_of(render(VALUE_SETS[name], namespace="obs"))
    namespace = _served(VALUE_SETS[name])[0]
    lacking = [f"{role['kind']} {role['metadata']['name']}: {verb} {res}.{group or 'core'}"
               for role in stack_roles(namespace)
               for rule in role["rules"] for group in rule["apiGroups"] for res in rule["resources"]
               for verb in rule["verbs"]
               if not perms.allows(group, res, verb, namespace if role["kind"] == "Role" else None)]
    assert not lacking, lacking
