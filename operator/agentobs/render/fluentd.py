"""Fluentd: the DaemonSet that ships the selected agent pods' container logs to Elasticsearch.

The pipeline (`fluent.conf`, rendered here): tail `/var/log/containers/*_<namespace>_*.log` of the
selected namespaces (the kubelet names each file `<pod>_<namespace>_<container>-<id>.log`), split
the CRI line format (`<time> <stream> <P|F> <line>`, what containerd and CRI-O write), add pod and
namespace metadata (`kubernetes_metadata`), keep only pods with the selected labels, parse the
line as JSON when it is JSON (the agent SDK's `trace_id` and `span_id` become top-level fields;
other lines keep their text in `log`), and write to Elasticsearch over TLS with the fluentd user.
Lines whose `logger` is `agentobs.audit` (audit records) go to the audit indices, the rest to the
log indices (names in `es_access`). Each record gets an id hashed from its content and is written
with op `create`: a line read twice (after the buffer volume is lost) is refused as a duplicate
instead of stored twice, and the fluentd role needs no right to overwrite. Each output buffers in
files, bounded in size, and retries with exponential back-off; when the buffer is full, reading
pauses rather than dropping lines.

POD SECURITY EXCEPTION. Reading node log files needs a `hostPath` volume of `/var/log`
(read-only). Pod Security `restricted` and `baseline` both forbid hostPath volumes, so the
namespace of an AgentObservability with `logging.enabled` must be labelled
`pod-security.kubernetes.io/enforce: privileged` (or Fluentd's pods are refused). Everything
else of the pod stays as restricted asks: non-root (uid 65534, with the supplementary group 0
that log files are readable by: the kubelet's runtime writes them 0640 root:root), no
privilege escalation, all capabilities dropped, read-only root filesystem, RuntimeDefault seccomp.

Cluster-scoped RBAC (pods and namespaces, get/list/watch) cannot carry an owner reference to the
namespaced resource; the ClusterRole and its binding are named `agentobs-<namespace>-<name>-fluentd`
and labelled with the owner labels, which is how the operator finds and deletes them.

No PodDisruptionBudget: node drains skip DaemonSet pods, so a budget would guard nothing.

Pure: `render(owner, material)` returns the manifests; `logging.enabled: false` renders nothing.
"""

from __future__ import annotations

import re
from typing import Any

from agentobs.render import es_access
from agentobs.render.addresses import elasticsearch_url
from agentobs.render.common import (
    CONFIG_HASH_ANNOTATION,
    CredentialRequest,
    Manifest,
    Material,
    Owner,
    container_security_context,
    content_hash,
    labels,
    metadata,
    pod_security_context,
    resources,
    selector_labels,
)

COMPONENT = "fluentd"
CONFIG_DIR = "/etc/fluentd"
STATE_DIR = "/var/lib/fluentd"  # read positions and buffers
ES_CA_DIR = "/etc/fluentd/es-ca"
AUDIT_LOGGER = "agentobs.audit"
UID = 65534
LOG_FILES_GROUP = 0
BUFFER_LIMIT = "256MB"  # per output; two outputs share the state volume
STATE_VOLUME_LIMIT = "1Gi"
RBAC_GROUP = "rbac.authorization.k8s.io"


def enabled(owner: Owner) -> bool:
    return owner.spec.logging.enabled


def cluster_rbac_name(owner: Owner) -> str:
    return f"agentobs-{owner.namespace}-{owner.name}-{COMPONENT}"


def selected_namespaces(owner: Owner) -> list[str] | None:
    """Namespaces whose logs are read; None means every namespace, filtered by namespace labels."""
    logging, instrumentation = owner.spec.logging, owner.spec.instrumentation
    if logging.namespaces:
        return sorted(set(logging.namespaces))
    if instrumentation.namespace_selector.match_labels:
        return None
    return [owner.namespace]


def selected_pod_labels(owner: Owner) -> dict[str, str]:
    return dict(owner.spec.logging.pod_labels or owner.spec.instrumentation.pod_selector.match_labels)


def _exact(value: str) -> str:
    return "/^" + re.escape(value).replace("/", "\\/") + "$/"


def _match_label(path: str, key: str, value: str) -> str:
    return f"  <regexp>\n    key $['kubernetes']['{path}']['{key}']\n    pattern {_exact(value)}\n  </regexp>\n"


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
        "    <buffer>\n"
        "      @type file\n"
        f"      path {STATE_DIR}/buffer/{family}\n"
        f"      total_limit_size {BUFFER_LIMIT}\n"
        "      chunk_limit_size 8MB\n"
        "      flush_mode interval\n"
        "      flush_interval 5s\n"
        "      flush_thread_count 2\n"
        "      retry_type exponential_backoff\n"
        "      retry_wait 1s\n"
        "      retry_max_interval 60s\n"
        "      retry_timeout 72h\n"
        "      overflow_action block\n"
        "    </buffer>\n"
        "  </match>\n"
    )


def make_fluent_conf(owner: Owner) -> str:
    namespaces = selected_namespaces(owner)
    paths = ([f"/var/log/containers/*_{ns}_*.log" for ns in namespaces] if namespaces is not None
             else ["/var/log/containers/*.log"])
    own_pods = f"/var/log/containers/{owner.child_name(COMPONENT)}-*_{owner.namespace}_*.log"
    keep = "".join(_match_label("labels", k, v) for k, v in sorted(selected_pod_labels(owner).items()))
    if namespaces is None:
        keep += "".join(_match_label("namespace_labels", k, v) for k, v in
                        sorted(owner.spec.instrumentation.namespace_selector.match_labels.items()))
    audit = re.escape(AUDIT_LOGGER)
    return (
        "<system>\n  log_level info\n</system>\n\n"
        "<source>\n"
        "  @type tail\n"
        "  @id agent-containers\n"
        f"  path {','.join(paths)}\n"
        f"  exclude_path [\"{own_pods}\"]\n"
        f"  pos_file {STATE_DIR}/containers.pos\n"
        "  tag kube.*\n"
        "  read_from_head true\n"
        "  follow_inodes true\n"
        "  refresh_interval 10\n"
        "  <parse>\n"
        "    @type regexp\n"
        "    expression /^(?<time>[^ ]+) (?<stream>stdout|stderr) (?<logtag>[FP]) (?<log>.*)$/\n"
        "    time_format %Y-%m-%dT%H:%M:%S.%N%:z\n"
        "  </parse>\n"
        "</source>\n\n"
        "<filter kube.**>\n"
        "  @type kubernetes_metadata\n"
        "  @id kubernetes-metadata\n"
        "  skip_container_metadata true\n"
        "  skip_master_url true\n"
        "</filter>\n\n"
        # Only the selected agent pods; every <regexp> must match.
        f"<filter kube.**>\n  @type grep\n{keep}</filter>\n\n"
        "<filter kube.**>\n"
        "  @type parser\n"
        "  key_name log\n"
        "  reserve_data true\n"
        "  reserve_time true\n"
        "  remove_key_name_field true\n"
        "  emit_invalid_record_to_error false\n"
        "  replace_invalid_sequence true\n"
        "  <parse>\n    @type json\n  </parse>\n"
        "</filter>\n\n"
        "<filter kube.**>\n"
        "  @type elasticsearch_genid\n"
        "  use_entire_record true\n"
        "  hash_type sha1\n"
        "  hash_id_key _hash\n"
        "</filter>\n\n"
        "<match kube.**>\n"
        "  @type copy\n"
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
        "</label>\n"
    )


def make_configmap(owner: Owner) -> Manifest:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(owner, COMPONENT),
            "data": {"fluent.conf": make_fluent_conf(owner)}}


def _cluster_metadata(owner: Owner) -> dict[str, Any]:
    """Cluster-scoped: no namespace, no owner reference (it cannot point at a namespaced owner)."""
    return {"name": cluster_rbac_name(owner), "labels": labels(owner, COMPONENT)}


def make_rbac(owner: Owner) -> list[Manifest]:
    """Read-only pod and namespace metadata, cluster-wide (agent pods may be in any namespace)."""
    name = owner.child_name(COMPONENT)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(owner, COMPONENT),
         "automountServiceAccountToken": True},
        {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRole", "metadata": _cluster_metadata(owner),
         "rules": [{"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRoleBinding", "metadata": _cluster_metadata(owner),
         "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": cluster_rbac_name(owner)},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}]},
    ]


def make_daemonset(owner: Owner, config_hash: str) -> Manifest:
    name = owner.child_name(COMPONENT)
    env = [*es_access.credential_env(owner, "fluentd", "ES_USERNAME", "ES_PASSWORD"),
           {"name": "HOME", "value": "/tmp"}]  # noqa: S108 (an emptyDir, private to the pod)
    mounts = [{"name": "varlog", "mountPath": "/var/log", "readOnly": True},
              {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
              {"name": "state", "mountPath": STATE_DIR},
              {"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108 (an emptyDir, private to the pod)
    volumes: list[dict[str, Any]] = [
        # The Pod Security exception of this component (see the module docstring).
        {"name": "varlog", "hostPath": {"path": "/var/log", "type": "Directory"}},
        {"name": "config", "configMap": {"name": name}},
        {"name": "state", "emptyDir": {"sizeLimit": STATE_VOLUME_LIMIT}},
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
        "command": ["fluentd", "-c", f"{CONFIG_DIR}/fluent.conf", "-p", "/fluentd/plugins",
                    "--gemfile", "/fluentd/Gemfile"],
        "env": env,
        "resources": resources(owner.spec.logging.resources),
        "securityContext": container_security_context(),
        "volumeMounts": mounts,
    }
    security = pod_security_context(UID) | {"supplementalGroups": [LOG_FILES_GROUP]}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": metadata(owner, COMPONENT),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner, COMPONENT)},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": metadata(owner, COMPONENT)["labels"],
                             "annotations": {CONFIG_HASH_ANNOTATION: config_hash}},
                "spec": {
                    "serviceAccountName": name,
                    "securityContext": security,
                    # Agents may run on tainted nodes too; their logs are wanted all the same.
                    "tolerations": [{"operator": "Exists"}],
                    "terminationGracePeriodSeconds": 60,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def make_network_policy(owner: Owner) -> Manifest:
    """Nothing connects to Fluentd: it only reads files and sends."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata(owner, COMPONENT),
            "spec": {"podSelector": {"matchLabels": selector_labels(owner, COMPONENT)},
                     "policyTypes": ["Ingress"], "ingress": []}}


def certificates(owner: Owner) -> dict[str, list[str]]:
    return {}  # Fluentd serves nothing


def credentials(owner: Owner) -> list[CredentialRequest]:
    return []  # the fluentd user is made with the provisioned Elasticsearch (or given for an external one)


def endpoints(owner: Owner) -> dict[str, str]:
    return {}


def render(owner: Owner, material: Material) -> list[Manifest]:
    if not enabled(owner):
        return []
    configmap = make_configmap(owner)
    return [*make_rbac(owner), configmap, make_daemonset(owner, content_hash(configmap["data"])),
            make_network_policy(owner)]
