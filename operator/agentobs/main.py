"""The operator process: metrics and health endpoints, then kopf's event loop.

Configuration comes from the environment so the chart and `make run` set it the same way. Every
variable the operator reads (this module, agentobs.handlers, agentobs.memory,
agentobs.admission.webhook), with its default:

The process
  AGENTOBS_LOG_LEVEL         Python logging level name of the process: DEBUG, INFO, WARNING or
                             ERROR, upper case (logging knows no other spelling); default INFO.
                             kopf's per-object logger (kopf.objects, a "Handler ... succeeded"
                             line per watch event) never logs below WARNING.
  AGENTOBS_BIND_ADDRESS      address the metrics, health and webhook servers listen on
                             (default 0.0.0.0; the tests use 127.0.0.1).
  AGENTOBS_METRICS_PORT      Prometheus metrics, /metrics (default 8080).
  AGENTOBS_HEALTH_PORT       kopf's liveness endpoint, /healthz (default 8081).
  AGENTOBS_MALLOC_ARENAS     cap on glibc's malloc arenas, which would otherwise grow with the watch
                             and worker threads (default 2; agentobs.memory, which also hands freed
                             memory back after a burst).
  KUBECONFIG                 read only outside a cluster (in a pod the service account is used);
                             empty: the kubernetes client's default, ~/.kube/config.

What it serves
  AGENTOBS_NAMESPACES        comma-separated namespace names or globs to serve; empty (default):
                             the whole cluster.
  AGENTOBS_MANAGE_CRD        "true": apply the operator's own CRD at start-up, so an upgraded
                             operator brings its schema along (default off).

Leader election
  AGENTOBS_LEADER_ELECTION   "true": replicas elect a leader and only it reconciles (every replica
                             serves the webhook). Needs AGENTOBS_OPERATOR_NAMESPACE; without either,
                             every replica reconciles (default off: run one replica).
  AGENTOBS_LEADER_LEASE      the Lease, in AGENTOBS_OPERATOR_NAMESPACE (default
                             agentobs-operator-leader).
  POD_ID                     this replica's identity on the Lease (default its host name).

Scale
  AGENTOBS_WORKERS           passes run at once, each in a thread of the operator's own pool
                             (default 4, at least 1), taken from a queue where new resources and
                             spec changes go first, changed children next, routine resyncs last.
  AGENTOBS_RESYNC_SECONDS    shortest resync period of a resource (default 60).
  AGENTOBS_RESYNC_RATE       most routine resyncs per second across all resources (default 2).
  Each resource is resynced every
      max(AGENTOBS_RESYNC_SECONDS, number of resources / AGENTOBS_RESYNC_RATE) seconds
  (60 s up to 120 resources, 500 s at 1,000), give or take 10 %. A resync of an unchanged stack
  sends no request: children are read from watch-fed caches, and only what differs is applied or
  patched; hand edits and deletions wake the resource through those watches.

The webhook
  AGENTOBS_WEBHOOK_PORT      HTTPS port (default 9443).
  AGENTOBS_WEBHOOK_CONFIGURATION  the MutatingWebhookConfiguration whose caBundle is kept, and
                             the prefix of its key Secret, <name>-tls (default agentobs-webhook).
  AGENTOBS_WEBHOOK_SERVICE   "<namespace>/<name>" of its Service in cluster; empty (default) out of
                             cluster.
  AGENTOBS_WEBHOOK_HOST      what the API server dials when there is no Service (default 127.0.0.1).
  AGENTOBS_OPERATOR_NAMESPACE  the operator's namespace: where the webhook's key Secret and the
                             Lease are kept, and the node log collector's default namespace
                             (default empty).
  AGENTOBS_OPERATOR_DEPLOYMENT  the operator's Deployment there, which then owns the node log
                             collector's objects in that namespace so that deleting it (helm
                             uninstall) deletes them (default empty: they have no owner).

Stacks
  AGENTOBS_METRICS_TARGET    "host:port" of the operator's metrics Service, which each stack's
                             Prometheus scrapes for the certificate-expiry alert (default empty:
                             not scraped).
  AGENTOBS_RUNBOOK_URL       where docs/runbooks.md is published; each stack's alerts link to
                             their section of it (default empty: the repository-relative path).
  AGENTOBS_LOG_COLLECTOR_NAMESPACE  where the node log collector runs (one Fluent Bit DaemonSet
                             for every resource, agentobs.render.collector); unset:
                             AGENTOBS_OPERATOR_NAMESPACE, the one namespace that must allow Pod
                             Security `privileged`; set and empty: no collector (and one left
                             in AGENTOBS_OPERATOR_NAMESPACE is deleted).
  AGENTOBS_LOG_COLLECTOR_IMAGE  its image (default, and when empty: the pinned Fluent Bit image).
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
