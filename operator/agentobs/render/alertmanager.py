"""Alertmanager: the gossip cluster that receives the Prometheus alerts, with its Services,
configuration, web TLS and basic auth, TLS on the gossip, PDB and NetworkPolicy.

Pure, like every render module. Receivers come from the Secret key the user names in
`spec.prometheus.alertmanager.receiversSecret`; without one, a default configuration routes every
alert to a receiver that notifies no one, so alerts are still kept, deduplicated across the
cluster and visible in Alertmanager's UI and API.
"""

from __future__ import annotations

from typing import Any

import yaml

from agentobs.render import egress
from agentobs.render.addresses import ALERTMANAGER_CLUSTER_PORT, ALERTMANAGER_PORT, alertmanager_url
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
from agentobs.render.tls import (
    basic_auth_recipe,
    certificate_hash,
    service_dns_names,
    tls_secret_name,
    web_server_config,
)

COMPONENT = "alertmanager"
WEB_PORT = ALERTMANAGER_PORT
CLUSTER_PORT = ALERTMANAGER_CLUSTER_PORT
WEB_AUTH_SUFFIX = "alertmanager-web-auth"
WEB_USER = "agentobs"
CONFIG_FILE = "alertmanager.yml"
CONFIG_DIR = "/etc/alertmanager/config"
WEB_CONFIG_DIR = "/etc/alertmanager/web"
TLS_DIR = "/etc/alertmanager/tls"
DATA_DIR = "/alertmanager"
AUTH_DIR = "/etc/alertmanager/auth"
PROBE_FILE = "probe.yml"
# The component whose pods send alerts; spelled here rather than imported, as prometheus imports us.
PROMETHEUS_COMPONENT = "prometheus"
NULL_RECEIVER = "null"


def enabled(owner: Owner) -> bool:
    """Alertmanager runs only beside the stack's own Prometheus, its one sender."""
    return owner.spec.prometheus.enabled and owner.spec.prometheus.alertmanager.enabled


def headless_name(owner: Owner) -> str:
    return owner.child_name(f"{COMPONENT}-headless")


def peer_addresses(owner: Owner) -> list[str]:
    """Every replica's gossip address: stable pod DNS names through the headless Service."""
    name, headless = owner.child_name(COMPONENT), headless_name(owner)
    return [f"{name}-{i}.{headless}:{CLUSTER_PORT}" for i in range(owner.spec.prometheus.alertmanager.replicas)]


def default_config() -> dict[str, Any]:
    return {
        "route": {
            "receiver": NULL_RECEIVER,
            "group_by": ["alertname", "namespace", "agent"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
        },
        "receivers": [{"name": NULL_RECEIVER}],
    }


def make_config_map(owner: Owner) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, COMPONENT),
        "data": {CONFIG_FILE: yaml.safe_dump(default_config(), sort_keys=False)},
    }


def make_web_config_secret(owner: Owner, password_bcrypt: str) -> Manifest:
    """The web server's TLS and basic auth, and TLS for the gossip between peers."""
    web = web_server_config(TLS_DIR, WEB_USER, password_bcrypt)
    # Mutual TLS between peers: each presents its own certificate (issued for client use too) and
    # accepts only certificates from the resource's CA. Peers dial each other by IP, so the client
    # checks the certificate against the headless Service name it carries.
    cluster = {
        "tls_server_config": {"cert_file": f"{TLS_DIR}/tls.crt", "key_file": f"{TLS_DIR}/tls.key",
                              "client_ca_file": f"{TLS_DIR}/ca.crt",
                              "client_auth_type": "RequireAndVerifyClientCert", "min_version": "TLS12"},
        "tls_client_config": {"cert_file": f"{TLS_DIR}/tls.crt", "key_file": f"{TLS_DIR}/tls.key",
                              "ca_file": f"{TLS_DIR}/ca.crt",
                              "server_name": f"{headless_name(owner)}.{owner.namespace}.svc"},
    }
    # The readiness probe's amtool: the password from the mounted file, never from the pod spec.
    probe = {"basic_auth": {"username": WEB_USER, "password_file": f"{AUTH_DIR}/password"},
             "tls_config": {"ca_file": f"{TLS_DIR}/ca.crt", "server_name": owner.service_host(COMPONENT)}}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(owner, COMPONENT, owner.child_name(f"{COMPONENT}-web-config")),
        "type": "Opaque",
        "stringData": {"web.yml": yaml.safe_dump(web, sort_keys=True),
                       "cluster.yml": yaml.safe_dump(cluster, sort_keys=True),
                       PROBE_FILE: yaml.safe_dump(probe, sort_keys=True)},
    }


def readiness_probe() -> dict[str, Any]:
    """Ready once the API answers over TLS with basic auth (Alertmanager serves its API only after
    loading its config). Every path needs basic auth, which an httpGet probe could only send from
    the pod spec: the image's `amtool` reads the password from the mounted file instead."""
    return {"exec": {"command": ["/bin/amtool", f"--alertmanager.url=https://localhost:{WEB_PORT}",
                                 f"--http.config.file={WEB_CONFIG_DIR}/{PROBE_FILE}", "cluster", "show"]},
            "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}


def make_services(owner: Owner) -> list[Manifest]:
    web = {"name": "web", "port": WEB_PORT, "targetPort": "web", "protocol": "TCP"}
    headless = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, COMPONENT, headless_name(owner)),
        "spec": {
            "clusterIP": "None",
            # Peers must resolve each other before any of them is ready, or the cluster never forms.
            "publishNotReadyAddresses": True,
            "selector": selector_labels(owner, COMPONENT),
            "ports": [web, {"name": "cluster", "port": CLUSTER_PORT, "targetPort": "cluster", "protocol": "TCP"}],
        },
    }
    client = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, COMPONENT),
        "spec": {"type": "ClusterIP", "selector": selector_labels(owner, COMPONENT), "ports": [web]},
    }
    return [headless, client]


def _config_volume(owner: Owner) -> dict[str, Any]:
    receivers = owner.spec.prometheus.alertmanager.receivers_secret
    if receivers is not None:
        return {"name": "config", "secret": {"secretName": receivers.name,
                                             "items": [{"key": receivers.key, "path": CONFIG_FILE}]}}
    return {"name": "config", "configMap": {"name": owner.child_name(COMPONENT)}}


def make_statefulset(owner: Owner, config_hash: str, cert_hash: str) -> Manifest:
    spec = owner.spec.prometheus.alertmanager
    container = {
        "name": COMPONENT,
        "image": owner.spec.images.alertmanager,
        "args": [
            f"--config.file={CONFIG_DIR}/{CONFIG_FILE}",
            f"--storage.path={DATA_DIR}",
            f"--web.listen-address=:{WEB_PORT}",
            f"--web.config.file={WEB_CONFIG_DIR}/web.yml",
            f"--web.external-url={alertmanager_url(owner)}",
            f"--cluster.listen-address=0.0.0.0:{CLUSTER_PORT}",
            # Without an explicit address Alertmanager refuses to start on pod IPs outside the
            # private ranges it knows.
            f"--cluster.advertise-address=$(POD_IP):{CLUSTER_PORT}",
            f"--cluster.tls-config={WEB_CONFIG_DIR}/cluster.yml",
            *(f"--cluster.peer={peer}" for peer in peer_addresses(owner)),
        ],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [
            {"name": "web", "containerPort": WEB_PORT, "protocol": "TCP"},
            # With TLS on the gossip, memberlist sends its packets over TCP too: no UDP port.
            {"name": "cluster", "containerPort": CLUSTER_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": readiness_probe(),
        "livenessProbe": {"tcpSocket": {"port": "web"}, "periodSeconds": 15, "failureThreshold": 6},
        "resources": resources(spec.resources),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "web-config", "mountPath": WEB_CONFIG_DIR, "readOnly": True},
            {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
            {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True},
            {"name": "data", "mountPath": DATA_DIR},
        ],
    }
    name = owner.child_name(COMPONENT)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(owner, COMPONENT),
        "spec": {
            "serviceName": headless_name(owner),
            "replicas": spec.replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector_labels(owner, COMPONENT)},
            "template": {
                "metadata": {
                    "labels": metadata(owner, COMPONENT)["labels"],
                    "annotations": {CONFIG_HASH_ANNOTATION: config_hash, CERT_HASH_ANNOTATION: cert_hash},
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(),
                    "topologySpreadConstraints": spread_replicas(owner, COMPONENT),
                    "containers": [container],
                    "volumes": [
                        _config_volume(owner),
                        {"name": "web-config", "secret": {"secretName": f"{name}-web-config"}},
                        {"name": "tls", "secret": {"secretName": tls_secret_name(owner, COMPONENT)}},
                        {"name": "auth", "secret": {"secretName": owner.child_name(WEB_AUTH_SUFFIX),
                                                    "items": [{"key": "password", "path": "password"}]}},
                        # Silences and the notification log are gossiped to the peers, which is
                        # what keeps them across the loss of one pod's volume.
                        {"name": "data", "emptyDir": {"sizeLimit": "256Mi"}},
                    ],
                },
            },
        },
    }


def make_network_policy(owner: Owner) -> Manifest:
    """Ingress from Prometheus and the peers; egress to the peers and, with the user's receivers,
    wherever those are."""
    ingress = [
        # Prometheus pushes alerts to every peer and scrapes their cluster metrics.
        {"from": [{"podSelector": {"matchLabels": selector_labels(owner, PROMETHEUS_COMPONENT)}}],
         "ports": [{"port": WEB_PORT, "protocol": "TCP"}]},
        # Peers gossip alerts, silences and membership to each other (over TLS, so TCP only).
        {"from": [{"podSelector": {"matchLabels": selector_labels(owner, COMPONENT)}}],
         "ports": [{"port": CLUSTER_PORT, "protocol": "TCP"}]},
    ]
    out = [egress.dns(), egress.to_component(owner, COMPONENT, CLUSTER_PORT)]
    if owner.spec.prometheus.alertmanager.receivers_secret is not None:
        # The user's receivers (Slack, SMTP, webhooks) may be any host on any port, and their
        # config is not ours to read: an empty rule admits every destination.
        out.append({})
    return egress.policy(owner, COMPONENT, ingress, out)


def certificates(owner: Owner) -> dict[str, list[str]]:
    if not enabled(owner):
        return {}
    name = owner.child_name(COMPONENT)
    return {COMPONENT: service_dns_names(owner, name, headless=headless_name(owner))}


def credentials(owner: Owner) -> list[CredentialRequest]:
    if not enabled(owner):
        return []
    return [CredentialRequest(COMPONENT, WEB_AUTH_SUFFIX, basic_auth_recipe(WEB_USER))]


def endpoints(owner: Owner) -> dict[str, str]:
    return {}


def render(owner: Owner, material: Material) -> list[Manifest]:
    if not enabled(owner):
        return []
    web_config = make_web_config_secret(owner, material.credentials[WEB_AUTH_SUFFIX]["password.bcrypt"])
    receivers = owner.spec.prometheus.alertmanager.receivers_secret
    out: list[Manifest] = []
    if receivers is None:
        out.append(make_config_map(owner))
        config: Any = out[0]["data"]
    else:
        # The user's Secret is not ours to read; naming a different one still rolls the pods.
        config = receivers.model_dump()
    out += [
        web_config,
        *make_services(owner),
        make_statefulset(owner, content_hash(config, web_config["stringData"]),
                         certificate_hash(material, COMPONENT)),
        *disruption_budgets(owner, COMPONENT, owner.spec.prometheus.alertmanager.replicas),
        make_network_policy(owner),
    ]
    return out
