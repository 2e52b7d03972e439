"""Prometheus: the HA StatefulSet, its Services, configuration, RBAC for discovery and its PDB.

Every function is pure: `render(owner, material)` returns the manifests, and the same owner always
renders the same objects (the config hash on the pod template rolls the pods when config changes).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from agentobs.render.addresses import PROMETHEUS_PORT, prometheus_url
from agentobs.render.common import (
    CERT_HASH_ANNOTATION,
    CONFIG_HASH_ANNOTATION,
    CredentialRequest,
    Manifest,
    Material,
    Owner,
    container_security_context,
    content_hash,
    metadata,
    pod_disruption_budget,
    pod_security_context,
    resources,
    selector_labels,
    spread_replicas,
)
from agentobs.render.tls import service_dns_names, tls_secret_name

COMPONENT = "prometheus"
WEB_PORT = PROMETHEUS_PORT
WEB_AUTH_SUFFIX = "prometheus-web-auth"
WEB_USER = "agentobs"
TLS_DIR = "/etc/prometheus/tls"
AUTH_DIR = "/etc/prometheus/auth"
WEB_CONFIG_DIR = "/etc/prometheus/web"


def _label_meta(label: str) -> str:
    """Prometheus' name for a pod label in Kubernetes service discovery."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label)


def make_prometheus_config(owner: Owner) -> dict[str, Any]:
    spec = owner.spec
    selected = spec.instrumentation.pod_selector.match_labels
    keep_selected = [
        {"source_labels": [_label_meta(k)], "regex": re.escape(v), "action": "keep"}
        for k, v in sorted(selected.items())
    ]
    return {
        "global": {
            "scrape_interval": spec.prometheus.scrape_interval,
            "evaluation_interval": spec.prometheus.scrape_interval,
            # Prometheus 3 expands ${VAR} in external labels: each replica gets its own value,
            # which is what lets a querier deduplicate the HA pair.
            "external_labels": {"agentobs": owner.name, "replica": "${POD_NAME}"},
        },
        "scrape_configs": [
            {
                "job_name": "prometheus",
                "scheme": "https",
                "tls_config": {"ca_file": f"{TLS_DIR}/ca.crt", "server_name": "localhost"},
                "basic_auth": {"username": WEB_USER, "password_file": f"{AUTH_DIR}/password"},
                "static_configs": [{"targets": [f"localhost:{WEB_PORT}"]}],
            },
            {
                "job_name": "agents",
                "kubernetes_sd_configs": [
                    {"role": "pod", "namespaces": {"names": [owner.namespace]}}
                ],
                "relabel_configs": [
                    *keep_selected,
                    {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"},
                    {
                        "source_labels": ["__meta_kubernetes_pod_ip"],
                        "target_label": "__address__",
                        "replacement": f"$1:{spec.instrumentation.metrics_port}",
                    },
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                    {
                        "source_labels": [_label_meta("app.kubernetes.io/name")],
                        "target_label": "agent",
                    },
                ],
            },
        ],
    }


def make_prometheus_configmap(owner: Owner) -> Manifest:
    config = yaml.safe_dump(make_prometheus_config(owner), sort_keys=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, COMPONENT),
        "data": {"prometheus.yml": config},
    }


def make_web_config_secret(owner: Owner, password_bcrypt: str) -> Manifest:
    """Prometheus' own web server: TLS with the operator's certificate, and basic auth."""
    web = {
        "tls_server_config": {"cert_file": f"{TLS_DIR}/tls.crt", "key_file": f"{TLS_DIR}/tls.key",
                              "min_version": "TLS12"},
        "basic_auth_users": {WEB_USER: password_bcrypt},
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(owner, COMPONENT, owner.child_name(f"{COMPONENT}-web-config")),
        "type": "Opaque",
        "stringData": {"web.yml": yaml.safe_dump(web, sort_keys=True)},
    }


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
        "spec": {"type": "ClusterIP", "selector": selector_labels(owner, COMPONENT), "ports": ports},
    }
    return [headless, client]


def make_prometheus_rbac(owner: Owner) -> list[Manifest]:
    """Least privilege for pod discovery in the resource's namespace."""
    name = owner.child_name(COMPONENT)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(owner, COMPONENT),
         "automountServiceAccountToken": True},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": metadata(owner, COMPONENT),
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": metadata(owner, COMPONENT),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
        },
    ]


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
        # Every path of the web server needs basic auth, which an httpGet probe cannot send without
        # writing the password into the pod spec; a TCP probe checks the listener instead.
        "readinessProbe": {"tcpSocket": {"port": "web"}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": "web"}, "periodSeconds": 15, "failureThreshold": 6},
        "resources": resources(spec.resources),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/prometheus/config", "readOnly": True},
            {"name": "web-config", "mountPath": WEB_CONFIG_DIR, "readOnly": True},
            {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
            {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True},
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
                    "affinity": spread_replicas(owner, COMPONENT),
                    "terminationGracePeriodSeconds": 120,
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": name}},
                        {"name": "web-config", "secret": {"secretName": f"{name}-web-config"}},
                        {"name": "tls", "secret": {"secretName": tls_secret_name(owner, COMPONENT)}},
                        {"name": "auth", "secret": {"secretName": owner.child_name(WEB_AUTH_SUFFIX),
                                                    "items": [{"key": "password", "path": "password"}]}},
                    ],
                },
            },
            "volumeClaimTemplates": [
                {"metadata": {"name": "data", "labels": metadata(owner, COMPONENT)["labels"]},
                 "spec": claim_spec}
            ],
        },
    }


def certificates(owner: Owner) -> dict[str, list[str]]:
    name = owner.child_name(COMPONENT)
    return {COMPONENT: [*service_dns_names(owner, name, headless=f"{name}-headless"), "localhost"]}


def credentials(owner: Owner) -> list[CredentialRequest]:
    recipe = {"username": f"literal:{WEB_USER}", "password": "random", "password.bcrypt": "bcrypt:password"}
    return [CredentialRequest(COMPONENT, WEB_AUTH_SUFFIX, recipe)]


def endpoints(owner: Owner) -> dict[str, str]:
    return {"prometheus": prometheus_url(owner)}


def render(owner: Owner, material: Material) -> list[Manifest]:
    configmap = make_prometheus_configmap(owner)
    web_config = make_web_config_secret(owner, material.credentials[WEB_AUTH_SUFFIX]["password.bcrypt"])
    cert = material.certs[COMPONENT]
    return [
        *make_prometheus_rbac(owner),
        configmap,
        web_config,
        *make_prometheus_services(owner),
        make_prometheus_statefulset(owner, content_hash(configmap["data"], web_config["stringData"]),
                                    content_hash(cert.cert_pem.decode())),
        pod_disruption_budget(owner, COMPONENT),
    ]
