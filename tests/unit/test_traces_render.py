"""The traces and logs side as rendered: Elasticsearch, retention, Jaeger v2 and Fluentd.

Properties over specs rather than golden text (the golden files cover the whole stack): what
the spec asks for lands where the programs read it, nothing secret lands in a ConfigMap, and an
external Elasticsearch replaces every provisioned piece of it.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import bcrypt
import pytest
import yaml
from pydantic import ValidationError

from agentobs.api.spec import AgentObservabilitySpec
from agentobs.pki import KeyPair
from agentobs.render import (
    Material,
    Owner,
    certificate_requests,
    credential_requests,
    elasticsearch,
    endpoints,
    es_access,
    fluentd,
    jaeger,
    make_stack,
    retention,
)
from agentobs.render.common import OWNER_LABEL

UID = "00000000-0000-0000-0000-000000000042"
EXTERNAL = {"url": "https://es.example.org:9243/", "credentialsSecret": "team-es", "caSecret": "team-es-ca"}
Objects = dict[tuple[str, str], dict[str, Any]]


def owner_of(spec: dict[str, Any], name: str = "demo", namespace: str = "agents") -> Owner:
    return Owner(name=name, namespace=namespace, uid=UID, spec=AgentObservabilitySpec.model_validate(spec))


def secret_value(suffix: str, key: str) -> str:
    """A distinctive value per credential, so a leak is found by searching for it."""
    return f"SECRET-{suffix}-{key}-zq81"


def material_for(owner: Owner) -> Material:
    def pair(name: str) -> KeyPair:
        return KeyPair(cert_pem=f"-----{name} CERT-----\n".encode(), key_pem=f"-----{name} KEY-----\n".encode())

    def value(suffix: str, key: str, recipe: str) -> str:
        kind, _, arg = recipe.partition(":")
        if kind == "literal":
            return arg
        if kind == "bcrypt":
            return "$2b$10$" + "x" * 53 + suffix  # a well-formed prefix; the body is never parsed
        return secret_value(suffix, key)

    return Material(
        ca=pair("ca"),
        certs={c: pair(c) for c in certificate_requests(owner)},
        credentials={r.suffix: {k: value(r.suffix, k, v) for k, v in r.recipe.items()}
                     for r in credential_requests(owner)},
    )


def render(spec: dict[str, Any]) -> Objects:
    owner = owner_of(spec)
    return {(o["kind"], o["metadata"]["name"]): o for o in make_stack(owner, material_for(owner))}


def config_of(objects: Objects, component: str) -> dict[str, Any]:
    return dict(yaml.safe_load(objects[("ConfigMap", f"demo-{component}")]["data"]["config.yaml"]))


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    template = spec["jobTemplate"]["spec"]["template"] if obj["kind"] == "CronJob" else spec["template"]
    return dict(template["spec"])


def env_of(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in pod_spec(obj)["containers"][0]["env"]}


# --- Elasticsearch -----------------------------------------------------------------------------------

@pytest.mark.parametrize("nodes", [3, 5, 7])
def test_seed_hosts_and_initial_masters_are_the_pods(nodes: int) -> None:
    objects = render({"elasticsearch": {"nodes": nodes}})
    sts = objects[("StatefulSet", "demo-elasticsearch")]
    config = yaml.safe_load(objects[("ConfigMap", "demo-elasticsearch")]["data"]["elasticsearch.yml"])
    pods = [f"demo-elasticsearch-{i}" for i in range(nodes)]
    assert sts["spec"]["replicas"] == nodes
    assert config["cluster.initial_master_nodes"] == pods
    assert config["discovery.seed_hosts"] == [f"{p}.{sts['spec']['serviceName']}" for p in pods]
    assert config["node.name"] == "${POD_NAME}"
    assert config["node.store.allow_mmap"] is False


@pytest.mark.parametrize("nodes", range(1, 12))
def test_an_even_or_too_small_cluster_is_never_rendered(nodes: int) -> None:
    try:
        objects = render({"elasticsearch": {"nodes": nodes}})
    except ValidationError:
        assert nodes < 3 or nodes % 2 == 0
        return
    assert nodes >= 3 and nodes % 2 == 1
    assert objects[("StatefulSet", "demo-elasticsearch")]["spec"]["replicas"] == nodes


def test_elasticsearch_is_hardened_without_privileged_init() -> None:
    objects = render({"elasticsearch": {"heap": "2g", "resources": {"limits": {"memory": "4Gi"}}}})
    pod = pod_spec(objects[("StatefulSet", "demo-elasticsearch")])
    for container in pod["initContainers"] + pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        assert "privileged" not in sc and sc["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert env_of(objects[("StatefulSet", "demo-elasticsearch")])["ES_JAVA_OPTS"]["value"] == "-Xms2g -Xmx2g"
    assert objects[("PodDisruptionBudget", "demo-elasticsearch")]["spec"]["maxUnavailable"] == 1


def test_elasticsearch_certificate_covers_every_pod_and_the_service() -> None:
    names = certificate_requests(owner_of({}))["elasticsearch"]
    assert "*.demo-elasticsearch-headless.agents.svc" in names
    assert "demo-elasticsearch.agents.svc" in names and "localhost" in names


def test_file_realm_has_one_user_per_client_with_hashes_elasticsearch_accepts() -> None:
    owner = owner_of({})
    password = "generated-password-1"
    python_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    assert python_hash.startswith("$2b$")
    material = material_for(owner)
    creds = {k: dict(v) for k, v in material.credentials.items()}
    creds["elasticsearch-jaeger"]["password.bcrypt"] = python_hash
    users_secret = elasticsearch.make_users_secret(owner, Material(ca=material.ca, certs=material.certs,
                                                                   credentials=creds))
    users = dict(line.split(":", 1) for line in users_secret["stringData"]["users"].splitlines())
    assert set(users) == set(es_access.CLIENTS)
    assert users["jaeger"].startswith("$2a$")  # the only bcrypt prefix Elasticsearch recognises
    assert bcrypt.checkpw(password.encode(), users["jaeger"].encode())
    roles = dict(line.split(":", 1) for line in users_secret["stringData"]["users_roles"].splitlines())
    assert roles == {f"agentobs_{c}": c for c in es_access.CLIENTS}
    grafana_secret = owner.child_name("elasticsearch-grafana")
    assert any(r.suffix == "elasticsearch-grafana" and {"username", "password"} <= set(r.recipe)
               for r in credential_requests(owner)), grafana_secret


def test_elasticsearch_admits_clients_on_https_and_only_peers_on_transport() -> None:
    policy = render({})[("NetworkPolicy", "demo-elasticsearch")]["spec"]
    http, transport = policy["ingress"]
    clients = {p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in http["from"]}
    assert clients == {"jaeger-collector", "jaeger-query", "fluentd", "grafana", "es-retention"}
    assert http["ports"] == [{"protocol": "TCP", "port": 9200}]
    assert [p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in transport["from"]] == [
        "elasticsearch"]
    assert transport["ports"] == [{"protocol": "TCP", "port": 9300}]


# --- external Elasticsearch -------------------------------------------------------------------------

def test_external_elasticsearch_provisions_nothing_of_it() -> None:
    owner = owner_of({"elasticsearch": {"external": EXTERNAL}})
    assert "elasticsearch" not in certificate_requests(owner)
    assert not [r for r in credential_requests(owner) if r.component == "elasticsearch"]
    objects = render({"elasticsearch": {"external": EXTERNAL}})
    assert not [k for k, o in objects.items()
                if o["metadata"]["labels"].get("app.kubernetes.io/component") == "elasticsearch"]
    assert not [k for k in objects if k[1].startswith("demo-elasticsearch")]


@pytest.mark.parametrize("with_ca", [True, False])
def test_external_elasticsearch_is_where_every_client_goes(with_ca: bool) -> None:
    external = EXTERNAL if with_ca else {k: v for k, v in EXTERNAL.items() if k != "caSecret"}
    objects = render({"elasticsearch": {"external": external}})
    url = "https://es.example.org:9243"
    for component in ("jaeger-collector", "jaeger-query"):
        storage = config_of(objects, component)["extensions"]["jaeger_storage"]["backends"]["elasticsearch"]
        assert storage["elasticsearch"]["server_urls"] == [url]
        assert ("ca_file" in storage["elasticsearch"]["tls"]) is with_ca
    assert f"hosts {url}\n" in objects[("ConfigMap", "demo-fluentd")]["data"]["fluent.conf"]
    assert env_of(objects[("CronJob", "demo-es-retention")])["ES_URL"]["value"] == url
    for key in [("Deployment", "demo-jaeger-collector"), ("Deployment", "demo-jaeger-query"),
                ("StatefulSet", "demo-fluentd"), ("CronJob", "demo-es-retention")]:
        env = env_of(objects[key])
        assert env["ES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "team-es", "key": "password"}
        assert env["ES_USERNAME"]["valueFrom"]["secretKeyRef"] == {"name": "team-es", "key": "username"}
        ca_sources = [v.get("secret", {}).get("secretName") for v in pod_spec(objects[key])["volumes"]
                      if v["name"] == "es-ca"]
        assert ca_sources == (["team-es-ca"] if with_ca else [])


# --- secrets stay out of ConfigMaps -------------------------------------------------------------------

@pytest.mark.parametrize("spec", [{}, {"elasticsearch": {"external": EXTERNAL}}])
def test_no_password_reaches_a_configmap_or_an_env_literal(spec: dict[str, Any]) -> None:
    owner = owner_of(spec)
    material = material_for(owner)
    secrets = [v for values in material.credentials.values() for k, v in values.items() if k != "username"]
    objects = make_stack(owner, material)
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            text = json.dumps(obj["data"])
            assert not [s for s in secrets if s in text], obj["metadata"]["name"]
        if obj["kind"] in ("StatefulSet", "Deployment", "DaemonSet", "CronJob"):
            pod = pod_spec(obj)
            for container in pod.get("initContainers", []) + pod["containers"]:
                literals = [e.get("value", "") for e in container.get("env", [])]
                assert not [s for s in secrets if s in literals], obj["metadata"]["name"]
    # The values do reach the cluster, in Secrets: the search above looks for the right strings.
    if not spec:
        users = next(o for o in objects if o["metadata"]["name"] == "demo-elasticsearch-users")
        assert material.credentials["elasticsearch-fluentd"]["password.bcrypt"][4:] in users["stringData"]["users"]


def test_jaeger_takes_the_password_from_the_environment() -> None:
    objects = render({})
    storage = config_of(objects, "jaeger-collector")["extensions"]["jaeger_storage"]["backends"]
    assert storage["elasticsearch"]["elasticsearch"]["auth"]["basic"] == {
        "username": "${env:ES_USERNAME}", "password": "${env:ES_PASSWORD}"}
    env = env_of(objects[("Deployment", "demo-jaeger-collector")])
    assert env["ES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "demo-elasticsearch-jaeger",
                                                               "key": "password"}


# --- retention ---------------------------------------------------------------------------------------

def test_retention_days_land_in_the_lifecycle_policies() -> None:
    objects = render({"tracing": {"retentionDays": 3}, "logging": {"retentionDays": 5},
                      "audit": {"retentionDays": 400}})
    data = objects[("ConfigMap", "demo-es-retention")]["data"]
    ages = {f: json.loads(data[f"policy-{f}.json"])["policy"]["phases"]["delete"]["min_age"]
            for f in ("traces", "logs", "audit")}
    assert ages == {"traces": "3d", "logs": "5d", "audit": "400d"}
    storage = config_of(objects, "jaeger-query")["extensions"]["jaeger_storage"]["backends"]["elasticsearch"]
    assert storage["elasticsearch"]["max_span_age"] == "72h"


def test_retention_covers_every_index_the_clients_write() -> None:
    owner = owner_of({})
    objects = render({})
    data = objects[("ConfigMap", "demo-es-retention")]["data"]
    patterns = {line.split()[0]: line.split()[2] for line in data["families"].splitlines()}
    jaeger_prefix = config_of(objects, "jaeger-collector")["extensions"]["jaeger_storage"]["backends"][
        "elasticsearch"]["elasticsearch"]["indices"]["index_prefix"]
    conf = objects[("ConfigMap", "demo-fluentd")]["data"]["fluent.conf"]
    written = {
        "traces": [f"{jaeger_prefix}-jaeger-span-2025-01-31", f"{jaeger_prefix}-jaeger-service-2025-01-31"],
        "logs": [f"{es_access.logs_index_prefix(owner)}-2025.01.31"],
        "audit": [f"{es_access.audit_index_prefix(owner)}-2025.01.31"],
    }
    assert f"logstash_prefix {es_access.logs_index_prefix(owner)}\n" in conf
    assert f"logstash_prefix {es_access.audit_index_prefix(owner)}\n" in conf
    for family, indices in written.items():
        assert all(fnmatch.fnmatchcase(i, patterns[family]) for i in indices), (family, indices)
        template = data.get(f"template-{family}.json")
        if template:
            assert json.loads(template)["template"]["settings"]["index.lifecycle.name"] == \
                retention.policy_name(owner, family)


def test_index_patterns_of_two_resources_never_overlap() -> None:
    demo, other = owner_of({}), owner_of({}, name="demo-logs")
    theirs = [f"{es_access.logs_index_prefix(other)}-2025.01.31", f"{es_access.audit_index_prefix(other)}-x",
              f"{es_access.jaeger_index_prefix(other)}-jaeger-span-2025-01-31"]
    mine = [es_access.logs_index_pattern(demo), es_access.audit_index_pattern(demo),
            es_access.jaeger_index_pattern(demo)]
    assert not [(i, p) for i in theirs for p in mine if fnmatch.fnmatchcase(i, p)]


def test_retention_jobs_are_not_mistaken_for_stray_children() -> None:
    cronjob = render({})[("CronJob", "demo-es-retention")]
    assert OWNER_LABEL in cronjob["metadata"]["labels"]
    assert OWNER_LABEL not in cronjob["spec"]["jobTemplate"]["metadata"]["labels"]
    assert retention.schedule(owner_of({})) == cronjob["spec"]["schedule"]


def test_retention_runs_daily_and_many_stacks_spread_their_runs_over_the_day() -> None:
    """A run a day is enough for daily indices; an hourly run at 1,000 stacks is 1,000 Jobs an hour."""
    slots: dict[tuple[int, int], int] = {}
    for i in range(1000):
        owner = Owner(name="demo", namespace="agents", uid=f"00000000-0000-0000-0000-{i:012d}",
                      spec=AgentObservabilitySpec())
        minute, hour, *days = retention.schedule(owner).split()
        assert days == ["*", "*", "*"]
        assert 0 <= int(minute) < 60 and 0 <= int(hour) < 24
        slots[int(hour), int(minute)] = slots.get((int(hour), int(minute)), 0) + 1
    assert len({hour for hour, _ in slots}) == 24
    assert max(slots.values()) <= 6  # 1,440 slots for 1,000 stacks: no pile-up at one minute


# --- Jaeger ------------------------------------------------------------------------------------------

def test_autoscaler_only_when_enabled_and_then_it_owns_the_replicas() -> None:
    fixed = render({"tracing": {"collector": {"replicas": 3}}})
    assert not [k for k in fixed if k[0] == "HorizontalPodAutoscaler"]
    assert fixed[("Deployment", "demo-jaeger-collector")]["spec"]["replicas"] == 3
    scaled = render({"tracing": {"collector": {"autoscaling": {"enabled": True, "minReplicas": 2,
                                                               "maxReplicas": 9}}}})
    hpa = scaled[("HorizontalPodAutoscaler", "demo-jaeger-collector")]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 9)
    assert hpa["scaleTargetRef"]["name"] == "demo-jaeger-collector"
    assert "replicas" not in scaled[("Deployment", "demo-jaeger-collector")]["spec"]


def test_collector_receives_otlp_over_tls_and_query_serves_tls() -> None:
    objects = render({"tracing": {"queryReplicas": 2}})
    protocols = config_of(objects, "jaeger-collector")["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317") and protocols["http"]["endpoint"].endswith(":4318")
    assert all(p["tls"]["cert_file"] and p["tls"]["key_file"] for p in protocols.values())
    query = config_of(objects, "jaeger-query")["extensions"]["jaeger_query"]
    assert query["http"]["endpoint"].endswith(":16686") and query["http"]["tls"]["key_file"]
    assert objects[("Deployment", "demo-jaeger-query")]["spec"]["replicas"] == 2
    assert endpoints(owner_of({})).items() >= {"otlpGrpc": "https://demo-jaeger-collector.agents.svc:4317",
                                               "otlpHttp": "https://demo-jaeger-collector.agents.svc:4318"}.items()


def test_collector_admits_agents_anywhere_and_query_only_grafana() -> None:
    objects = render({})
    collector = objects[("NetworkPolicy", "demo-jaeger-collector")]["spec"]["ingress"]
    assert collector == [{"from": [{"namespaceSelector": {}}],
                          "ports": [{"protocol": "TCP", "port": 4317}, {"protocol": "TCP", "port": 4318}]}]
    query = objects[("NetworkPolicy", "demo-jaeger-query")]["spec"]["ingress"]
    assert [p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for p in query[0]["from"]] == ["grafana"]
    assert query[0]["ports"] == [{"protocol": "TCP", "port": 16686}]


# --- Fluentd -----------------------------------------------------------------------------------------

def test_logging_disabled_renders_no_fluentd() -> None:
    objects = render({"logging": {"enabled": False}})
    assert not [k for k, o in objects.items() if o["metadata"]["labels"].get("app.kubernetes.io/name") == "fluentd"]
    assert fluentd.render(owner_of({"logging": {"enabled": False}}), material_for(owner_of({}))) == []


# The collector, the aggregator's pipeline and their Pod Security: tests/unit/test_log_collector_render.py
# and tests/unit/test_log_aggregator_render.py.


def test_each_module_renders_nothing_it_does_not_own() -> None:
    owner = owner_of({})
    material = material_for(owner)
    for module, names in [(jaeger, {"jaeger-collector", "jaeger-query"}), (fluentd, {"fluentd"}),
                          (retention, {"es-retention"}), (elasticsearch, {"elasticsearch"})]:
        assert {o["metadata"]["labels"]["app.kubernetes.io/name"] for o in module.render(owner, material)} == names


def test_a_retention_change_rolls_the_query_only() -> None:
    """Only Jaeger's reader uses max_span_age (its writer never reads it): a retention change used
    to restart the collector too, which for no reason dropped the agents' OTLP connections."""
    before, after = render({"tracing": {"retentionDays": 7}}), render({"tracing": {"retentionDays": 30}})

    def template(objects: dict[Any, Any], component: str) -> Any:
        return objects[("Deployment", f"demo-{component}")]["spec"]["template"]

    assert template(before, "jaeger-collector") == template(after, "jaeger-collector")
    assert template(before, "jaeger-query") != template(after, "jaeger-query")
    storage = config_of(after, "jaeger-query")["extensions"]["jaeger_storage"]["backends"]["elasticsearch"]
    assert storage["elasticsearch"]["max_span_age"] == "720h"
