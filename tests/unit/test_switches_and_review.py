"""Component switches, and the review's fixes that show in the rendered objects: alert
deduplication, agent discovery across namespaces with its RBAC, probes without credentials,
session affinity, and `extraRules` checked before Prometheus reads them."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
import yaml

from agentobs.admission.injection import make_config
from agentobs.api.spec import AgentObservabilitySpec
from agentobs.render import Owner, certificate_requests, credential_requests, endpoints, make_stack
from agentobs.render.common import ELSEWHERE_LABEL
from agentobs.render.prometheus import AGENT_NAMESPACES
from agentobs.render.rules import EXTRA_FILE, extra_rule_problems, rule_files
from agentobs.stack.status import Observation, WorkloadState, disabled_conditions, make_status, pod_cause

from placeholders import placeholder_material

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
UID = "00000000-0000-0000-0000-000000000001"


def owner_of(spec: dict[str, Any], **extra: Any) -> Owner:
    return Owner(name="demo", namespace="agents", uid=UID, spec=AgentObservabilitySpec.model_validate(spec),
                 extra=extra)


def objects_of(owner: Owner) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
            for o in make_stack(owner, placeholder_material(owner))}


def components(objects: dict[tuple[str, str, str], dict[str, Any]]) -> set[str]:
    return {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in objects.values()}


def prometheus_config(owner: Owner) -> dict[str, Any]:
    cm = objects_of(owner)[("ConfigMap", "agents", "demo-prometheus")]
    loaded: dict[str, Any] = yaml.safe_load(cm["data"]["prometheus.yml"])
    return loaded


# --- switches ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "gone"), [
    ({"grafana": {"enabled": False}}, {"grafana"}),
    ({"tracing": {"enabled": False}}, {"jaeger-collector", "jaeger-query"}),
    ({"prometheus": {"alertmanager": {"enabled": False}}}, {"alertmanager"}),
    ({"prometheus": {"enabled": False}}, {"prometheus", "alertmanager"}),
])
def test_a_switched_off_component_renders_nothing(spec: dict[str, Any], gone: set[str]) -> None:
    everything = components(objects_of(owner_of({})))
    assert gone <= everything
    owner = owner_of(spec)
    left = components(objects_of(owner))
    assert not gone & left, gone & left
    assert left == everything - gone  # and nothing else goes with it
    assert not gone & set(certificate_requests(owner))
    assert not any(r.component in gone for r in credential_requests(owner))


@pytest.mark.parametrize("external", [False, True])
def test_no_store_when_nothing_writes_to_it(external: bool) -> None:
    # Tracing and logging both off: no Elasticsearch nodes, retention job or Elasticsearch
    # datasource; one writer left on keeps the store.
    es = {"elasticsearch": {"external": {"url": "https://es.example.org:9200", "credentialsSecret": "es"}}} \
        if external else {}
    store = {"elasticsearch", "es-retention"}
    one_writer = components(objects_of(owner_of({**es, "logging": {"enabled": False}})))
    assert "es-retention" in one_writer and ("elasticsearch" in one_writer) is not external
    owner = owner_of({**es, "tracing": {"enabled": False}, "logging": {"enabled": False}})
    objects = objects_of(owner)
    assert not store & components(objects)
    assert not store & set(certificate_requests(owner))
    assert not any(r.component in store for r in credential_requests(owner))
    provisioning = objects[("ConfigMap", "agents", "demo-grafana-provisioning")]
    datasources = yaml.safe_load(provisioning["data"]["datasources.yaml"])["datasources"]
    assert [d["type"] for d in datasources] == ["prometheus"]
    grafana = objects[("Deployment", "agents", "demo-grafana")]["spec"]["template"]["spec"]["containers"][0]
    assert not any("ELASTICSEARCH" in e["name"] for e in grafana["env"])
    policy = objects[("NetworkPolicy", "agents", "demo-grafana")]
    assert all(p.get("port") != 9200 for rule in policy["spec"]["egress"] for p in rule.get("ports", [])), policy


def test_endpoints_follow_the_switches() -> None:
    assert {"grafana", "prometheus", "otlpGrpc", "otlpHttp"} <= set(endpoints(owner_of({})))
    off = endpoints(owner_of({"grafana": {"enabled": False}, "tracing": {"enabled": False},
                              "prometheus": {"enabled": False}}))
    assert not {"grafana", "prometheus", "otlpGrpc", "otlpHttp"} & set(off)


def test_tracing_off_injects_no_otlp_endpoint() -> None:
    on = make_config(owner_of({}))
    off = make_config(owner_of({"tracing": {"enabled": False}}))
    assert on is not None and off is not None
    assert on.env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("https://demo-jaeger-collector.agents.svc")
    assert not any(k.startswith("OTEL_EXPORTER_OTLP") or k.startswith("OTEL_TRACES_SAMPLER") for k in off.env)
    assert off.env["OTEL_TRACES_EXPORTER"] == "none"
    assert off.env["AGENTOBS_METRICS_PORT"] == on.env["AGENTOBS_METRICS_PORT"]  # metrics still scraped
    assert on.digest != off.digest  # pods injected before the switch count as stale


def test_grafana_has_datasources_only_for_what_runs() -> None:
    def datasources(spec: dict[str, Any]) -> set[str]:
        cm = objects_of(owner_of(spec))[("ConfigMap", "agents", "demo-grafana-provisioning")]
        return {d["type"] for d in yaml.safe_load(cm["data"]["datasources.yaml"])["datasources"]}

    assert datasources({}) == {"prometheus", "jaeger", "elasticsearch"}
    assert datasources({"tracing": {"enabled": False}}) == {"prometheus", "elasticsearch"}
    assert datasources({"prometheus": {"enabled": False}}) == {"jaeger", "elasticsearch"}
    deployment = objects_of(owner_of({"prometheus": {"enabled": False}}))[("Deployment", "agents", "demo-grafana")]
    env = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "AGENTOBS_PROMETHEUS_PASSWORD" not in env  # no reference to a Secret nobody makes


def test_alertmanager_off_leaves_prometheus_without_alerting() -> None:
    owner = owner_of({"prometheus": {"alertmanager": {"enabled": False}}})
    config = prometheus_config(owner)
    assert "alerting" not in config
    assert "alertmanager" not in {j["job_name"] for j in config["scrape_configs"]}
    sts = objects_of(owner)[("StatefulSet", "agents", "demo-prometheus")]
    volumes = {v["name"] for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert "alertmanager-auth" not in volumes


def test_disabled_components_are_reported_and_not_waited_for() -> None:
    spec = AgentObservabilitySpec.model_validate({"grafana": {"enabled": False}, "tracing": {"enabled": False}})
    obs = Observation(generation=3, tls_ready=True, disabled=disabled_conditions(spec),
                      workloads={"prometheus": WorkloadState(2, 2, True), "alertmanager": WorkloadState(3, 3, True),
                                 "elasticsearch": WorkloadState(3, 3, True), "fluentd": WorkloadState(1, 1, True)})
    status = make_status(obs, [], NOW)
    conditions = {c.type: c for c in status.conditions}
    assert conditions["Ready"].status == "True", conditions["Ready"]
    for type_, field in (("GrafanaReady", "spec.grafana.enabled"), ("TracingReady", "spec.tracing.enabled")):
        assert conditions[type_].status == "False" and conditions[type_].reason == "Disabled"
        assert field in conditions[type_].message
    assert status.components_ready == "5/5"  # TLS, Prometheus, Alertmanager, Elasticsearch, Logging


def test_no_writer_reports_the_store_disabled() -> None:
    spec = AgentObservabilitySpec.model_validate({"tracing": {"enabled": False}, "logging": {"enabled": False}})
    obs = Observation(generation=1, tls_ready=True, disabled=disabled_conditions(spec),
                      workloads={"prometheus": WorkloadState(2, 2, True), "alertmanager": WorkloadState(3, 3, True),
                                 "grafana": WorkloadState(1, 1, True)})
    conditions = {c.type: c for c in make_status(obs, [], NOW).conditions}
    assert conditions["ElasticsearchReady"].reason == "Disabled", conditions["ElasticsearchReady"]
    assert "spec.logging.enabled" in conditions["ElasticsearchReady"].message
    assert conditions["Ready"].status == "True", conditions["Ready"]
    logging_only = disabled_conditions(AgentObservabilitySpec.model_validate({"tracing": {"enabled": False}}))
    assert "ElasticsearchReady" not in logging_only


def test_a_component_turned_on_again_is_waited_for() -> None:
    obs = Observation(generation=1, tls_ready=True, workloads={"grafana": WorkloadState(0, 1, True)},
                      disabled=disabled_conditions(AgentObservabilitySpec()))
    conditions = {c.type: c for c in make_status(obs, [], NOW).conditions}
    assert conditions["Ready"].status == "False" and "GrafanaReady" in conditions["Ready"].message


# --- item 1: one alert from the HA pair ---------------------------------------------------------

def test_alerts_leave_without_the_replica_label() -> None:
    config = prometheus_config(owner_of({}))
    assert config["global"]["external_labels"]["replica"] == "${POD_NAME}"  # queries still tell them apart
    assert config["alerting"]["alert_relabel_configs"] == [{"action": "labeldrop", "regex": "replica"}]


# --- item 2: agents in every selected namespace -------------------------------------------------

def _agents_job(owner: Owner) -> dict[str, Any]:
    job: dict[str, Any] = next(j for j in prometheus_config(owner)["scrape_configs"] if j["job_name"] == "agents")
    return job


def test_agents_are_discovered_in_the_resources_namespace_by_default() -> None:
    job = _agents_job(owner_of({}))
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["agents"]}}]


def test_agents_are_discovered_in_every_selected_namespace_with_a_role_in_each() -> None:
    spec = {"instrumentation": {"namespaceSelector": {"matchLabels": {"team": "search"}}}}
    owner = owner_of(spec, **{AGENT_NAMESPACES: ["team-b", "team-a", "agents"]})
    job = _agents_job(owner)
    assert job["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["agents", "team-a", "team-b"]}}]
    objects = objects_of(owner)
    assert not any(kind.startswith("Cluster") and "prometheus" in name for kind, _, name in objects)
    for namespace in ("team-a", "team-b"):
        role = objects[("Role", namespace, "agentobs-agents-demo-prometheus")]
        assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
        assert "ownerReferences" not in role["metadata"]  # cannot cross namespaces; pruned by labels
        binding = objects[("RoleBinding", namespace, "agentobs-agents-demo-prometheus")]
        # What the orphan sweep selects them by, should their resource go while no operator runs.
        assert role["metadata"]["labels"][ELSEWHERE_LABEL] == binding["metadata"]["labels"][ELSEWHERE_LABEL] == "true"
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "demo-prometheus", "namespace": "agents"}]
    # The resource's own namespace has its Role, for the stack's own pods, and only once.
    assert ELSEWHERE_LABEL not in objects[("Role", "agents", "demo-prometheus")]["metadata"]["labels"]
    assert [k for k in objects if k[0] == "Role"] == [
        ("Role", "agents", "demo-prometheus"), ("Role", "team-a", "agentobs-agents-demo-prometheus"),
        ("Role", "team-b", "agentobs-agents-demo-prometheus")]


def test_a_selector_matching_no_namespace_discovers_nothing() -> None:
    # An empty `names` would mean every namespace to Prometheus.
    owner = owner_of({"instrumentation": {"namespaceSelector": {"matchLabels": {"team": "none"}}}})
    assert _agents_job(owner)["kubernetes_sd_configs"] == []


# --- item 3: probes that mean ready, without a credential in the pod spec ------------------------

def _container(objects: dict[tuple[str, str, str], dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    container: dict[str, Any] = objects[(kind, "agents", name)]["spec"]["template"]["spec"]["containers"][0]
    return container


def test_probes_read_credentials_from_mounted_files_only() -> None:
    # Every generated password renders as the placeholder PASSWORD: it must appear in no container.
    objects = objects_of(owner_of({}))
    prom = _container(objects, "StatefulSet", "demo-prometheus")
    assert prom["readinessProbe"]["exec"]["command"][:3] == ["/bin/promtool", "check", "ready"]
    am = _container(objects, "StatefulSet", "demo-alertmanager")
    assert am["readinessProbe"]["exec"]["command"][0] == "/bin/amtool"
    es = _container(objects, "StatefulSet", "demo-elasticsearch")
    script = es["readinessProbe"]["exec"]["command"][-1]
    assert "wait_for_status=yellow" in script and "local=true" not in script
    assert "ELASTIC_PASSWORD" not in {e["name"] for e in es["env"]}  # the value comes from a file
    for container in (prom, am, es):
        text = json.dumps(container)
        assert "PASSWORD" not in text.replace("ELASTIC_PASSWORD_FILE", ""), container["name"]
        assert "secretKeyRef" not in text, container["name"]


def test_probe_client_configs_point_at_mounted_files() -> None:
    objects = objects_of(owner_of({}))
    for component, auth_dir in (("prometheus", "/etc/prometheus/auth"), ("alertmanager", "/etc/alertmanager/auth")):
        probe = yaml.safe_load(objects[("Secret", "agents", f"demo-{component}-web-config")]["stringData"]["probe.yml"])
        assert probe["basic_auth"]["password_file"] == f"{auth_dir}/password"
        mounts = {m["mountPath"] for m in _container(objects, "StatefulSet", f"demo-{component}")["volumeMounts"]}
        assert auth_dir in mounts


# --- item 5: a client stays on one replica ------------------------------------------------------

def test_grafana_and_prometheus_services_keep_a_client_on_one_replica() -> None:
    objects = objects_of(owner_of({"grafana": {"replicas": 2}}))
    assert objects[("Service", "agents", "demo-prometheus")]["spec"]["sessionAffinity"] == "ClientIP"
    assert objects[("Service", "agents", "demo-grafana")]["spec"]["sessionAffinity"] == "ClientIP"


# --- item 7: extraRules ---------------------------------------------------------------------------

def test_extra_rules_whose_promql_does_not_parse_are_left_out_and_named() -> None:
    owner = owner_of({"prometheus": {"extraRules": [
        {"name": "good", "rules": [{"alert": "Fine", "expr": "up == 0", "for": "5m"}]},
        {"name": "typo", "rules": [{"record": "job:up:sum", "expr": "sum(up) by (job"}]},
    ]}})
    problems = extra_rule_problems(owner)
    assert set(problems) == {"typo"}
    assert "spec.prometheus.extraRules[1].rules[0].expr" in problems["typo"]
    written = rule_files(owner)[EXTRA_FILE]["groups"]
    assert [g["name"] for g in written] == ["good"]
    assert written[0]["rules"] == [{"alert": "Fine", "expr": "up == 0", "for": "5m"}]


def test_invalid_extra_rules_make_the_stack_degraded_with_the_reason() -> None:
    obs = Observation(generation=1, tls_ready=True, rule_problems={"typo": "spec.prometheus.extraRules[0]... bad"})
    conditions = {c.type: c for c in make_status(obs, [], NOW).conditions}
    assert conditions["Degraded"].status == "True" and conditions["Degraded"].reason == "InvalidExtraRules"
    assert "extraRules[0]" in conditions["Degraded"].message
    assert conditions["Ready"].status == "False"


# --- item 6: the cause the cluster gives ----------------------------------------------------------

def _pod(name: str, conditions: list[dict[str, str]] | None = None,
         waiting: dict[str, str] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": conditions or []}
    if waiting:
        status["containerStatuses"] = [{"name": "elasticsearch", "state": {"waiting": waiting}}]
    return {"metadata": {"name": name}, "status": status}


UNSCHEDULABLE = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/3 nodes are available: 3 Insufficient memory."}


@pytest.mark.parametrize(("pods", "claims", "reason", "words"), [
    ([_pod("es-0", [UNSCHEDULABLE])], [{"metadata": {"name": "data-es-0"}, "status": {"phase": "Pending"}}],
     "Unschedulable", "3 Insufficient memory"),
    ([_pod("es-0")], [{"metadata": {"name": "data-es-0"}, "status": {"phase": "Pending"}}],
     "VolumeNotBound", "data-es-0 is Pending"),
    ([_pod("es-0", waiting={"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""})], [],
     "ImagePullBackOff", "container elasticsearch: ImagePullBackOff: Back-off pulling"),
    ([_pod("es-0"), _pod("es-1", waiting={"reason": "CrashLoopBackOff", "message": "back-off 5m0s"})], [],
     "CrashLoopBackOff", "pod es-1"),
])
def test_pod_cause_names_what_the_cluster_says(pods: list[dict[str, Any]], claims: list[dict[str, Any]],
                                                 reason: str, words: str) -> None:
    cause = pod_cause(pods, claims)
    assert cause is not None and cause[0] == reason and words in cause[1], cause


UNBOUND_IMMEDIATE = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                     "message": "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."}


def test_a_pod_waiting_for_its_claim_to_bind_is_no_lack_of_room() -> None:
    """A new stack on an Immediate-binding class: the scheduler calls the pod Unschedulable until
    the claim is provisioned. The cause is the claim (or, once it bound, only time), never the
    Unschedulable Warning the user would read as a cluster too small."""
    pending = [{"metadata": {"name": "buffer-f-1"}, "status": {"phase": "Pending"}}]
    cause = pod_cause([_pod("f-1", [UNBOUND_IMMEDIATE])], pending)
    assert cause is not None and cause[0] == "VolumeNotBound" and "buffer-f-1 is Pending" in cause[1], cause
    bound = [{"metadata": {"name": "buffer-f-1"}, "status": {"phase": "Bound"}}]
    assert pod_cause([_pod("f-1", [UNBOUND_IMMEDIATE])], bound) is None


def test_pod_cause_is_none_when_only_time_explains_it() -> None:
    assert pod_cause([_pod("es-0", waiting={"reason": "ContainerCreating"})],
                     [{"metadata": {"name": "d"}, "status": {"phase": "Bound"}}]) is None


def test_condition_carries_the_cause_as_reason_and_message() -> None:
    obs = Observation(generation=1, tls_ready=True, workloads={"elasticsearch": WorkloadState(0, 3, True)},
                      causes={"elasticsearch": ("Unschedulable", "pod es-0: 0/3 nodes are available")})
    conditions = {c.type: c for c in make_status(obs, [], NOW).conditions}
    es = conditions["ElasticsearchReady"]
    assert es.status == "False" and es.reason == "Unschedulable"
    assert es.message == "elasticsearch: 0/3 ready (pod es-0: 0/3 nodes are available)"


def test_a_ca_bundle_copy_in_an_agents_namespace_is_labelled_for_the_sweep() -> None:
    import datetime as dt

    from agentobs.pki import make_ca
    from agentobs.render.tls import make_ca_bundle

    owner = owner_of({})
    ca = make_ca("test", dt.datetime(2026, 12, 4, tzinfo=dt.UTC), dt.timedelta(days=1))
    copy = make_ca_bundle(owner, ca, namespace="team-a")["metadata"]
    assert copy["namespace"] == "team-a" and "ownerReferences" not in copy
    assert copy["labels"][ELSEWHERE_LABEL] == "true"
    own = make_ca_bundle(owner, ca)["metadata"]
    assert own["ownerReferences"] and ELSEWHERE_LABEL not in own["labels"]
