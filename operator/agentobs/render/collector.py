"""The node log collector: one Fluent Bit DaemonSet per cluster, in the operator's namespace.

Why one per cluster and not one per resource: reading the nodes' container log files takes a
`hostPath` volume, which Pod Security `baseline` and `restricted` forbid. The chart labels the
operator's namespace `privileged` and no other, so the one component that needs the exception
lives there, and N resources cost one tail of each node's files instead of N. Why Fluent Bit: it
is the node agent of kube-logging's logging-operator and of fluent-operator (a few MiB of memory
per node, where Fluentd takes a Ruby VM), it joins CRI partial lines with its built-in `cri`
multiline parser, and it keeps read positions (SQLite) and buffers (chunk files) on the node's disk.
Why the operator renders it rather than the chart: its routing table changes whenever a resource
comes, goes or changes its selectors, and only the operator knows the resources; the ConfigMap and
the DaemonSet whose pods roll on its hash belong together.

The pipeline (`fluent-bit.conf`, checked parameter by parameter against Fluent Bit `IMAGE_VERSION`):

- `tail` of `/var/log/containers/*_<namespace>_*.log` for the namespaces some route selects (the
  kubelet names each file `<pod>_<namespace>_<container>-<id>.log`), with `multiline.parser cri`
  (joins `P` partial lines into one record), read positions in a SQLite file and chunks in files
  under `STATE_DIR` on the node (a `hostPath`, so a restarted, rolled or upgraded pod resumes where
  the last one stopped), the file path and byte offset of each line in the record (`file`,
  `offset`: with the runtime's nanosecond timestamp they identify a line, which is what the
  aggregator hashes into the document id);
- `kubernetes` adds pod metadata (labels, not annotations: they can be large);
- a Lua filter (`routes.lua`, generated from the routes) picks the record's resource by namespace
  and pod labels, in the webhook's order (a resource of the pod's own namespace first, then by
  namespace/name), writes its id into `agentobs_route`, replaces the dots of label keys with `_`
  (`app` beside `app.kubernetes.io/name` would otherwise be refused by Elasticsearch, a leaf and an
  object at once), and drops records no route wants;
- `rewrite_tag` retags each record `route.<id>` (its emitter buffers on the filesystem too);
- one `forward` output per route to that stack's aggregator Service over mutual TLS: it verifies
  the aggregator's certificate with that stack's CA and its name, and presents a client
  certificate that stack's CA issued for the collector (the aggregator admits no other sender),
  with `Require_ack_response`: a chunk is deleted only after the aggregator has written it to its
  own file buffer. Retries never stop.

The collector holds no Elasticsearch credential: the aggregators do. It holds one client key per
route (in the Secret `CLIENTS_SECRET`), which lets it send logs to that stack's aggregator only. Its RBAC reads pods and
namespaces, nothing else. Security: the files are 0640 root:root (containerd) or 0600 (CRI-O),
so the container runs as uid 0 with every capability dropped except `DAC_READ_SEARCH` (read any
file, write none that is not its own), no privilege escalation, a read-only root filesystem and
RuntimeDefault seccomp; `/var/log` is mounted read-only, and the only writable host path is
`STATE_DIR`. A non-root user would need file capabilities on the binary to use DAC_READ_SEARCH.

Pure: `render(namespace, routes, image)` returns the manifests; no routes, no collector.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any

from agentobs.render import egress
from agentobs.render.common import (
    CERT_HASH_ANNOTATION,
    CONFIG_HASH_ANNOTATION,
    MANAGED_BY,
    PART_OF,
    Manifest,
    content_hash,
)

NAME = "agentobs-log-collector"
COMPONENT = "log-collector"
IMAGE_VERSION = "4.2.8"
IMAGE = f"cr.fluentbit.io/fluent/fluent-bit:{IMAGE_VERSION}"
CONFIG_DIR = "/fluent-bit/etc/agentobs"
CA_DIR = f"{CONFIG_DIR}/ca"
CLIENT_DIR = "/fluent-bit/etc/agentobs-clients"
CLIENTS_SECRET = f"{NAME}-clients"
STATE_DIR = "/var/lib/agentobs/log-collector"  # on the node: positions and chunks survive the pod
METRICS_PORT = 2020
METRICS_PATH = "/api/v2/metrics/prometheus"
ROUTE_KEY = "agentobs_route"
# Owner.extra key: the namespace of the collector, whose pods the aggregators admit.
NAMESPACE_EXTRA = "log_collector_namespace"
ROUTE_TAG_PREFIX = "route."
# Components of each stack the collector talks to (spelled here: their modules import this one).
AGGREGATOR_COMPONENT = "fluentd"
PROMETHEUS_COMPONENT = "prometheus"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
BUFFER_LIMIT_PER_ROUTE = "1G"
RBAC_GROUP = "rbac.authorization.k8s.io"
RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
_ROUTE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class Route:
    """Where the records of one resource's agent pods go."""

    owner_namespace: str
    owner_name: str
    namespaces: tuple[str, ...]  # concrete names (a namespace selector is resolved by the caller)
    pod_labels: dict[str, str] = field(default_factory=dict)
    host: str = ""  # the aggregator Service
    port: int = 24224
    ca_pem: str = ""  # the stack's CA, which signs the aggregator's certificate
    # The collector's client certificate from that CA: the aggregator admits no other sender.
    client_cert_pem: str = ""
    client_key_pem: str = field(default="", repr=False)

    @property
    def id(self) -> str:
        """Unique per resource (`_` never occurs in a Kubernetes name); the output's alias too."""
        return f"{self.owner_namespace}_{self.owner_name}"


def labels() -> dict[str, str]:
    """No owner labels: the collector belongs to no one resource, and per-resource pruning must
    never find it."""
    return {"app.kubernetes.io/name": COMPONENT, "app.kubernetes.io/instance": NAME,
            "app.kubernetes.io/component": COMPONENT, "app.kubernetes.io/part-of": PART_OF,
            "app.kubernetes.io/managed-by": MANAGED_BY}


def selector_labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": COMPONENT, "app.kubernetes.io/instance": NAME}


def _meta(namespace: str | None, name: str = NAME) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels()}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def _ordered(routes: list[Route]) -> list[Route]:
    for route in routes:
        if not _ROUTE_ID.match(route.id):
            raise ValueError(f"route id {route.id!r} is not a safe tag")
    return sorted(routes, key=lambda r: (r.owner_namespace, r.owner_name))


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal for these values


def make_routes_lua(routes: list[Route]) -> str:
    entries = []
    for r in _ordered(routes):
        namespaces = ", ".join(f"[{_lua_string(ns)}] = true" for ns in sorted(set(r.namespaces)))
        pod_labels = ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in sorted(r.pod_labels.items()))
        entries.append(f"  {{id = {_lua_string(r.id)}, owner_namespace = {_lua_string(r.owner_namespace)},\n"
                       f"   namespaces = {{{namespaces}}},\n   labels = {{{pod_labels}}}}},\n")
    return (
        "-- Generated by the agentobs operator from the AgentObservability resources; do not edit.\n"
        "-- Picks the resource whose namespaces and pod labels select a record's pod, in the webhook's\n"
        "-- order (the pod's own namespace first, then by namespace/name), and de-dots label keys.\n"
        "local routes = {\n" + "".join(entries) + "}\n\n"
        "local function selects(route, namespace, labels)\n"
        "  if not route.namespaces[namespace] then return false end\n"
        "  for key, value in pairs(route.labels) do\n"
        "    if labels[key] ~= value then return false end\n"
        "  end\n"
        "  return true\n"
        "end\n\n"
        "local function dedot(map)\n"
        "  local out = {}\n"
        "  for key, value in pairs(map) do out[(string.gsub(key, \"%.\", \"_\"))] = value end\n"
        "  return out\n"
        "end\n\n"
        "function route(tag, timestamp, record)\n"
        "  local k = record[\"kubernetes\"]\n"
        "  if type(k) ~= \"table\" or type(k[\"namespace_name\"]) ~= \"string\" then return -1, timestamp, record end\n"
        "  local namespace = k[\"namespace_name\"]\n"
        "  local labels = k[\"labels\"]\n"
        "  if type(labels) ~= \"table\" then labels = {} end\n"
        "  local chosen = nil\n"
        "  for _, r in ipairs(routes) do\n"
        "    if selects(r, namespace, labels) then\n"
        "      if r.owner_namespace == namespace then chosen = r; break end\n"
        "      if chosen == nil then chosen = r end\n"
        "    end\n"
        "  end\n"
        "  if chosen == nil then return -1, timestamp, record end\n"
        f"  record[\"{ROUTE_KEY}\"] = chosen.id\n"
        "  k[\"labels\"] = dedot(labels)\n"
        "  return 2, timestamp, record\n"
        "end\n"
    )


def _section(kind: str, params: list[tuple[str, str | int]]) -> str:
    width = max(len(k) for k, _ in params) + 1
    return f"[{kind}]\n" + "".join(f"    {k.ljust(width)}{v}\n" for k, v in params) + "\n"


def tail_paths(routes: list[Route]) -> list[str]:
    namespaces = sorted({ns for r in routes for ns in r.namespaces})
    return [f"/var/log/containers/*_{ns}_*.log" for ns in namespaces]


def make_config(namespace: str, routes: list[Route]) -> str:
    ordered = _ordered(routes)
    out = _section("SERVICE", [
        ("Flush", 1),
        ("Grace", 30),  # seconds to flush on SIGTERM, inside terminationGracePeriodSeconds
        ("Log_Level", "info"),
        ("HTTP_Server", "On"),
        ("HTTP_Listen", "0.0.0.0"),  # noqa: S104 (the pod's own metrics and health port)
        ("HTTP_Port", METRICS_PORT),
        ("storage.path", f"{STATE_DIR}/chunks/"),
        ("storage.sync", "full"),
        ("storage.checksum", "On"),
        ("storage.metrics", "On"),
        ("storage.backlog.mem_limit", "16M"),
        ("storage.max_chunks_up", 128),
    ])
    out += _section("INPUT", [
        ("Name", "tail"),
        ("Alias", "containers"),
        ("Tag", "kube.*"),
        ("Path", ",".join(tail_paths(ordered))),
        ("Exclude_Path", f"/var/log/containers/{NAME}-*_{namespace}_*.log"),
        ("multiline.parser", "cri"),
        ("DB", f"{STATE_DIR}/positions.db"),
        ("DB.sync", "full"),
        ("DB.locking", "true"),
        # A file the position DB does not know is read from its start: a route added later, or a
        # collector that was down, loses nothing; a re-read line gets the same document id.
        ("Read_From_Head", "true"),
        ("Path_Key", "file"),
        ("Offset_Key", "offset"),
        ("Refresh_Interval", 5),
        ("Rotate_Wait", 30),
        ("Buffer_Max_Size", "128k"),  # CRI splits lines at 16 KiB, so a physical line always fits
        ("storage.type", "filesystem"),
        ("storage.pause_on_chunks_overlimit", "on"),
    ])
    out += _section("FILTER", [
        ("Name", "kubernetes"),
        ("Alias", "metadata"),
        ("Match", "kube.*"),
        ("Kube_Tag_Prefix", "kube.var.log.containers."),
        ("Merge_Log", "Off"),  # the aggregator parses JSON lines
        ("Keep_Log", "On"),
        ("Labels", "On"),
        ("Annotations", "Off"),
        ("Buffer_Size", 0),  # no limit on a pod's metadata document
    ])
    out += _section("FILTER", [
        ("Name", "lua"),
        ("Alias", "routes"),
        ("Match", "kube.*"),
        ("script", f"{CONFIG_DIR}/routes.lua"),
        ("call", "route"),
    ])
    out += _section("FILTER", [
        ("Name", "rewrite_tag"),
        ("Alias", "retag"),
        ("Match", "kube.*"),
        ("Rule", f"${ROUTE_KEY} ^([a-z0-9][a-z0-9_-]*)$ {ROUTE_TAG_PREFIX}$1 false"),
        ("Emitter_Name", "routed"),
        ("Emitter_Storage.type", "filesystem"),
        ("Emitter_Mem_Buf_Limit", "64M"),
    ])
    for r in ordered:
        out += _section("OUTPUT", [
            ("Name", "forward"),
            ("Alias", r.id),
            ("Match", f"{ROUTE_TAG_PREFIX}{r.id}"),
            ("Host", r.host),
            ("Port", r.port),
            ("Require_ack_response", "true"),
            ("Retry_Limit", "no_limits"),
            ("storage.total_limit_size", BUFFER_LIMIT_PER_ROUTE),
            ("tls", "On"),
            ("tls.verify", "On"),
            ("tls.verify_hostname", "On"),
            ("tls.vhost", r.host),
            ("tls.ca_file", f"{CA_DIR}/{r.id}.crt"),
            ("tls.crt_file", f"{CLIENT_DIR}/{r.id}.crt"),
            ("tls.key_file", f"{CLIENT_DIR}/{r.id}.key"),
        ])
    return out


def make_configmap(namespace: str, routes: list[Route]) -> Manifest:
    data = {"fluent-bit.conf": make_config(namespace, routes), "routes.lua": make_routes_lua(routes)}
    data |= {f"ca-{r.id}.crt": r.ca_pem for r in _ordered(routes)}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(namespace), "data": data}


def make_clients_secret(namespace: str, routes: list[Route]) -> Manifest:
    """The client certificate and key for each route (key material: a Secret, never a ConfigMap)."""
    data: dict[str, str] = {}
    for r in _ordered(routes):
        data[f"{r.id}.crt"] = base64.b64encode(r.client_cert_pem.encode()).decode()
        data[f"{r.id}.key"] = base64.b64encode(r.client_key_pem.encode()).decode()
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(namespace, CLIENTS_SECRET), "type": "Opaque",
            "data": data}


def make_rbac(namespace: str) -> list[Manifest]:
    """Pod and namespace metadata for the `kubernetes` filter; nothing else."""
    cluster_name = f"{NAME}-{namespace}"  # two operators in two namespaces do not collide
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(namespace),
         "automountServiceAccountToken": True},
        {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRole", "metadata": _meta(None, cluster_name),
         "rules": [{"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRoleBinding", "metadata": _meta(None, cluster_name),
         "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": cluster_name},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]},
    ]


def make_daemonset(namespace: str, routes: list[Route], image: str, config_hash: str,
                   clients_hash: str = "") -> Manifest:
    items = [{"key": "fluent-bit.conf", "path": "fluent-bit.conf"}, {"key": "routes.lua", "path": "routes.lua"}]
    items += [{"key": f"ca-{r.id}.crt", "path": f"ca/{r.id}.crt"} for r in _ordered(routes)]
    container = {
        "name": "fluent-bit",
        "image": image,
        "command": ["/fluent-bit/bin/fluent-bit", "-c", f"{CONFIG_DIR}/fluent-bit.conf"],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        # Alive is answering: `/api/v1/health` (Health_Check) fails on output errors, and one
        # stack's aggregator being down must not restart the collector of every stack.
        "livenessProbe": {"httpGet": {"path": "/api/v1/uptime", "port": "metrics"},
                          "initialDelaySeconds": 10, "periodSeconds": 30, "failureThreshold": 5},
        "readinessProbe": {"httpGet": {"path": "/api/v1/uptime", "port": "metrics"}, "periodSeconds": 10},
        "resources": RESOURCES,
        "securityContext": {
            # Root for the 0600 (CRI-O) and 0640 root:root (containerd) log files, with nothing of
            # root's power but DAC_READ_SEARCH (see the module docstring).
            "runAsUser": 0,
            "runAsGroup": 0,
            "runAsNonRoot": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": ["DAC_READ_SEARCH"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "varlog", "mountPath": "/var/log", "readOnly": True},
            {"name": "state", "mountPath": STATE_DIR},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "clients", "mountPath": CLIENT_DIR, "readOnly": True},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(namespace),
        "spec": {
            "selector": {"matchLabels": selector_labels()},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels(), "annotations": {CONFIG_HASH_ANNOTATION: config_hash,
                                                                 CERT_HASH_ANNOTATION: clients_hash}},
                "spec": {
                    "serviceAccountName": NAME,
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    # Agents may run on tainted nodes too; their logs are wanted all the same.
                    "tolerations": [{"operator": "Exists"}],
                    "terminationGracePeriodSeconds": 60,
                    "containers": [container],
                    "volumes": [
                        {"name": "varlog", "hostPath": {"path": "/var/log", "type": "Directory"}},
                        {"name": "state", "hostPath": {"path": STATE_DIR, "type": "DirectoryOrCreate"}},
                        {"name": "config", "configMap": {"name": NAME, "items": items}},
                        {"name": "clients", "secret": {"secretName": CLIENTS_SECRET, "defaultMode": 0o400}},
                    ],
                },
            },
        },
    }


def make_service(namespace: str) -> Manifest:
    """Headless: each stack's Prometheus finds every collector pod through DNS (no RBAC here)."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(namespace),
            "spec": {"clusterIP": "None", "selector": selector_labels(), "publishNotReadyAddresses": True,
                     "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}]}}


def make_network_policy(namespace: str, routes: list[Route]) -> Manifest:
    """Per route, in: metrics from that stack's Prometheus; out: that stack's aggregator, at its
    forward port. Out besides: DNS, and the API server (the `kubernetes` filter reads pod metadata).
    Nothing else, so a collector holding every stack's client keys reaches no Elasticsearch. A stack
    with no route yet (no CA written, no namespace selected) is not admitted until it has one."""
    ingress: list[dict[str, Any]] = []
    out = [egress.dns(), egress.api_server()]
    for r in _ordered(routes):
        ingress.append({"from": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: r.owner_namespace}},
                                  "podSelector": {"matchLabels": _stack_labels(r, PROMETHEUS_COMPONENT)}}],
                        "ports": [{"protocol": "TCP", "port": METRICS_PORT}]})
        # The Service's port is the pods' (targetPort `forward`), which is what a policy sees.
        out.append(egress.to_pods(r.owner_namespace, _stack_labels(r, AGGREGATOR_COMPONENT), r.port))
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(namespace),
        "spec": {"podSelector": {"matchLabels": selector_labels()}, "policyTypes": ["Ingress", "Egress"],
                 "ingress": ingress, "egress": out},
    }


def _stack_labels(route: Route, component: str) -> dict[str, str]:
    """The selector labels of a component of the route's stack (`render.common.selector_labels`)."""
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/instance": route.owner_name}


def render(namespace: str, routes: list[Route], image: str = IMAGE) -> list[Manifest]:
    """Every object of the collector, in apply order; empty when no resource collects logs."""
    if not routes:
        return []
    configmap = make_configmap(namespace, routes)
    clients = make_clients_secret(namespace, routes)
    return [*make_rbac(namespace), configmap, clients,
            make_daemonset(namespace, routes, image, content_hash(configmap["data"]),
                           content_hash(clients["data"])),
            make_service(namespace), make_network_policy(namespace, routes)]
