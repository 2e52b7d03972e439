"""The operator process: metrics and health endpoints, then kopf's event loop.

Configuration comes from the environment so the chart and `make run` set it the same way:
AGENTOBS_METRICS_PORT (default 8080), AGENTOBS_HEALTH_PORT (default 8081), AGENTOBS_NAMESPACES
(comma-separated names or globs; empty means cluster-wide), AGENTOBS_RESYNC_SECONDS (default 60),
AGENTOBS_MANAGE_CRD ("true": apply the operator's own CRD at start-up, so an upgraded operator
brings its schema along). Leader election: AGENTOBS_LEADER_ELECTION ("true": replicas elect a
leader on the Lease AGENTOBS_LEADER_LEASE, default agentobs-operator-leader, in
AGENTOBS_OPERATOR_NAMESPACE, each named by POD_ID or its host name; only the leader reconciles,
every replica serves the webhook).
Scale: AGENTOBS_WORKERS (default 4) passes run at once, each in a thread of the operator's own pool,
taken from a queue where new resources and spec changes go first, changed children next, and
routine resyncs last. Each resource is resynced every
    max(AGENTOBS_RESYNC_SECONDS, number of resources / AGENTOBS_RESYNC_RATE) seconds
(defaults 60 and 2 per second: 60 s up to 120 resources, 500 s at 1,000), give or take 10 %. A resync
of an unchanged stack sends no request: children are read from watch-fed caches, and only what
differs is applied or patched; hand edits and deletions wake the resource through those watches.
AGENTOBS_MALLOC_ARENAS (default 2) caps glibc's malloc arenas, which would otherwise grow with the
watch and worker threads (agentobs.memory, which also hands freed memory back after a burst).
The webhook: AGENTOBS_WEBHOOK_PORT (default 9443), AGENTOBS_WEBHOOK_CONFIGURATION (the
MutatingWebhookConfiguration whose caBundle is kept; default agentobs-webhook),
AGENTOBS_WEBHOOK_SERVICE ("<namespace>/<name>" in cluster; empty out of cluster),
AGENTOBS_WEBHOOK_HOST (what the API server dials without a Service; default 127.0.0.1),
AGENTOBS_OPERATOR_NAMESPACE (where the webhook's key material is stored), AGENTOBS_METRICS_TARGET
("host:port" of the operator's metrics Service, scraped by each stack's Prometheus for the
certificate-expiry alert).
The node log collector (one Fluent Bit DaemonSet for every resource, agentobs.render.collector):
AGENTOBS_LOG_COLLECTOR_NAMESPACE (where it runs; when unset AGENTOBS_OPERATOR_NAMESPACE, the one
namespace that must allow Pod Security `privileged`; set and empty: no collector), AGENTOBS_LOG_COLLECTOR_IMAGE
(default the pinned Fluent Bit image).
"""

from __future__ import annotations

import asyncio
import logging
import os

import kopf
import prometheus_client

import agentobs.admission.server
import agentobs.handlers  # noqa: F401  (registers the handlers with kopf)
from agentobs import memory


def main() -> None:
    memory.limit_arenas()
    logging.basicConfig(level=os.environ.get("AGENTOBS_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kopf says "Handler ... succeeded" at INFO for every watch event; a pass logs once when it changes something.
    logging.getLogger("kopf.objects").setLevel(max(logging.WARNING, logging.getLogger().level))
    metrics_port = int(os.environ.get("AGENTOBS_METRICS_PORT", "8080"))
    health_port = int(os.environ.get("AGENTOBS_HEALTH_PORT", "8081"))
    bind = os.environ.get("AGENTOBS_BIND_ADDRESS", "0.0.0.0")  # noqa: S104 (a pod's own ports)
    namespaces = [n for n in os.environ.get("AGENTOBS_NAMESPACES", "").split(",") if n]

    prometheus_client.start_http_server(metrics_port, addr=bind)
    asyncio.run(kopf.operator(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=True,  # leader election is ours (agentobs.leader), not kopf peering
        liveness_endpoint=f"http://{bind}:{health_port}/healthz",
    ))


if __name__ == "__main__":
    main()
