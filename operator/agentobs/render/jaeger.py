"""Jaeger v2: the OTLP collector and the query service, storing in Elasticsearch over TLS.

Jaeger v2 is an OpenTelemetry Collector distribution configured by one YAML file. Each Deployment
gets its own file in a ConfigMap: the collector runs the `otlp` receiver (gRPC 4317 and HTTP 4318,
both TLS with the operator's certificate) into the `jaeger_storage_exporter`; the query service
runs the `jaeger_query` extension (HTTPS on 16686, its gRPC API on localhost only) over the same
storage, with a `nop` pipeline because a collector needs one. Passwords never enter the file: it
names `${env:ES_PASSWORD}`, which the collector expands from the environment, filled from the
credentials Secret.

The file follows the schema of Jaeger 2.x releases (2.0.0 renamed the Elasticsearch keys of the
release candidates: `auth.basic`, `indices`, `tls.ca_file`); `tests/components` runs the real
binary's `validate` on every variant rendered here.

Daily span indices (`date_layout` 2006-01-02) under the resource's index prefix are what the
retention job's lifecycle policy deletes (see `retention`); `max_span_age` lets the query look back
as far as spans are kept. Only Jaeger's span reader uses it (the writer's parameters leave it out),
so it is in the query's file alone: a retention change restarts the query, not the collector that
agents send to.

Pure: `render(owner, material)` returns the manifests.
"""

from __future__ import annotations

from typing import Any

import yaml

from agentobs.render import egress, es_access
from agentobs.render.addresses import (
    JAEGER_QUERY_PORT,
    OTLP_GRPC_PORT,
    OTLP_HTTP_PORT,
    elasticsearch_url,
    otlp_grpc_url,
    otlp_http_url,
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
from agentobs.render.tls import certificate_hash, service_dns_names, tls_secret_name

COLLECTOR = "jaeger-collector"
QUERY = "jaeger-query"
GRAFANA = "grafana"  # the only client of the query service (see grafana.py)
CONFIG_DIR = "/etc/jaeger"
TLS_DIR = f"{CONFIG_DIR}/tls"
ES_CA_DIR = f"{CONFIG_DIR}/es-ca"
STORAGE = "elasticsearch"
HEALTH_PORT = 13133
QUERY_GRPC_PORT = 16685
UID = 10001  # the jaeger image's user


def _server_tls() -> dict[str, str]:
    return {"cert_file": f"{TLS_DIR}/tls.crt", "key_file": f"{TLS_DIR}/tls.key", "min_version": "1.2"}


def _index_options() -> dict[str, Any]:
    # One shard per daily index keeps the shard count of a small cluster low.
    return {"date_layout": "2006-01-02", "rollover_frequency": "day", "shards": 1, "replicas": 1}


def make_storage(owner: Owner, reader: bool) -> dict[str, Any]:
    """The `jaeger_storage` extension: Elasticsearch over TLS with the jaeger credentials."""
    tls: dict[str, Any] = {"min_version": "1.2"}
    if es_access.ca_volume(owner, "es-ca") is not None:
        tls["ca_file"] = f"{ES_CA_DIR}/{es_access.CA_FILE}"
    backend: dict[str, Any] = {
        "server_urls": [elasticsearch_url(owner)],
        "auth": {"basic": {"username": "${env:ES_USERNAME}", "password": "${env:ES_PASSWORD}"}},
        "tls": tls,
        "indices": {"index_prefix": es_access.jaeger_index_prefix(owner), "spans": _index_options(),
                    "services": _index_options(), "dependencies": _index_options(),
                    "sampling": _index_options()},
    }
    if reader:
        backend["max_span_age"] = f"{owner.spec.tracing.retention_days * 24}h"
    return {"backends": {STORAGE: {"elasticsearch": backend}}}


def _health() -> dict[str, Any]:
    return {"use_v2": True, "http": {"endpoint": f"0.0.0.0:{HEALTH_PORT}",
                                     "status": {"enabled": True, "path": "/status"}}}


def make_collector_config(owner: Owner) -> dict[str, Any]:
    return {
        "service": {
            "extensions": ["jaeger_storage", "healthcheckv2"],
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["memory_limiter", "batch"],
                                     "exporters": ["jaeger_storage_exporter"]}},
            "telemetry": {"logs": {"level": "info"}},
        },
        "extensions": {"healthcheckv2": _health(), "jaeger_storage": make_storage(owner, reader=False)},
        "receivers": {"otlp": {"protocols": {
            "grpc": {"endpoint": f"0.0.0.0:{OTLP_GRPC_PORT}", "tls": _server_tls()},
            "http": {"endpoint": f"0.0.0.0:{OTLP_HTTP_PORT}", "tls": _server_tls()},
        }}},
        # Refuse data before the pod is killed for memory; agents retry what is refused.
        "processors": {"memory_limiter": {"check_interval": "1s", "limit_percentage": 80,
                                          "spike_limit_percentage": 20},
                       "batch": {}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": STORAGE}},
    }


def make_query_config(owner: Owner) -> dict[str, Any]:
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
            "pipelines": {"traces": {"receivers": ["nop"], "exporters": ["nop"]}},
            "telemetry": {"logs": {"level": "info"}},
        },
        "extensions": {
            "healthcheckv2": _health(),
            "jaeger_storage": make_storage(owner, reader=True),
            "jaeger_query": {
                "storage": {"traces": STORAGE},
                "http": {"endpoint": f"0.0.0.0:{JAEGER_QUERY_PORT}", "tls": _server_tls()},
                "grpc": {"endpoint": f"localhost:{QUERY_GRPC_PORT}"},
            },
        },
        "receivers": {"nop": {}},
        "exporters": {"nop": {}},
    }


def make_configmap(owner: Owner, component: str, config: dict[str, Any]) -> Manifest:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(owner, component),
            "data": {"config.yaml": yaml.safe_dump(config, sort_keys=False)}}


def _ports(component: str) -> list[dict[str, Any]]:
    if component == COLLECTOR:
        return [{"name": "otlp-grpc", "containerPort": OTLP_GRPC_PORT, "protocol": "TCP"},
                {"name": "otlp-http", "containerPort": OTLP_HTTP_PORT, "protocol": "TCP"}]
    return [{"name": "https", "containerPort": JAEGER_QUERY_PORT, "protocol": "TCP"}]


def make_deployment(owner: Owner, component: str, replicas: int | None, config_hash: str,
                    cert_hash: str) -> Manifest:
    name = owner.child_name(component)
    env = es_access.credential_env(owner, "jaeger", "ES_USERNAME", "ES_PASSWORD")
    mounts = [{"name": "config", "mountPath": f"{CONFIG_DIR}/config", "readOnly": True},
              {"name": "tls", "mountPath": TLS_DIR, "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": name}},
                                     {"name": "tls", "secret": {"secretName": tls_secret_name(owner, component)}}]
    ca = es_access.ca_volume(owner, "es-ca")
    if ca is not None:
        mounts.append({"name": "es-ca", "mountPath": ES_CA_DIR, "readOnly": True})
        volumes.append(ca)
    health = {"httpGet": {"path": "/status", "port": "health"}}
    container = {
        "name": "jaeger",
        "image": owner.spec.images.jaeger,
        "args": [f"--config={CONFIG_DIR}/config/config.yaml"],
        "env": env,
        "ports": [*_ports(component), {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"}],
        "readinessProbe": {**health, "periodSeconds": 5},
        "livenessProbe": {**health, "periodSeconds": 15, "failureThreshold": 6},
        "resources": resources(owner.spec.tracing.collector.resources if component == COLLECTOR
                               else owner.spec.tracing.query_resources),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(owner, component)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {"labels": metadata(owner, component)["labels"],
                         "annotations": {CONFIG_HASH_ANNOTATION: config_hash, CERT_HASH_ANNOTATION: cert_hash}},
            "spec": {
                "automountServiceAccountToken": False,
                "securityContext": pod_security_context(UID),
                "topologySpreadConstraints": spread_replicas(owner, component),
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    if replicas is not None:  # left out when the autoscaler owns the count
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata(owner, component), "spec": spec}


def make_service(owner: Owner, component: str) -> Manifest:
    ports = [{"name": p["name"], "port": p["containerPort"], "targetPort": p["name"], "protocol": "TCP"}
             for p in _ports(component)]
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(owner, component),
            "spec": {"type": "ClusterIP", "selector": selector_labels(owner, component), "ports": ports}}


def make_autoscaler(owner: Owner) -> Manifest:
    scaling = owner.spec.tracing.collector.autoscaling
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(owner, COLLECTOR),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": owner.child_name(COLLECTOR)},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": scaling.target_cpu_utilization}}}],
        },
    }


def make_network_policies(owner: Owner) -> list[Manifest]:
    """OTLP from agent pods in any namespace; the query API from Grafana only; out, only to
    Elasticsearch."""
    anywhere: dict[str, Any] = {"namespaceSelector": {}}
    grafana = {"podSelector": {"matchLabels": selector_labels(owner, GRAFANA)}}

    def policy(component: str, peer: dict[str, Any], ports: list[int]) -> Manifest:
        # Out: only the span store.
        return egress.policy(owner, component,
                             [{"from": [peer], "ports": [{"protocol": "TCP", "port": p} for p in ports]}],
                             [egress.dns(), egress.elasticsearch(owner)])

    return [policy(COLLECTOR, anywhere, [OTLP_GRPC_PORT, OTLP_HTTP_PORT]),
            policy(QUERY, grafana, [JAEGER_QUERY_PORT])]


def enabled(owner: Owner) -> bool:
    return owner.spec.tracing.enabled


def certificates(owner: Owner) -> dict[str, list[str]]:
    if not enabled(owner):
        return {}
    return {c: service_dns_names(owner, owner.child_name(c)) for c in (COLLECTOR, QUERY)}


def credentials(owner: Owner) -> list[CredentialRequest]:
    return []  # the jaeger user is made with the provisioned Elasticsearch (or given for an external one)


def endpoints(owner: Owner) -> dict[str, str]:
    if not enabled(owner):
        return {}
    return {"otlpGrpc": otlp_grpc_url(owner), "otlpHttp": otlp_http_url(owner)}


def render(owner: Owner, material: Material) -> list[Manifest]:
    if not enabled(owner):
        return []
    tracing = owner.spec.tracing
    autoscaled = tracing.collector.autoscaling.enabled
    out: list[Manifest] = []
    for component, config, replicas in (
        (COLLECTOR, make_collector_config(owner), None if autoscaled else tracing.collector.replicas),
        (QUERY, make_query_config(owner), tracing.query_replicas),
    ):
        configmap = make_configmap(owner, component, config)
        cert_hash = certificate_hash(material, component)
        out += [configmap, make_service(owner, component),
                make_deployment(owner, component, replicas, content_hash(configmap["data"]), cert_hash),
                *disruption_budgets(owner, component, replicas)]
    if autoscaled:
        out.append(make_autoscaler(owner))
    return out + make_network_policies(owner)
