"""Prometheus: the HA StatefulSet, its Services, web TLS and basic auth, PDB and NetworkPolicy,
assembled with what it reads and discovers (`render.prometheus_config`: the configuration, the
rule files and the RBAC for discovery).

Every function is pure: `render(owner, material)` returns the manifests, and the same owner always
renders the same objects (the config hash on the pod template rolls the pods when the config or the
rules change). The rules themselves are `render.rules`; alerts go to every Alertmanager peer over
TLS with basic auth. `COMPONENT`, `WEB_PORT` and the `Owner.extra` keys are re-exported from
`prometheus_config` for the modules that import them from here.
"""

from __future__ import annotations

from typing import Any

import yaml

from agentobs.render import alertmanager, collector, egress, fluentd
from agentobs.render.addresses import prometheus_url
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
from agentobs.render.prometheus_config import AGENT_NAMESPACES as AGENT_NAMESPACES
from agentobs.render.prometheus_config import (
    ALERTMANAGER_AUTH_DIR,
    AUTH_DIR,
    RULES_DIR,
    TLS_DIR,
    WEB_USER,
    make_prometheus_configmap,
    make_prometheus_rbac,
    make_rules_configmap,
)
from agentobs.render.prometheus_config import COMPONENT as COMPONENT
from agentobs.render.prometheus_config import OPERATOR_METRICS_TARGET as OPERATOR_METRICS_TARGET
from agentobs.render.prometheus_config import WEB_PORT as WEB_PORT
from agentobs.render.tls import (
    basic_auth_recipe,
    certificate_hash,
    service_dns_names,
    tls_secret_name,
    web_server_config,
)

WEB_AUTH_SUFFIX = "prometheus-web-auth"
WEB_CONFIG_DIR = "/etc/prometheus/web"
GRAFANA_COMPONENT = "grafana"  # spelled here rather than imported: grafana imports this module
PROBE_FILE = "probe.yml"


def enabled(owner: Owner) -> bool:
    return owner.spec.prometheus.enabled


def probe_client_config() -> dict[str, Any]:
    """What the readiness probe's `promtool` uses to reach the web server: the password from the
    mounted file, the CA from the mounted certificate; no credential in the pod spec."""
    return {"basic_auth": {"username": WEB_USER, "password_file": f"{AUTH_DIR}/password"},
            "tls_config": {"ca_file": f"{TLS_DIR}/ca.crt", "server_name": "localhost"}}


def make_web_config_secret(owner: Owner, password_bcrypt: str) -> Manifest:
    """Prometheus' own web server: TLS with the operator's certificate, and basic auth; and the
    readiness probe's client settings."""
    web = web_server_config(TLS_DIR, WEB_USER, password_bcrypt)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(owner, COMPONENT, owner.child_name(f"{COMPONENT}-web-config")),
        "type": "Opaque",
        "stringData": {"web.yml": yaml.safe_dump(web, sort_keys=True),
                       PROBE_FILE: yaml.safe_dump(probe_client_config(), sort_keys=True)},
    }


def readiness_probe() -> dict[str, Any]:
    """Ready once `/-/ready` answers 200, i.e. after the WAL replay and the first config load.

    Every path of the web server needs basic auth, and an httpGet probe can only send a header
    written into the pod spec. The image's own `promtool check ready` reads the password from
    the mounted file instead (`probe_client_config`), over TLS to `localhost`, which the
    certificate names.
    """
    return {"exec": {"command": ["/bin/promtool", "check", "ready", f"--url=https://localhost:{WEB_PORT}",
                                 f"--http.config.file={WEB_CONFIG_DIR}/{PROBE_FILE}"]},
            "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}


def make_prometheus_services(owner: Owner) -> list[Manifest]:
    ports = [{"name": "web", "port": WEB_PORT, "targetPort": "web", "protocol": "TCP"}]
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, COMPONENT, owner.child_name(f"{COMPONENT}-headless")),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": selector_labels(owner, COMPONENT),
            "ports": ports,
        },
    }
    client = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, COMPONENT),
        # The replicas scrape at slightly different instants, so the same query differs a little
        # between them: one client (a Grafana pod) stays on one replica and its panels do not
        # jitter from refresh to refresh. A replica's loss moves the client to the other.
        "spec": {"type": "ClusterIP", "selector": selector_labels(owner, COMPONENT), "ports": ports,
                 "sessionAffinity": "ClientIP"},
    }
    return [headless, client]


def make_prometheus_statefulset(owner: Owner, config_hash: str, cert_hash: str) -> Manifest:
    spec = owner.spec.prometheus
    name = owner.child_name(COMPONENT)
    storage = spec.storage
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": storage.size}},
    }
    if storage.storage_class_name:
        claim_spec["storageClassName"] = storage.storage_class_name
    container = {
        "name": COMPONENT,
        "image": owner.spec.images.prometheus,
        "args": [
            "--config.file=/etc/prometheus/config/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            f"--storage.tsdb.retention.time={spec.retention}",
            f"--web.listen-address=:{WEB_PORT}",
            f"--web.config.file={WEB_CONFIG_DIR}/web.yml",
        ],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [{"name": "web", "containerPort": WEB_PORT, "protocol": "TCP"}],
        "readinessProbe": readiness_probe(),
        # Alive while the listener answers: it opens before the WAL replay, which can take long
        # and must not get the pod killed.
        "livenessProbe": {"tcpSocket": {"port": "web"}, "periodSeconds": 15, "failureThreshold": 6},
        "resources": resources(spec.resources),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/prometheus/config", "readOnly": True},
            {"name": "web-config", "mountPath": WEB_CONFIG_DIR, "readOnly": True},
            {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
            {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True},
            {"name": "rules", "mountPath": RULES_DIR, "readOnly": True},
            *([{"name": "alertmanager-auth", "mountPath": ALERTMANAGER_AUTH_DIR, "readOnly": True}]
              if alertmanager.enabled(owner) else []),
            {"name": "data", "mountPath": "/prometheus"},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(owner, COMPONENT),
        "spec": {
            "serviceName": owner.child_name(f"{COMPONENT}-headless"),
            "replicas": spec.replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector_labels(owner, COMPONENT)},
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Retain" if storage.keep_on_delete else "Delete",
                "whenScaled": "Retain",
            },
            "template": {
                "metadata": {
                    "labels": metadata(owner, COMPONENT)["labels"],
                    "annotations": {CONFIG_HASH_ANNOTATION: config_hash, CERT_HASH_ANNOTATION: cert_hash},
                },
                "spec": {
                    "serviceAccountName": name,
                    "securityContext": pod_security_context(),
                    "topologySpreadConstraints": spread_replicas(owner, COMPONENT),
                    "terminationGracePeriodSeconds": 120,
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": name}},
                        {"name": "web-config", "secret": {"secretName": f"{name}-web-config"}},
                        {"name": "tls", "secret": {"secretName": tls_secret_name(owner, COMPONENT)}},
                        {"name": "auth", "secret": {"secretName": owner.child_name(WEB_AUTH_SUFFIX),
                                                    "items": [{"key": "password", "path": "password"}]}},
                        {"name": "rules", "configMap": {"name": f"{name}-rules"}},
                        *([{"name": "alertmanager-auth",
                            "secret": {"secretName": owner.child_name(alertmanager.WEB_AUTH_SUFFIX),
                                       "items": [{"key": "password", "path": "password"}]}}]
                          if alertmanager.enabled(owner) else []),
                    ],
                },
            },
            "volumeClaimTemplates": [
                {"metadata": {"name": "data", "labels": metadata(owner, COMPONENT)["labels"]},
                 "spec": claim_spec}
            ],
        },
    }


def make_network_policy(owner: Owner) -> Manifest:
    """Ingress from Grafana and the peer replica; egress to what Prometheus scrapes and alerts."""
    ingress = [
        # Grafana queries Prometheus for every dashboard panel; the replicas scrape each
        # other to notice a peer is down.
        {"from": [{"podSelector": {"matchLabels": selector_labels(owner, GRAFANA_COMPONENT)}},
                  {"podSelector": {"matchLabels": selector_labels(owner, COMPONENT)}}],
         "ports": [{"port": WEB_PORT, "protocol": "TCP"}]},
    ]
    out = [egress.dns(), egress.to_component(owner, COMPONENT, WEB_PORT),
           egress.agents(owner, owner.spec.instrumentation.metrics_port), egress.api_server()]
    if alertmanager.enabled(owner):
        out.insert(2, egress.to_component(owner, alertmanager.COMPONENT, alertmanager.WEB_PORT))
    if fluentd.enabled(owner):  # the log pipeline's metrics: this stack's aggregator, the node collector
        out.append(egress.to_component(owner, fluentd.COMPONENT, fluentd.METRICS_PORT))
        if collector_namespace := owner.extra.get(collector.NAMESPACE_EXTRA):
            out.append(egress.to_pods(collector_namespace, collector.selector_labels(), collector.METRICS_PORT))
    port = str(owner.extra.get(OPERATOR_METRICS_TARGET) or "").rpartition(":")[2]
    if port.isdigit():  # the operator's metrics Service: a host of the chart's choosing
        out.append(egress.any_address(int(port)))
    return egress.policy(owner, COMPONENT, ingress, out)


def certificates(owner: Owner) -> dict[str, list[str]]:
    if not enabled(owner):
        return {}
    name = owner.child_name(COMPONENT)
    return {COMPONENT: [*service_dns_names(owner, name, headless=f"{name}-headless"), "localhost"]}


def credentials(owner: Owner) -> list[CredentialRequest]:
    if not enabled(owner):
        return []
    return [CredentialRequest(COMPONENT, WEB_AUTH_SUFFIX, basic_auth_recipe(WEB_USER))]


def endpoints(owner: Owner) -> dict[str, str]:
    return {"prometheus": prometheus_url(owner)} if enabled(owner) else {}


def render(owner: Owner, material: Material) -> list[Manifest]:
    if not enabled(owner):
        return []
    configmap = make_prometheus_configmap(owner)
    rules_configmap = make_rules_configmap(owner)
    web_config = make_web_config_secret(owner, material.credentials[WEB_AUTH_SUFFIX]["password.bcrypt"])
    # Prometheus reads its config and rules only at start (no reloader runs beside it), so a change
    # of either rolls the pods.
    config_hash = content_hash(configmap["data"], rules_configmap["data"], web_config["stringData"])
    return [
        *make_prometheus_rbac(owner),
        configmap,
        rules_configmap,
        web_config,
        *make_prometheus_services(owner),
        make_prometheus_statefulset(owner, config_hash, certificate_hash(material, COMPONENT)),
        *disruption_budgets(owner, COMPONENT, owner.spec.prometheus.replicas),
        make_network_policy(owner),
    ]
