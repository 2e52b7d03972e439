"""Grafana: Deployment, Service, optional Ingress, provisioned datasources and dashboards, admin
credentials, PDB and NetworkPolicy.

Pure, like every render module. No secret is ever written into a ConfigMap: the provisioning file
names environment variables (`${AGENTOBS_...}`, which Grafana expands when it reads the file) and
the Deployment fills them from the Secrets that hold the values. The datasources reach Prometheus,
Jaeger and Elasticsearch over TLS, trusting the resource's CA (or, for an external Elasticsearch,
the CA the user names).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import yaml

from agentobs.render import dashboards, egress, es_access, prometheus
from agentobs.render.addresses import (
    GRAFANA_PORT,
    JAEGER_QUERY_PORT,
    elasticsearch_url,
    grafana_url,
    jaeger_query_url,
    prometheus_url,
)
from agentobs.render.common import (
    CERT_HASH_ANNOTATION,
    CONFIG_HASH_ANNOTATION,
    CredentialRequest,
    Manifest,
    Material,
    Owner,
    container_security_context,
    content_hash,
    disruption_budgets,
    metadata,
    pod_security_context,
    resources,
    selector_labels,
    spread_replicas,
)
from agentobs.render.tls import CA_BUNDLE_KEY, ca_bundle_name, certificate_hash, service_dns_names, tls_secret_name

COMPONENT = "grafana"
PORT = GRAFANA_PORT
ADMIN_SUFFIX = "grafana-admin"
ADMIN_USER = "admin"
UID = 472  # the grafana image's user
TLS_DIR = "/etc/grafana/tls"
PROVISIONING_DIR = "/etc/grafana/provisioning"
DASHBOARDS_DIR = "/etc/grafana/dashboards"
DATA_DIR = "/var/lib/grafana"

DATASOURCE_UIDS = {"prometheus": dashboards.PROMETHEUS_UID, "jaeger": "agentobs-jaeger",
                   "logs": "agentobs-logs", "audit": "agentobs-audit"}


def admin_secret_name(owner: Owner) -> str:
    return owner.spec.grafana.admin_secret or owner.child_name(ADMIN_SUFFIX)


def _secret_env(name: str, secret: str, key: str, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def _configmap_env(name: str, configmap: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"configMapKeyRef": {"name": configmap, "key": key}}}


def datasource_env(owner: Owner) -> list[dict[str, Any]]:
    """Environment variables the datasources file refers to, each from where its value is kept."""
    external = owner.spec.elasticsearch.external
    env = [_configmap_env("AGENTOBS_CA_CERT", ca_bundle_name(owner), CA_BUNDLE_KEY)]
    if prometheus.enabled(owner):
        env += [
            _secret_env("AGENTOBS_PROMETHEUS_USER", owner.child_name(prometheus.WEB_AUTH_SUFFIX), "username"),
            _secret_env("AGENTOBS_PROMETHEUS_PASSWORD", owner.child_name(prometheus.WEB_AUTH_SUFFIX), "password"),
        ]
    # Optional: Grafana starts (with a failing Elasticsearch datasource) while that Secret is
    # missing, rather than not at all: it is made by another component, or named by the user.
    if not es_access.in_use(owner):
        return env
    es_secret = es_access.credentials_secret(owner, COMPONENT)
    env += [_secret_env("AGENTOBS_ELASTICSEARCH_USER", es_secret, es_access.USERNAME_KEY, optional=True),
            _secret_env("AGENTOBS_ELASTICSEARCH_PASSWORD", es_secret, es_access.PASSWORD_KEY, optional=True)]
    if external is None:
        env.append(_configmap_env("AGENTOBS_ELASTICSEARCH_CA", ca_bundle_name(owner), CA_BUNDLE_KEY))
    elif external.ca_secret:
        env.append(_secret_env("AGENTOBS_ELASTICSEARCH_CA", external.ca_secret, CA_BUNDLE_KEY, optional=True))
    return env


def _trusting(env_var: str) -> tuple[dict[str, Any], dict[str, str]]:
    return {"tlsAuthWithCACert": True}, {"tlsCACert": f"${{{env_var}}}"}


def _elasticsearch(owner: Owner, name: str, uid: str, index: str) -> dict[str, Any]:
    """A datasource over the index pattern `index` (Fluentd's logstash format: `@timestamp`)."""
    external = owner.spec.elasticsearch.external
    json_data: dict[str, Any] = {"index": index, "timeField": "@timestamp"}
    secure = {"basicAuthPassword": "${AGENTOBS_ELASTICSEARCH_PASSWORD}"}
    if external is None or external.ca_secret:
        # An external cluster without a named CA is trusted through the system roots.
        json_part, secure_part = _trusting("AGENTOBS_ELASTICSEARCH_CA")
        json_data |= json_part
        secure |= secure_part
    return {"name": name, "uid": uid, "type": "elasticsearch", "access": "proxy",
            "url": elasticsearch_url(owner), "editable": False,
            "basicAuth": True, "basicAuthUser": "${AGENTOBS_ELASTICSEARCH_USER}",
            "jsonData": json_data, "secureJsonData": secure}


def datasources(owner: Owner) -> dict[str, Any]:
    """One datasource per store the stack runs: a component switched off has none."""
    ca_json, ca_secure = _trusting("AGENTOBS_CA_CERT")
    out: list[dict[str, Any]] = []
    if prometheus.enabled(owner):
        out.append({"name": "Prometheus", "uid": DATASOURCE_UIDS["prometheus"], "type": "prometheus",
                    "access": "proxy", "url": prometheus_url(owner), "isDefault": True, "editable": False,
                    "basicAuth": True, "basicAuthUser": "${AGENTOBS_PROMETHEUS_USER}",
                    "jsonData": {**ca_json, "httpMethod": "POST"},
                    "secureJsonData": {**ca_secure, "basicAuthPassword": "${AGENTOBS_PROMETHEUS_PASSWORD}"}})
    if owner.spec.tracing.enabled:
        out.append({"name": "Jaeger", "uid": DATASOURCE_UIDS["jaeger"], "type": "jaeger", "access": "proxy",
                    "url": jaeger_query_url(owner), "editable": False,
                    "jsonData": {**ca_json, "tracesToLogsV2": {"datasourceUid": DATASOURCE_UIDS["logs"],
                                                               "filterByTraceID": True}},
                    "secureJsonData": dict(ca_secure)})
    if es_access.in_use(owner):
        out += [_elasticsearch(owner, "Agent logs", DATASOURCE_UIDS["logs"], es_access.logs_index_pattern(owner)),
                _elasticsearch(owner, "Agent audit records", DATASOURCE_UIDS["audit"],
                               es_access.audit_index_pattern(owner))]
    return {"apiVersion": 1, "datasources": out}


def dashboard_provider() -> dict[str, Any]:
    return {"apiVersion": 1, "providers": [{
        "name": "agentobs", "folder": "agentobs", "type": "file", "disableDeletion": True,
        "allowUiUpdates": False, "options": {"path": DASHBOARDS_DIR},
    }]}


def make_config_maps(owner: Owner) -> list[Manifest]:
    provisioning = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, COMPONENT, owner.child_name(f"{COMPONENT}-provisioning")),
        "data": {"datasources.yaml": yaml.safe_dump(datasources(owner), sort_keys=False),
                 "dashboards.yaml": yaml.safe_dump(dashboard_provider(), sort_keys=False)},
    }
    boards = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, COMPONENT, owner.child_name(f"{COMPONENT}-dashboards")),
        "data": dashboards.dashboard_files(),
    }
    return [provisioning, boards]


def oidc_env(owner: Owner) -> list[dict[str, Any]]:
    oidc = owner.spec.grafana.oidc
    if oidc is None:
        return []
    prefix = "GF_AUTH_GENERIC_OAUTH_"
    env = [
        {"name": f"{prefix}ENABLED", "value": "true"},
        {"name": f"{prefix}NAME", "value": "OIDC"},
        {"name": f"{prefix}CLIENT_ID", "value": oidc.client_id},
        # Grafana's generic OAuth does no discovery: the endpoints come from the spec.
        {"name": f"{prefix}AUTH_URL", "value": oidc.auth_url},
        {"name": f"{prefix}TOKEN_URL", "value": oidc.token_url},
        {"name": f"{prefix}API_URL", "value": oidc.userinfo_url},
        _secret_env(f"{prefix}CLIENT_SECRET", oidc.client_secret.name, oidc.client_secret.key),
        {"name": f"{prefix}SCOPES", "value": "openid email profile"},
        {"name": f"{prefix}USE_PKCE", "value": "true"},
        {"name": f"{prefix}ALLOW_SIGN_UP", "value": "true"},
    ]
    if oidc.allowed_groups:
        env += [{"name": f"{prefix}GROUPS_ATTRIBUTE_PATH", "value": "groups"},
                # A JSON list: Grafana splits any other value at commas and spaces, so the group
                # "Platform Admins" would have let in everyone in "Platform" and everyone in "Admins".
                {"name": f"{prefix}ALLOWED_GROUPS", "value": json.dumps(oidc.allowed_groups)}]
    return env


def container_env(owner: Owner) -> list[dict[str, Any]]:
    settings = {
        "GF_SERVER_PROTOCOL": "https",
        "GF_SERVER_HTTP_PORT": str(PORT),
        "GF_SERVER_CERT_FILE": f"{TLS_DIR}/tls.crt",
        "GF_SERVER_CERT_KEY": f"{TLS_DIR}/tls.key",
        "GF_SERVER_ROOT_URL": grafana_url(owner) + "/",
        "GF_PATHS_PROVISIONING": PROVISIONING_DIR,
        "GF_PATHS_DATA": DATA_DIR,
        "GF_LOG_MODE": "console",
        "GF_AUTH_ANONYMOUS_ENABLED": "false",
        "GF_USERS_ALLOW_SIGN_UP": "false",
        "GF_SECURITY_COOKIE_SECURE": "true",
        "GF_SECURITY_DISABLE_GRAVATAR": "true",
        # Nothing is fetched from the internet: no usage reports, update checks or plugin downloads.
        "GF_ANALYTICS_REPORTING_ENABLED": "false",
        "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
        "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false",
        "GF_PLUGINS_PREINSTALL_DISABLED": "true",
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH": f"{DASHBOARDS_DIR}/agent-monitoring.json",
    }
    admin = admin_secret_name(owner)
    return [
        *({"name": k, "value": v} for k, v in settings.items()),
        _secret_env("GF_SECURITY_ADMIN_USER", admin, "admin-user"),
        _secret_env("GF_SECURITY_ADMIN_PASSWORD", admin, "admin-password"),
        *datasource_env(owner),
        *oidc_env(owner),
    ]


def make_deployment(owner: Owner, config_hash: str, cert_hash: str) -> Manifest:
    name = owner.child_name(COMPONENT)
    probe = {"httpGet": {"path": "/api/health", "port": "https", "scheme": "HTTPS"}}
    container = {
        "name": COMPONENT,
        "image": owner.spec.images.grafana,
        "env": container_env(owner),
        "ports": [{"name": "https", "containerPort": PORT, "protocol": "TCP"}],
        # /api/health answers without a login, so the probes need no credentials.
        "readinessProbe": {**probe, "periodSeconds": 5},
        "livenessProbe": {**probe, "periodSeconds": 15, "failureThreshold": 6, "initialDelaySeconds": 30},
        "resources": resources(owner.spec.grafana.resources),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "provisioning", "mountPath": PROVISIONING_DIR, "readOnly": True},
            {"name": "dashboards", "mountPath": DASHBOARDS_DIR, "readOnly": True},
            {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (an emptyDir, private to the pod)
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(owner, COMPONENT),
        "spec": {
            "replicas": owner.spec.grafana.replicas,
            "selector": {"matchLabels": selector_labels(owner, COMPONENT)},
            "template": {
                "metadata": {
                    "labels": metadata(owner, COMPONENT)["labels"],
                    "annotations": {CONFIG_HASH_ANNOTATION: config_hash, CERT_HASH_ANNOTATION: cert_hash},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(UID),
                    "topologySpreadConstraints": spread_replicas(owner, COMPONENT),
                    "containers": [container],
                    "volumes": [
                        {"name": "provisioning", "configMap": {"name": f"{name}-provisioning", "items": [
                            {"key": "datasources.yaml", "path": "datasources/agentobs.yaml"},
                            {"key": "dashboards.yaml", "path": "dashboards/agentobs.yaml"},
                        ]}},
                        {"name": "dashboards", "configMap": {"name": f"{name}-dashboards"}},
                        {"name": "tls", "secret": {"secretName": tls_secret_name(owner, COMPONENT)}},
                        # Everything Grafana stores is provisioned or derived again at start.
                        {"name": "data", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def make_service(owner: Owner) -> Manifest:
    # Each replica has its own database (an emptyDir: sessions, preferences), and a login session
    # lives in the database of the replica that made it: a client stays on one replica. Behind an
    # Ingress the controller's own affinity (a cookie) does the same for people outside the cluster.
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, COMPONENT),
        "spec": {"type": "ClusterIP", "selector": selector_labels(owner, COMPONENT),
                 "ports": [{"name": "https", "port": PORT, "targetPort": "https", "protocol": "TCP"}],
                 "sessionAffinity": "ClientIP"},
    }


def make_ingress(owner: Owner, host: str) -> Manifest:
    """Grafana on `host`, re-encrypted to the pod with the certificate that also covers `host`."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata(owner, COMPONENT, annotations={
            "nginx.ingress.kubernetes.io/backend-protocol": "HTTPS"}),
        "spec": {
            "tls": [{"hosts": [host], "secretName": tls_secret_name(owner, COMPONENT)}],
            "rules": [{"host": host, "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": owner.child_name(COMPONENT), "port": {"name": "https"}}},
            }]}}],
        },
    }


def make_network_policy(owner: Owner) -> Manifest:
    """Ingress from Grafana's users; egress to its datasources."""
    if owner.spec.grafana.ingress_host:
        # The ingress controller runs in a namespace we cannot know; Grafana's own login and TLS
        # guard the port, as they would behind any ingress.
        users: dict[str, Any] = {"ports": [{"port": PORT, "protocol": "TCP"}]}
    else:
        # People reach Grafana from inside the namespace (port-forward or a pod of their own).
        users = {"from": [{"podSelector": {}}], "ports": [{"port": PORT, "protocol": "TCP"}]}
    # Out: the datasources of the components that run, and the OIDC provider.
    out = [egress.dns(), *([egress.elasticsearch(owner)] if es_access.in_use(owner) else [])]
    if prometheus.enabled(owner):
        out.append(egress.to_component(owner, prometheus.COMPONENT, prometheus.WEB_PORT))
    if owner.spec.tracing.enabled:
        out.append(egress.to_component(owner, "jaeger-query", JAEGER_QUERY_PORT))
    if owner.spec.grafana.oidc is not None:
        out.append(egress.any_address(*sorted({urlsplit(u).port or 443 for u in (
            owner.spec.grafana.oidc.token_url, owner.spec.grafana.oidc.userinfo_url)})))
    return egress.policy(owner, COMPONENT, [users], out)


def enabled(owner: Owner) -> bool:
    return owner.spec.grafana.enabled


def certificates(owner: Owner) -> dict[str, list[str]]:
    if not enabled(owner):
        return {}
    names = service_dns_names(owner, owner.child_name(COMPONENT))
    host = owner.spec.grafana.ingress_host
    return {COMPONENT: [*names, host] if host else names}


def credentials(owner: Owner) -> list[CredentialRequest]:
    if not enabled(owner) or owner.spec.grafana.admin_secret:
        return []
    return [CredentialRequest(COMPONENT, ADMIN_SUFFIX,
                              {"admin-user": f"literal:{ADMIN_USER}", "admin-password": "random"})]


def endpoints(owner: Owner) -> dict[str, str]:
    return {"grafana": grafana_url(owner)} if enabled(owner) else {}


def render(owner: Owner, material: Material) -> list[Manifest]:
    if not enabled(owner):
        return []
    config_maps = make_config_maps(owner)
    config_hash = content_hash([c["data"] for c in config_maps], container_env(owner))
    cert_hash = certificate_hash(material, COMPONENT, material.ca.cert_pem.decode())
    out = [*config_maps, make_service(owner), make_deployment(owner, config_hash, cert_hash)]
    host = owner.spec.grafana.ingress_host
    if host:
        out.append(make_ingress(owner, host))
    return [*out, *disruption_budgets(owner, COMPONENT, owner.spec.grafana.replicas), make_network_policy(owner)]
