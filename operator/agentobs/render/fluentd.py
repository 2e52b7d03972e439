"""The Fluentd aggregator of one resource: receives its agents' records from the node collector
and writes them to Elasticsearch.

Where it sits: the cluster's one node collector (`render.collector`, Fluent Bit in the operator's
namespace) tails the nodes' container logs and forwards the records of the pods this resource
selects (by namespace and pod labels) to this aggregator, over TLS with this resource's CA. The
aggregator is an ordinary workload of the team's namespace (Pod Security `restricted`) and the
only holder of the stack's `fluentd` Elasticsearch credentials.

The pipeline (`fluent.conf`, checked parameter by parameter against the pinned image's fluentd
1.19.3, fluent-plugin-elasticsearch 5.4.4 and fluent-plugin-prometheus 2.2.2):

- `forward` input on mutual TLS (this resource's serving certificate; the sender must present a
  certificate of this resource's CA, which only the node collector holds); the collector waits
  for the ack, which Fluentd sends once the records are in its file buffer;
- a document id per record (`elasticsearch_genid` with `use_record_as_seed`: in 5.4.4 the id is
  a random UUID unless that is on) hashed from the file, byte offset, runtime timestamp (ns),
  stream and raw line: the same line sent twice (a collector retry, a re-read after a lost
  position) gets the same id, and two identical lines never collapse;
- the line parsed as JSON when it is JSON (the SDK's `trace_id` and `span_id` become fields);
- audit records (`logger` = `agentobs.audit`) to the audit indices, the rest to the logs indices
  (names in `es_access`), written with op `create`: a duplicate id is refused by Elasticsearch and
  counted as a duplicate, never stored twice, and the role needs no right to overwrite;
- records Elasticsearch refuses (400, e.g. a mapping conflict) go to the `@ERROR` label: counted
  (`fluentd_dead_letter_records_total`, alert `AgentObsLogDeadLetters`) and written as JSON lines
  under `dead-letter/` on the buffer volume, to be inspected and re-sent by hand;
- buffers in files on the replica's PersistentVolumeClaim (they survive restarts and rolls),
  retried forever with back-off; when full, the forward input refuses (no ack) and the
  collector keeps the records on the node.

An init container waits until Elasticsearch holds this resource's index templates and lifecycle
policies (`retention.templates_hash`), so no logs or audit index is created by dynamic mapping.

Pure: `render(owner, material)` returns the manifests; `logging.enabled: false` renders nothing.
"""

from __future__ import annotations

import re
from typing import Any

from agentobs.api.formats import parse_quantity
from agentobs.render import egress, es_access, retention
from agentobs.render.addresses import elasticsearch_url
from agentobs.render.collector import NAMESPACE_EXTRA
from agentobs.render.collector import selector_labels as collector_selector_labels
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

COMPONENT = "fluentd"
CONFIG_DIR = "/etc/fluentd"
TLS_DIR = "/etc/fluentd/tls"
ES_CA_DIR = "/etc/fluentd/es-ca"
STATE_DIR = "/var/lib/fluentd"  # the PersistentVolumeClaim: buffers and dead letters
AUDIT_LOGGER = "agentobs.audit"
UID = 65534
FORWARD_PORT = 24224
COLLECTOR_CLIENT = "log-collector"  # the component of the collector's client certificate
COLLECTOR_CLIENT_NAME = "agentobs-log-collector"  # its name (no host has it: it is a client's)
METRICS_PORT = 24231
PROMETHEUS_COMPONENT = "prometheus"  # spelled here: prometheus imports this module
# The buffers share the volume in these proportions, within BUFFER_VOLUME_SHARE of it: the rest is
# for the dead-letter files themselves and Fluentd's own state. A fixed size would outgrow a small
# volume (the disk fills before the buffer says it is full) and waste a large one.
BUFFER_SHARES = {"logs": 4, "audit": 2, "dead-letter": 1}
BUFFER_VOLUME_SHARE = 0.7
BUFFER_FLOOR_MB = 32  # four chunks: a smaller buffer could not hold a chunk being written and flushed
DEAD_LETTER_METRIC = "fluentd_dead_letter_records_total"
ID_SEED_KEYS = ("file", "offset", "time", "stream", "log")  # set by the collector's tail and cri parser


def enabled(owner: Owner) -> bool:
    return owner.spec.logging.enabled


def selected_namespaces(owner: Owner) -> list[str] | None:
    """Namespaces whose logs are collected; None means those the namespace selector matches."""
    logging, instrumentation = owner.spec.logging, owner.spec.instrumentation
    if logging.namespaces:
        return sorted(set(logging.namespaces))
    if instrumentation.namespace_selector.match_labels:
        return None
    return [owner.namespace]


def selected_pod_labels(owner: Owner) -> dict[str, str]:
    return dict(owner.spec.logging.pod_labels or owner.spec.instrumentation.pod_selector.match_labels)


def service_host(owner: Owner) -> str:
    return owner.service_host(COMPONENT)


def headless_name(owner: Owner) -> str:
    return owner.child_name(f"{COMPONENT}-headless")


def buffer_limits(owner: Owner) -> dict[str, int]:
    """Each buffer's total_limit_size in MiB (Fluentd's MB), from the size of the buffer volume."""
    volume = parse_quantity(owner.spec.logging.storage.size)
    per_share = volume * BUFFER_VOLUME_SHARE / sum(BUFFER_SHARES.values()) / 2**20
    return {family: max(BUFFER_FLOOR_MB, int(per_share * share)) for family, share in BUFFER_SHARES.items()}


def _size(mib: int) -> str:
    """In Fluentd's units (GB and MB are GiB and MiB); whole GiB as such, so that the default
    volume renders the configuration it always had and an upgrade rolls no aggregator for it."""
    return f"{mib // 1024}GB" if mib % 1024 == 0 else f"{mib}MB"


def _buffer(owner: Owner, family: str, chunk_keys: str = "", timekey: str = "") -> str:
    return (
        f"    <buffer{' ' + chunk_keys if chunk_keys else ''}>\n"
        "      @type file\n"
        f"      path {STATE_DIR}/buffer/{family}\n"
        f"      total_limit_size {_size(buffer_limits(owner)[family])}\n"
        "      chunk_limit_size 8MB\n"
        + (f"      timekey {timekey}\n      timekey_wait 1m\n" if timekey else "")
        + "      flush_mode interval\n"
        "      flush_interval 5s\n"
        "      flush_thread_count 2\n"
        "      flush_at_shutdown true\n"
        "      retry_type exponential_backoff\n"
        "      retry_wait 1s\n"
        "      retry_max_interval 60s\n"
        "      retry_forever true\n"
        # Full: refuse the forward input's records (no ack), so the collector keeps them on the node.
        "      overflow_action throw_exception\n"
        "    </buffer>\n"
    )


def _es_output(owner: Owner, family: str, index_prefix: str) -> str:
    ca = (f"    ca_file {ES_CA_DIR}/{es_access.CA_FILE}\n"
          if es_access.ca_volume(owner, "es-ca") is not None else "")
    return (
        "  <match **>\n"
        "    @type elasticsearch\n"
        f"    @id elasticsearch-{family}\n"
        f"    hosts {elasticsearch_url(owner)}\n"
        "    user \"#{ENV['ES_USERNAME']}\"\n"
        "    password \"#{ENV['ES_PASSWORD']}\"\n"
        "    ssl_verify true\n"
        f"{ca}"
        "    suppress_type_name true\n"
        "    verify_es_version_at_startup true\n"
        "    default_elasticsearch_version 8\n"
        "    logstash_format true\n"
        f"    logstash_prefix {index_prefix}\n"
        "    logstash_prefix_separator -\n"
        "    logstash_dateformat %Y.%m.%d\n"
        "    id_key _hash\n"
        "    remove_keys _hash\n"
        "    write_operation create\n"
        "    reconnect_on_error true\n"
        "    reload_connections false\n"
        "    request_timeout 30s\n"
        "    log_es_400_reason true\n"
        f"{_buffer(owner, family)}"
        "  </match>\n"
    )


def make_fluent_conf(owner: Owner) -> str:
    audit = re.escape(AUDIT_LOGGER)
    return (
        "<system>\n  log_level info\n</system>\n\n"
        "<source>\n"
        "  @type forward\n"
        "  @id forward\n"
        f"  port {FORWARD_PORT}\n"
        "  bind 0.0.0.0\n"
        "  <transport tls>\n"
        f"    cert_path {TLS_DIR}/tls.crt\n"
        f"    private_key_path {TLS_DIR}/tls.key\n"
        # Mutual TLS: only a client certificate of this stack's CA (the node collector's) may send.
        f"    ca_path {TLS_DIR}/ca.crt\n"
        "    client_cert_auth true\n"
        "    min_version TLS1_2\n"
        "  </transport>\n"
        "</source>\n\n"
        "<source>\n"
        "  @type prometheus\n"
        "  @id prometheus\n"
        "  bind 0.0.0.0\n"
        f"  port {METRICS_PORT}\n"
        "  metrics_path /metrics\n"
        "</source>\n\n"
        "<source>\n"
        "  @type prometheus_output_monitor\n"
        "  @id prometheus-output-monitor\n"
        "</source>\n\n"
        # The id before anything rewrites the record: it must come from what the collector read.
        "<filter **>\n"
        "  @type elasticsearch_genid\n"
        "  @id document-id\n"
        "  use_record_as_seed true\n"
        f"  record_keys {','.join(ID_SEED_KEYS)}\n"
        "  include_time_in_seed true\n"
        "  hash_type sha256\n"
        "  hash_id_key _hash\n"
        "</filter>\n\n"
        "<filter **>\n"
        "  @type record_transformer\n"
        "  @id drop-routing-keys\n"
        "  remove_keys agentobs_route,_p\n"
        "</filter>\n\n"
        "<filter **>\n"
        "  @type parser\n"
        "  @id json-lines\n"
        "  key_name log\n"
        "  reserve_data true\n"
        "  reserve_time true\n"
        "  remove_key_name_field true\n"
        "  emit_invalid_record_to_error false\n"
        "  replace_invalid_sequence true\n"
        "  <parse>\n    @type json\n  </parse>\n"
        "</filter>\n\n"
        "<match **>\n"
        "  @type copy\n"
        "  @id split\n"
        "  <store>\n    @type relabel\n    @label @AGENT_LOGS\n  </store>\n"
        "  <store>\n    @type relabel\n    @label @AGENT_AUDIT\n  </store>\n"
        "</match>\n\n"
        "<label @AGENT_LOGS>\n"
        f"  <filter **>\n    @type grep\n    <exclude>\n      key logger\n      pattern /^{audit}$/\n"
        "    </exclude>\n  </filter>\n"
        f"{_es_output(owner, 'logs', es_access.logs_index_prefix(owner))}"
        "</label>\n\n"
        "<label @AGENT_AUDIT>\n"
        f"  <filter **>\n    @type grep\n    <regexp>\n      key logger\n      pattern /^{audit}$/\n"
        "    </regexp>\n  </filter>\n"
        f"{_es_output(owner, 'audit', es_access.audit_index_prefix(owner))}"
        "</label>\n\n"
        # Dead letters: what Elasticsearch refused, counted and kept on the volume.
        "<label @ERROR>\n"
        "  <filter **>\n"
        "    @type prometheus\n"
        "    @id dead-letter-count\n"
        "    <metric>\n"
        f"      name {DEAD_LETTER_METRIC}\n"
        "      type counter\n"
        "      desc Records Elasticsearch refused, kept in the dead-letter files of the buffer volume.\n"
        "    </metric>\n"
        "  </filter>\n"
        "  <match **>\n"
        "    @type file\n"
        "    @id dead-letter\n"
        f"    path {STATE_DIR}/dead-letter/${{tag}}.%Y%m%d\n"
        "    append true\n"
        "    <format>\n      @type json\n    </format>\n"
        f"{_buffer(owner, 'dead-letter', 'tag,time', timekey='1d')}"
        "  </match>\n"
        "</label>\n"
    )


def make_configmap(owner: Owner) -> Manifest:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(owner, COMPONENT),
            "data": {"fluent.conf": make_fluent_conf(owner)}}


def make_services(owner: Owner) -> list[Manifest]:
    """The collector's target (load-balanced), and the headless Service of the StatefulSet."""
    ports = [{"name": "forward", "port": FORWARD_PORT, "targetPort": "forward", "protocol": "TCP"}]
    headless_ports = [*ports, {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}]
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": metadata(owner, COMPONENT),
         "spec": {"selector": selector_labels(owner, COMPONENT), "ports": ports}},
        {"apiVersion": "v1", "kind": "Service", "metadata": metadata(owner, COMPONENT, headless_name(owner)),
         "spec": {"clusterIP": "None", "selector": selector_labels(owner, COMPONENT), "ports": headless_ports,
                  "publishNotReadyAddresses": True}},
    ]


def make_statefulset(owner: Owner, config_hash: str, cert_hash: str) -> Manifest:
    spec = owner.spec.logging
    name = owner.child_name(COMPONENT)
    claim_spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                                  "resources": {"requests": {"storage": spec.storage.size}}}
    if spec.storage.storage_class_name:
        claim_spec["storageClassName"] = spec.storage.storage_class_name
    mounts = [{"name": "config", "mountPath": CONFIG_DIR + "/conf", "readOnly": True},
              {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
              {"name": "buffer", "mountPath": STATE_DIR},
              {"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108 (an emptyDir, private to the pod)
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": name}},
        {"name": "tls", "secret": {"secretName": tls_secret_name(owner, COMPONENT)}},
        {"name": "tmp", "emptyDir": {}},
    ]
    ca = es_access.ca_volume(owner, "es-ca")
    if ca is not None:
        mounts.append({"name": "es-ca", "mountPath": ES_CA_DIR, "readOnly": True})
        volumes.append(ca)
    container = {
        "name": COMPONENT,
        "image": owner.spec.images.fluentd,
        # The image's entrypoint edits its own config files; start Fluentd on ours directly.
        "command": ["fluentd", "-c", f"{CONFIG_DIR}/conf/fluent.conf", "-p", "/fluentd/plugins",
                    "--gemfile", "/fluentd/Gemfile"],
        "env": [*es_access.credential_env(owner, "fluentd", "ES_USERNAME", "ES_PASSWORD"),
                {"name": "HOME", "value": "/tmp"}],  # noqa: S108 (an emptyDir, private to the pod)
        "ports": [{"name": "forward", "containerPort": FORWARD_PORT, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": "forward"}, "periodSeconds": 10},
        "livenessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 30,
                          "failureThreshold": 5},
        "resources": resources(spec.resources),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(owner, COMPONENT),
        "spec": {
            "serviceName": headless_name(owner),
            "replicas": spec.replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": selector_labels(owner, COMPONENT)},
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Retain" if spec.storage.keep_on_delete else "Delete",
                # A replica scaled away may hold unflushed records: its volume waits for it.
                "whenScaled": "Retain",
            },
            "template": {
                "metadata": {"labels": metadata(owner, COMPONENT)["labels"],
                             "annotations": {CONFIG_HASH_ANNOTATION: config_hash, CERT_HASH_ANNOTATION: cert_hash}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security_context(UID),
                    "topologySpreadConstraints": spread_replicas(owner, COMPONENT),
                    # Time to flush the buffers on a roll (flush_at_shutdown).
                    "terminationGracePeriodSeconds": 60,
                    "initContainers": [retention.make_wait_container(owner, "fluentd", "es-ca", ES_CA_DIR)],
                    "containers": [container],
                    "volumes": volumes,
                },
            },
            "volumeClaimTemplates": [
                {"metadata": {"name": "buffer", "labels": metadata(owner, COMPONENT)["labels"]}, "spec": claim_spec}
            ],
        },
    }


def make_network_policy(owner: Owner) -> Manifest:
    """In: forward from the node collector's pods only, metrics from this stack's Prometheus. Out:
    Elasticsearch (the stack's, or the external cluster's port) and DNS; nothing else."""
    collector_ns = owner.extra.get(NAMESPACE_EXTRA)
    namespace_selector = ({"matchLabels": {"kubernetes.io/metadata.name": collector_ns}}
                          if collector_ns else {})
    ingress = [
        {"from": [{"namespaceSelector": namespace_selector,
                   "podSelector": {"matchLabels": collector_selector_labels()}}],
         "ports": [{"port": FORWARD_PORT, "protocol": "TCP"}]},
        {"from": [{"podSelector": {"matchLabels": selector_labels(owner, PROMETHEUS_COMPONENT)}}],
         "ports": [{"port": METRICS_PORT, "protocol": "TCP"}]},
    ]
    return egress.policy(owner, COMPONENT, ingress, [egress.dns(), egress.elasticsearch(owner)])


def certificates(owner: Owner) -> dict[str, list[str]]:
    """The aggregator's serving certificate, and the node collector's client certificate for this
    stack (`<name>-log-collector-tls`; the operator copies it to the collector's namespace)."""
    if not enabled(owner):
        return {}
    return {COMPONENT: service_dns_names(owner, owner.child_name(COMPONENT), headless_name(owner)),
            COLLECTOR_CLIENT: [COLLECTOR_CLIENT_NAME]}


def credentials(owner: Owner) -> list[CredentialRequest]:
    return []  # the fluentd user is made with the provisioned Elasticsearch (or given for an external one)


def endpoints(owner: Owner) -> dict[str, str]:
    return {}


def render(owner: Owner, material: Material) -> list[Manifest]:
    if not enabled(owner):
        return []
    configmap = make_configmap(owner)
    out = [configmap, *make_services(owner),
           make_statefulset(owner, content_hash(configmap["data"]), certificate_hash(material, COMPONENT)),
           make_network_policy(owner), *disruption_budgets(owner, COMPONENT, owner.spec.logging.replicas)]
    return out
