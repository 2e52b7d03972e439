"""Properties of the rendered metrics side: alert rules, Prometheus wiring, Alertmanager, Grafana."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentobs.api.spec import AgentObservabilitySpec
from agentobs.pki import KeyPair
from agentobs.render import Material, Owner, certificate_requests, credential_requests, make_stack, rules

RUNBOOKS = Path(__file__).resolve().parents[2] / "docs" / "runbooks.md"
SECRET_VALUE = "s3cr3t-{suffix}-{key}"


def _owner(spec: dict[str, Any] | None = None) -> Owner:
    return Owner(name="demo", namespace="agents", uid="uid-1", spec=AgentObservabilitySpec.model_validate(spec or {}))


def _material(owner: Owner) -> Material:
    """Distinct, recognisable values for every generated secret, so a leak is found by search."""

    def pair(name: str) -> KeyPair:
        return KeyPair(cert_pem=f"{name} cert\n".encode(), key_pem=f"{name} KEY\n".encode())

    return Material(
        ca=pair("ca"),
        certs={c: pair(c) for c in certificate_requests(owner)},
        credentials={
            r.suffix: {k: SECRET_VALUE.format(suffix=r.suffix, key=k) for k in r.recipe}
            for r in credential_requests(owner)
        },
    )


def _objects(spec: dict[str, Any] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    owner = _owner(spec)
    return {(o["kind"], o["metadata"]["name"]): o for o in make_stack(owner, _material(owner))}


def _container(objects: dict[tuple[str, str], dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return dict(objects[(kind, name)]["spec"]["template"]["spec"]["containers"][0])


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container["env"]}


# --- rules ---------------------------------------------------------------------------------------


def test_every_alert_has_summary_description_and_a_runbook_section() -> None:
    anchors = {re.sub(r"[^a-z0-9-]", "", h.lower()) for h in re.findall(r"^## (.+)$", RUNBOOKS.read_text(), re.M)}
    alerts = [r for g in rules.built_in_rules(_owner())["groups"] for r in g["rules"]]
    assert len(alerts) >= 11
    for alert in alerts:
        annotations = alert["annotations"]
        assert annotations["summary"] and annotations["description"], alert["alert"]
        assert annotations["runbook_url"] == f"docs/runbooks.md#{alert['alert'].lower()}"
        assert alert["alert"].lower() in anchors, f"docs/runbooks.md has no section for {alert['alert']}"
        assert alert["labels"]["severity"] in ("warning", "critical")


def test_runbook_links_point_where_the_operator_says_the_runbooks_are_published() -> None:
    base = "https://docs.example.com/agentobs/runbooks.md"
    owner = Owner(name="demo", namespace="agents", uid="uid-1", spec=AgentObservabilitySpec.model_validate(
        {"logging": {"enabled": True}}), extra={rules.RUNBOOK_URL: base})
    alerts = [r for g in rules.built_in_rules(owner)["groups"] for r in g["rules"] if "alert" in r]
    assert {a["annotations"]["runbook_url"] for a in alerts} == {f"{base}#{a['alert'].lower()}" for a in alerts}


def test_certificate_alert_is_scoped_to_this_resource_and_follows_renew_before() -> None:
    alerts = {
        r["alert"]: r
        for g in rules.built_in_rules(_owner({"tls": {"certificateLifetime": "48h", "renewBefore": "16h"}}))["groups"]
        for r in g["rules"]
    }
    expr = alerts["AgentObsCertificateNearExpiry"]["expr"]
    assert 'namespace="agents"' in expr and 'resource="demo"' in expr
    assert expr.endswith(f"< {8 * 3600}")


def test_certificate_alert_follows_the_derived_renewal_window() -> None:
    alerts = {r["alert"]: r for g in rules.built_in_rules(_owner({"tls": {"certificateLifetime": "48h"}}))["groups"]
              for r in g["rules"]}
    assert alerts["AgentObsCertificateNearExpiry"]["expr"].endswith(f"< {8 * 3600}")


def _rule_files(spec: dict[str, Any]) -> dict[str, Any]:
    cm = _objects(spec)[("ConfigMap", "demo-prometheus-rules")]
    return {name: yaml.safe_load(text) for name, text in cm["data"].items()}


def test_alert_rules_off_removes_the_built_in_rules() -> None:
    assert set(_rule_files({})) == {rules.BUILT_IN_FILE}
    assert _rule_files({"prometheus": {"alertRules": False}}) == {}


def test_extra_rules_are_included_as_given() -> None:
    extra = [{"name": "team", "rules": [{"alert": "Mine", "expr": "vector(1)", "labels": {"team": "x"}}]}]
    files = _rule_files({"prometheus": {"alertRules": False, "extraRules": extra}})
    assert files == {rules.EXTRA_FILE: {"groups": extra}}


def _prometheus_hash(spec: dict[str, Any]) -> str:
    sts = _objects(spec)[("StatefulSet", "demo-prometheus")]
    return str(sts["spec"]["template"]["metadata"]["annotations"]["agentobs.io/config-hash"])


def test_rule_changes_roll_prometheus() -> None:
    assert _prometheus_hash({}) != _prometheus_hash({"prometheus": {"alertRules": False}})
    extra = [{"name": "g", "rules": [{"record": "r", "expr": "vector(1)"}]}]
    assert _prometheus_hash({}) != _prometheus_hash({"prometheus": {"extraRules": extra}})
    assert _prometheus_hash({}) == _prometheus_hash({"prometheus": {"alertmanager": {"replicas": 5}}})


# --- Prometheus wiring ----------------------------------------------------------------------------


def test_prometheus_loads_the_rules_and_alerts_every_alertmanager_peer_over_tls() -> None:
    objects = _objects()
    config = yaml.safe_load(objects[("ConfigMap", "demo-prometheus")]["data"]["prometheus.yml"])
    mounts = {m["mountPath"]: m["name"] for m in _container(objects, "StatefulSet", "demo-prometheus")["volumeMounts"]}
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"] and mounts["/etc/prometheus/rules"] == "rules"
    (am,) = config["alerting"]["alertmanagers"]
    assert am["scheme"] == "https" and am["tls_config"]["ca_file"] == "/etc/prometheus/tls/ca.crt"
    assert am["basic_auth"]["password_file"].startswith("/etc/prometheus/alertmanager-auth/")
    address = next(r for r in am["relabel_configs"] if r.get("target_label") == "__address__")
    assert address["replacement"] == "$1.demo-alertmanager-headless.agents.svc:9093"
    volumes = {v["name"]: v for v in objects[("StatefulSet", "demo-prometheus")]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["alertmanager-auth"]["secret"]["secretName"] == "demo-alertmanager-web-auth"


def test_operator_scrape_job_only_when_its_address_is_known() -> None:
    from agentobs.render import prometheus_config

    def jobs(extra: dict[str, Any]) -> list[str]:
        owner = Owner(name="demo", namespace="agents", uid="u", spec=AgentObservabilitySpec(), extra=extra)
        return [j["job_name"] for j in prometheus_config.make_prometheus_config(owner)["scrape_configs"]]

    assert "agentobs-operator" not in jobs({})
    assert "agentobs-operator" in jobs({prometheus_config.OPERATOR_METRICS_TARGET: "op.system.svc:8080"})


def test_every_operator_replica_is_scraped_when_the_address_is_a_name() -> None:
    """Only the leader exports a stack's series: a Service address would pin a scrape to one replica."""
    from agentobs.render.prometheus_config import operator_scrape

    assert operator_scrape("op-pods.system.svc:8080") == {
        "job_name": "agentobs-operator", "dns_sd_configs": [{"names": ["op-pods.system.svc"], "type": "A",
                                                             "port": 8080}]}
    for address in ("127.0.0.1:9000", "[::1]:9000", "localhost:9000"):
        assert operator_scrape(address) == {"job_name": "agentobs-operator",
                                            "static_configs": [{"targets": [address]}]}, address


def test_the_stack_s_alerts_on_operator_series_take_the_max_over_replicas() -> None:
    alerts = {r["alert"]: r for g in rules.built_in_rules(_owner())["groups"] for r in g["rules"]}
    for name in ("AgentObsCertificateNearExpiry", "AgentObsStackDegraded"):
        assert alerts[name]["expr"].startswith("max without (instance) ("), name


# --- Alertmanager ---------------------------------------------------------------------------------


@pytest.mark.parametrize("replicas", [1, 3, 5])
def test_alertmanager_peers_match_replicas(replicas: int) -> None:
    objects = _objects({"prometheus": {"alertmanager": {"replicas": replicas}}})
    sts = objects[("StatefulSet", "demo-alertmanager")]
    assert sts["spec"]["replicas"] == replicas
    peers = [
        a.split("=", 1)[1]
        for a in sts["spec"]["template"]["spec"]["containers"][0]["args"]
        if a.startswith("--cluster.peer=")
    ]
    assert peers == [f"demo-alertmanager-{i}.demo-alertmanager-headless:9094" for i in range(replicas)]
    assert objects[("Service", "demo-alertmanager-headless")]["spec"]["publishNotReadyAddresses"] is True


def test_alertmanager_defaults_to_a_null_receiver_config_map() -> None:
    objects = _objects()
    config = yaml.safe_load(objects[("ConfigMap", "demo-alertmanager")]["data"]["alertmanager.yml"])
    assert config["route"]["receiver"] == "null" and config["receivers"] == [{"name": "null"}]
    volumes = objects[("StatefulSet", "demo-alertmanager")]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": "demo-alertmanager"}} in volumes


def test_alertmanager_mounts_the_receivers_secret_when_given() -> None:
    objects = _objects({"prometheus": {"alertmanager": {"receiversSecret": {"name": "team-am", "key": "am.yml"}}}})
    assert ("ConfigMap", "demo-alertmanager") not in objects
    volumes = objects[("StatefulSet", "demo-alertmanager")]["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "config",
        "secret": {"secretName": "team-am", "items": [{"key": "am.yml", "path": "alertmanager.yml"}]},
    } in volumes


def test_alertmanager_serves_and_gossips_over_tls() -> None:
    objects = _objects()
    args = _container(objects, "StatefulSet", "demo-alertmanager")["args"]
    assert "--web.config.file=/etc/alertmanager/web/web.yml" in args
    assert "--cluster.tls-config=/etc/alertmanager/web/cluster.yml" in args
    secret = objects[("Secret", "demo-alertmanager-web-config")]["stringData"]
    web, cluster = yaml.safe_load(secret["web.yml"]), yaml.safe_load(secret["cluster.yml"])
    assert web["tls_server_config"]["cert_file"] == "/etc/alertmanager/tls/tls.crt"
    assert list(web["basic_auth_users"]) == ["agentobs"]
    assert cluster["tls_server_config"]["client_auth_type"] == "RequireAndVerifyClientCert"
    assert cluster["tls_client_config"]["server_name"] == "demo-alertmanager-headless.agents.svc"


# --- Grafana --------------------------------------------------------------------------------------


def test_no_secret_value_is_written_into_a_config_map() -> None:
    for spec in (
        {},
        {
            "grafana": {
                "oidc": {
                    "issuerUrl": "https://id.example",
                    "authUrl": "https://id.example/auth",
                    "tokenUrl": "https://id.example/token",
                    "userinfoUrl": "https://id.example/userinfo",
                    "clientId": "grafana",
                    "clientSecret": {"name": "oidc", "key": "secret"},
                }
            }
        },
    ):
        owner = _owner(spec)
        material = _material(owner)
        values = [v for creds in material.credentials.values() for v in creds.values()]
        values += [p.key_pem.decode() for p in (material.ca, *material.certs.values())]
        for obj in make_stack(owner, material):
            if obj["kind"] == "ConfigMap":
                text = yaml.safe_dump(obj["data"])
                leaked = [v for v in values if v.strip() in text]
                assert not leaked, (obj["metadata"]["name"], leaked)


def test_grafana_secrets_come_from_secret_refs_and_every_placeholder_is_defined() -> None:
    objects = _objects()
    env = _env(_container(objects, "Deployment", "demo-grafana"))
    assert env["GF_SECURITY_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "demo-grafana-admin",
        "key": "admin-password",
    }
    assert env["AGENTOBS_PROMETHEUS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "demo-prometheus-web-auth",
        "key": "password",
    }
    assert env["AGENTOBS_ELASTICSEARCH_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "demo-elasticsearch-grafana"
    assert env["AGENTOBS_CA_CERT"]["valueFrom"]["configMapKeyRef"] == {"name": "demo-ca-bundle", "key": "ca.crt"}
    assert env["GF_AUTH_ANONYMOUS_ENABLED"]["value"] == "false" and env["GF_SERVER_PROTOCOL"]["value"] == "https"
    for name, var in env.items():
        if re.search(r"PASSWORD|SECRET", name):
            assert "value" not in var, f"{name} must come from a Secret"
    provisioning = objects[("ConfigMap", "demo-grafana-provisioning")]["data"]["datasources.yaml"]
    placeholders = set(re.findall(r"\$\{(\w+)\}", provisioning))
    assert placeholders and placeholders <= set(env)


def test_grafana_datasources_use_tls_and_the_addresses_module() -> None:
    objects = _objects()
    sources = {
        d["uid"]: d
        for d in yaml.safe_load(objects[("ConfigMap", "demo-grafana-provisioning")]["data"]["datasources.yaml"])[
            "datasources"
        ]
    }
    assert set(sources) == {"agentobs-prometheus", "agentobs-jaeger", "agentobs-logs", "agentobs-audit"}
    assert sources["agentobs-prometheus"]["url"] == "https://demo-prometheus.agents.svc:9090"
    assert sources["agentobs-jaeger"]["url"] == "https://demo-jaeger-query.agents.svc:16686"
    for uid, index in (
        ("agentobs-logs", "agentobs_agents_demo_logs-*"),
        ("agentobs-audit", "agentobs_agents_demo_audit-*"),
    ):
        assert sources[uid]["url"] == "https://demo-elasticsearch.agents.svc:9200"
        assert sources[uid]["jsonData"]["index"] == index
    for source in sources.values():
        assert source["jsonData"]["tlsAuthWithCACert"] is True
        assert source["secureJsonData"]["tlsCACert"].startswith("${")


def test_external_elasticsearch_credentials_and_ca_come_from_the_users_secrets() -> None:
    external = {"url": "https://es.example:9200", "credentialsSecret": "es-creds", "caSecret": "es-ca"}
    env = _env(_container(_objects({"elasticsearch": {"external": external}}), "Deployment", "demo-grafana"))
    assert env["AGENTOBS_ELASTICSEARCH_USER"]["valueFrom"]["secretKeyRef"] == {
        "name": "es-creds",
        "key": "username",
        "optional": True,
    }
    assert env["AGENTOBS_ELASTICSEARCH_CA"]["valueFrom"]["secretKeyRef"] == {
        "name": "es-ca",
        "key": "ca.crt",
        "optional": True,
    }


def test_admin_secret_is_generated_only_when_none_is_named() -> None:
    generated = [r.suffix for r in credential_requests(_owner())]
    assert "grafana-admin" in generated
    owner = _owner({"grafana": {"adminSecret": "my-admin"}})
    assert "grafana-admin" not in [r.suffix for r in credential_requests(owner)]
    env = _env(_container(_objects({"grafana": {"adminSecret": "my-admin"}}), "Deployment", "demo-grafana"))
    assert env["GF_SECURITY_ADMIN_USER"]["valueFrom"]["secretKeyRef"] == {"name": "my-admin", "key": "admin-user"}


def test_oidc_settings_only_when_set() -> None:
    assert not [n for n in _env(_container(_objects(), "Deployment", "demo-grafana")) if "OAUTH" in n]
    oidc = {
        "issuerUrl": "https://id.example",
        "authUrl": "https://id.example/auth",
        "tokenUrl": "https://id.example/token",
        "userinfoUrl": "https://id.example/userinfo",
        "clientId": "grafana",
        "allowedGroups": ["sre", "ml"],
        "clientSecret": {"name": "oidc", "key": "secret"},
    }
    env = _env(_container(_objects({"grafana": {"oidc": oidc}}), "Deployment", "demo-grafana"))
    assert env["GF_AUTH_GENERIC_OAUTH_ENABLED"]["value"] == "true"
    assert env["GF_AUTH_GENERIC_OAUTH_CLIENT_ID"]["value"] == "grafana"
    assert env["GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": "oidc", "key": "secret"}
    assert _grafana_list(env["GF_AUTH_GENERIC_OAUTH_ALLOWED_GROUPS"]["value"]) == ["sre", "ml"]
    assert env["GF_AUTH_GENERIC_OAUTH_TOKEN_URL"]["value"] == "https://id.example/token"
    assert env["GF_AUTH_GENERIC_OAUTH_API_URL"]["value"] == "https://id.example/userinfo"


def _grafana_list(value: str) -> list[str]:
    """How Grafana reads a list setting such as allowed_groups (pkg/util SplitString): a JSON list
    when the value starts with `[`, else the words between commas and white space."""
    if value.strip().startswith("["):
        parsed: list[str] = json.loads(value)
        return parsed
    return value.replace(",", " ").split()


def test_allowed_groups_with_spaces_and_commas_stay_whole() -> None:
    """Joined with commas, the group "Platform Admins" reached Grafana as two groups, letting in
    the members of either."""
    oidc = {"issuerUrl": "https://id.example", "authUrl": "https://id.example/auth",
            "tokenUrl": "https://id.example/token", "userinfoUrl": "https://id.example/userinfo",
            "clientId": "grafana", "clientSecret": {"name": "oidc", "key": "secret"},
            "allowedGroups": ["Platform Admins", "ml, research"]}
    env = _env(_container(_objects({"grafana": {"oidc": oidc}}), "Deployment", "demo-grafana"))
    assert _grafana_list(env["GF_AUTH_GENERIC_OAUTH_ALLOWED_GROUPS"]["value"]) == ["Platform Admins", "ml, research"]


def test_ingress_only_with_a_host_and_the_certificate_covers_it() -> None:
    assert ("Ingress", "demo-grafana") not in _objects()
    objects = _objects({"grafana": {"ingressHost": "grafana.example.com"}})
    ingress = objects[("Ingress", "demo-grafana")]
    assert ingress["spec"]["rules"][0]["host"] == "grafana.example.com"
    assert (
        "grafana.example.com"
        in certificate_requests(_owner({"grafana": {"ingressHost": "grafana.example.com"}}))["grafana"]
    )


def test_three_dashboards_are_provisioned() -> None:
    objects = _objects()
    boards = objects[("ConfigMap", "demo-grafana-dashboards")]["data"]
    assert set(boards) == {"agent-monitoring.json", "llm-performance.json", "audit-compliance.json"}
    provider = yaml.safe_load(objects[("ConfigMap", "demo-grafana-provisioning")]["data"]["dashboards.yaml"])
    assert provider["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"


# --- NetworkPolicies ------------------------------------------------------------------------------


def _allowed(objects: dict[tuple[str, str], dict[str, Any]], target: str) -> list[tuple[Any, int, str]]:
    """(from, port, protocol) triples the NetworkPolicy of component `target` admits."""
    policy = objects[("NetworkPolicy", f"demo-{target}")]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == target
    out = []
    for rule in policy["ingress"]:
        sources = [
            s.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name", "*")
            for s in rule.get("from", [{}])
        ]
        out += [(src, p["port"], p["protocol"]) for src in sources for p in rule["ports"]]
    return out


def test_network_policies_admit_only_the_stack_flows() -> None:
    objects = _objects()
    assert sorted(_allowed(objects, "prometheus")) == [("grafana", 9090, "TCP"), ("prometheus", 9090, "TCP")]
    assert sorted(_allowed(objects, "alertmanager")) == [("alertmanager", 9094, "TCP"), ("prometheus", 9093, "TCP")]
    assert _allowed(objects, "grafana") == [("*", 3000, "TCP")]
    grafana = objects[("NetworkPolicy", "demo-grafana")]["spec"]["ingress"][0]
    assert grafana["from"] == [{"podSelector": {}}], "users in the namespace, nobody outside"
    with_ingress = _objects({"grafana": {"ingressHost": "g.example.com"}})
    assert "from" not in with_ingress[("NetworkPolicy", "demo-grafana")]["spec"]["ingress"][0]
