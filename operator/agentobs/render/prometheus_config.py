"""What Prometheus reads and discovers: `prometheus.yml` (scrape jobs for the stack's own
components, the agents and the log pipeline; the Alertmanager peers alerts go to), the rule files'
ConfigMap, and the least-privilege RBAC its pod discovery needs in each namespace it scrapes.

Pure, like every render module; `render.prometheus` assembles these with the workload. The paths
here are where that workload mounts what the configuration names.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import yaml

from agentobs.render import alertmanager, collector, fluentd, rules
from agentobs.render.addresses import PROMETHEUS_PORT
from agentobs.render.common import Manifest, Owner, metadata, moved_to, selector_labels

COMPONENT = "prometheus"
WEB_PORT = PROMETHEUS_PORT
WEB_USER = "agentobs"
TLS_DIR = "/etc/prometheus/tls"
AUTH_DIR = "/etc/prometheus/auth"
RULES_DIR = "/etc/prometheus/rules"
ALERTMANAGER_AUTH_DIR = "/etc/prometheus/alertmanager-auth"
# `Owner.extra` key: "host:port" of the operator's metrics endpoint. When set, Prometheus scrapes
# it for the certificate expiry the operator exports (the AgentObsCertificateNearExpiry alert).
OPERATOR_METRICS_TARGET = "operator_metrics_target"
REPLICA_LABEL = "replica"
# `Owner.extra` key: namespaces matching the instrumentation's namespace selector, as the
# operator found them (rendering is pure, so reconcile passes them in).
AGENT_NAMESPACES = "agent_namespaces"


def operator_scrape(target: str) -> dict[str, Any]:
    """The operator's metrics, from every replica. Only the leader exports per-resource series
    (certificate expiry, conditions): through a Service, which holds one connection to one pod, a
    stack could scrape a standby for good and its alerts would never fire. A DNS name is resolved
    to all its addresses (the chart's headless Service), each its own target; an address is one."""
    host, _, port = target.rpartition(":")
    job: dict[str, Any] = {"job_name": "agentobs-operator"}
    if _is_address(host):
        job["static_configs"] = [{"targets": [target]}]
    else:
        job["dns_sd_configs"] = [{"names": [host], "type": "A", "port": int(port)}]
    return job


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host == "localhost"
    return True


def _label_meta(label: str) -> str:
    """Prometheus' name for a pod label in Kubernetes service discovery."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label)


# The webhook's annotation naming the resource that instrumented a pod
# (agentobs.admission.injection.INJECTED_ANNOTATION; not imported: that module imports the renderers).
INJECTED_ANNOTATION = "agentobs.io/injected"


def _injected_by_this_or_none(owner: Owner) -> dict[str, Any]:
    """Keep an agent pod unless another resource instrumented it: where two resources' selections
    overlap, the pod's metrics (and the agent alerts on them) belong to the stack that has its
    traces and logs, not to both."""
    meta = "__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-zA-Z0-9_]", "_", INJECTED_ANNOTATION)
    return {"source_labels": [meta], "regex": "|" + re.escape(f"{owner.namespace}/{owner.name}"), "action": "keep"}


def _stack_peers(owner: Owner, component: str, port: int) -> list[dict[str, Any]]:
    """Relabelling that turns pod discovery into one target per pod of a stack component.

    Each target is the pod's stable DNS name through the component's headless Service, which its
    serving certificate covers, and it exists as long as the pod does, ready or not: a replica that
    stopped answering shows up as `up == 0` instead of vanishing from the targets.
    """
    headless = f"{owner.child_name(component)}-headless.{owner.namespace}.svc"
    return [
        *({"source_labels": [_label_meta(k)], "regex": re.escape(v), "action": "keep"}
          for k, v in sorted(selector_labels(owner, component).items())),
        {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "web", "action": "keep"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "__address__",
         "replacement": f"$1.{headless}:{port}"},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
    ]


def _pod_discovery(owner: Owner) -> list[dict[str, Any]]:
    return [{"role": "pod", "namespaces": {"names": [owner.namespace]}}]


def _logging_jobs(owner: Owner) -> list[dict[str, Any]]:
    """The log pipeline: this stack's Fluentd replicas, and the cluster's node collector (found
    through its headless Service's DNS records, which needs no RBAC in the collector namespace)."""
    if not fluentd.enabled(owner):
        return []
    jobs: list[dict[str, Any]] = [{
        "job_name": rules.JOB_LOG_AGGREGATOR,
        "kubernetes_sd_configs": _pod_discovery(owner),
        "relabel_configs": [
            *({"source_labels": [_label_meta(k)], "regex": re.escape(v), "action": "keep"}
              for k, v in sorted(selector_labels(owner, fluentd.COMPONENT).items())),
            {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "metrics", "action": "keep"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }]
    collector_namespace = owner.extra.get(collector.NAMESPACE_EXTRA)
    if collector_namespace:
        jobs.append({
            "job_name": rules.JOB_LOG_COLLECTOR,
            "metrics_path": collector.METRICS_PATH,
            "dns_sd_configs": [{"names": [f"{collector.NAME}.{collector_namespace}.svc"], "type": "A",
                                "port": collector.METRICS_PORT}],
        })
    return jobs


def agent_namespaces(owner: Owner) -> list[str]:
    """Namespaces whose agent pods Prometheus discovers: the resource's own, or, with a namespace
    selector, those the operator found matching it (`Owner.extra[AGENT_NAMESPACES]`)."""
    if not owner.spec.instrumentation.namespace_selector.match_labels:
        return [owner.namespace]
    return sorted(set(owner.extra.get(AGENT_NAMESPACES) or []))


def _agent_discovery(owner: Owner) -> list[dict[str, Any]]:
    """Pods in each namespace the instrumentation selects, by name.

    Names rather than a cluster-wide watch filtered by namespace labels: Prometheus then needs
    pod reads only in those namespaces (a Role in each, `make_prometheus_rbac`), not on every pod
    of the cluster, whose specs may carry other teams' settings. The price is a config change, so
    a rolling restart of the pair, when a namespace starts or stops matching. With no namespace
    matching, the job has no discovery at all (an empty `names` list would mean every namespace).
    """
    names = agent_namespaces(owner)
    return [{"role": "pod", "namespaces": {"names": names}}] if names else []


def make_prometheus_config(owner: Owner) -> dict[str, Any]:
    spec = owner.spec
    selected = spec.instrumentation.pod_selector.match_labels
    keep_selected = [
        {"source_labels": [_label_meta(k)], "regex": re.escape(v), "action": "keep"}
        for k, v in sorted(selected.items())
    ]
    # Fresh dicts at each use: shared ones would come out of the YAML dump as anchors and aliases.
    def tls() -> dict[str, str]:
        return {"ca_file": f"{TLS_DIR}/ca.crt"}

    def alertmanager_auth() -> dict[str, str]:
        return {"username": alertmanager.WEB_USER, "password_file": f"{ALERTMANAGER_AUTH_DIR}/password"}

    alerting = alertmanager.enabled(owner)
    scrape_configs: list[dict[str, Any]] = [
        {
            # Every replica scrapes every replica, so the survivor notices its peer is down.
            "job_name": rules.JOB_PROMETHEUS,
            "scheme": "https",
            "tls_config": tls(),
            "basic_auth": {"username": WEB_USER, "password_file": f"{AUTH_DIR}/password"},
            "kubernetes_sd_configs": _pod_discovery(owner),
            "relabel_configs": _stack_peers(owner, COMPONENT, WEB_PORT),
        },
        *([{
            "job_name": rules.JOB_ALERTMANAGER,
            "scheme": "https",
            "tls_config": tls(),
            "basic_auth": alertmanager_auth(),
            "kubernetes_sd_configs": _pod_discovery(owner),
            "relabel_configs": _stack_peers(owner, alertmanager.COMPONENT, alertmanager.WEB_PORT),
        }] if alerting else []),
        {
            "job_name": rules.JOB_AGENTS,
            # The SDK labels its own series with the agent's name; that wins over the pod label
            # below, which names the agent only for series without one (and for `up`).
            "honor_labels": True,
            "kubernetes_sd_configs": _agent_discovery(owner),
            "relabel_configs": [
                *keep_selected,
                _injected_by_this_or_none(owner),
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
    ]
    operator_target = owner.extra.get(OPERATOR_METRICS_TARGET)
    if operator_target:
        scrape_configs.append(operator_scrape(str(operator_target)))
    scrape_configs += _logging_jobs(owner)
    alerting_relabel = [
        *_stack_peers(owner, alertmanager.COMPONENT, alertmanager.WEB_PORT),
        # Alerts go only to peers that can take them; the scrape job above reports the others.
        {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"},
    ]
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": spec.prometheus.scrape_interval,
            "evaluation_interval": spec.prometheus.scrape_interval,
            # Prometheus 3 expands ${VAR} in external labels: each replica gets its own value,
            # which is what lets a querier deduplicate the HA pair.
            "external_labels": {"agentobs": owner.name, REPLICA_LABEL: "${POD_NAME}"},
        },
        "rule_files": [f"{RULES_DIR}/*.yml"],
    }
    if alerting:
        config["alerting"] = {
            # Both replicas evaluate the same rules and send the same alerts; without their
            # `replica` label the alerts are identical, so Alertmanager groups them as one.
            "alert_relabel_configs": [{"action": "labeldrop", "regex": REPLICA_LABEL}],
            # Every peer gets every alert: the cluster deduplicates, and one lost peer loses nothing.
            "alertmanagers": [{
                "scheme": "https",
                "tls_config": tls(),
                "basic_auth": alertmanager_auth(),
                "kubernetes_sd_configs": _pod_discovery(owner),
                "relabel_configs": alerting_relabel,
            }],
        }
    config["scrape_configs"] = scrape_configs
    return config


def make_rules_configmap(owner: Owner) -> Manifest:
    files = rules.rule_files(owner)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, COMPONENT, owner.child_name(f"{COMPONENT}-rules")),
        "data": {name: yaml.safe_dump(content, sort_keys=False) for name, content in files.items()},
    }


def make_prometheus_configmap(owner: Owner) -> Manifest:
    config = yaml.safe_dump(make_prometheus_config(owner), sort_keys=False)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, COMPONENT),
        "data": {"prometheus.yml": config},
    }


def _discovery_role(owner: Owner, namespace: str) -> list[Manifest]:
    """Pod reads (what `role: pod` discovery lists and watches) in one namespace, bound to the
    Prometheus service account. In another namespace the pair is named after the resource's
    namespace too (two resources of one name must not share it) and has no owner reference (those
    cannot cross namespaces): pruning and the leader's clean-up remove it by its labels."""
    sa = owner.child_name(COMPONENT)
    meta = metadata(owner, COMPONENT)
    if namespace != owner.namespace:
        meta["name"] = f"agentobs-{owner.namespace}-{sa}"
        moved_to(meta, namespace)
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": dict(meta),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": meta["name"]},
         "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": owner.namespace}]},
    ]


def make_prometheus_rbac(owner: Owner) -> list[Manifest]:
    """Least privilege for pod discovery: the resource's namespace (its own peers, Alertmanager and
    agents) and each other namespace whose agents it scrapes, and nothing cluster-wide."""
    out: list[Manifest] = [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(owner, COMPONENT),
                            "automountServiceAccountToken": True}]
    for namespace in [owner.namespace, *(n for n in agent_namespaces(owner) if n != owner.namespace)]:
        out += _discovery_role(owner, namespace)
    return out
