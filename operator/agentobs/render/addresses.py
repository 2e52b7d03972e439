"""Where each part of the stack is reached: the one place that spells Service names and ports.

Components that talk to each other (Grafana to Prometheus, Jaeger and Elasticsearch; Jaeger and
Fluentd to Elasticsearch; agents to the collector) take addresses from here, never from each other.
"""

from __future__ import annotations

from agentobs.render.common import Owner

PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
ALERTMANAGER_CLUSTER_PORT = 9094
GRAFANA_PORT = 3000
ELASTICSEARCH_PORT = 9200
ELASTICSEARCH_TRANSPORT_PORT = 9300
OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
JAEGER_QUERY_PORT = 16686


def _url(owner: Owner, component: str, port: int) -> str:
    return f"https://{owner.service_host(component)}:{port}"


def prometheus_url(owner: Owner) -> str:
    return _url(owner, "prometheus", PROMETHEUS_PORT)


def alertmanager_url(owner: Owner) -> str:
    return _url(owner, "alertmanager", ALERTMANAGER_PORT)


def grafana_url(owner: Owner) -> str:
    host = owner.spec.grafana.ingress_host
    return f"https://{host}" if host else _url(owner, "grafana", GRAFANA_PORT)


def elasticsearch_url(owner: Owner) -> str:
    external = owner.spec.elasticsearch.external
    return external.url.rstrip("/") if external else _url(owner, "elasticsearch", ELASTICSEARCH_PORT)


def jaeger_query_url(owner: Owner) -> str:
    return _url(owner, "jaeger-query", JAEGER_QUERY_PORT)


def otlp_grpc_url(owner: Owner) -> str:
    return _url(owner, "jaeger-collector", OTLP_GRPC_PORT)


def otlp_http_url(owner: Owner) -> str:
    return _url(owner, "jaeger-collector", OTLP_HTTP_PORT)
