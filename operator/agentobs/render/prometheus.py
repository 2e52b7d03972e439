"""Prometheus: the HA StatefulSet, its Services, configuration, alert rules, RBAC for discovery,
its PDB and NetworkPolicy.

Every function is pure: `render(owner, material)` returns the manifests, and the same owner always
renders the same objects (the config hash on the pod template rolls the pods when the config or the
rules change). The rules themselves are `render.rules`; alerts go to every Alertmanager peer over
TLS with basic auth.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from agentobs.render import alertmanager, collector, egress, fluentd, rules
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
from agentobs.render.tls import (
    basic_auth_recipe,
    certificate_hash,
    service_dns_names,
    tls_secret_name,
    web_server_config,
)

COMPONENT = "prometheus"
WEB_PORT = PROMETHEUS_PORT
WEB_AUTH_SUFFIX = "prometheus-web-auth"
WEB_USER = "agentobs"
TLS_DIR = "/etc/prometheus/tls"
AUTH_DIR = "/etc/prometheus/auth"
WEB_CONFIG_DIR = "/etc/prometheus/web"
RULES_DIR = "/etc/prometheus/rules"
ALERTMANAGER_AUTH_DIR = "/etc/prometheus/alertmanager-auth"
# `Owner.extra` key: "host:port" of the operator's metrics endpoint. When set, Prometheus scrapes
# it for the certificate expiry the operator exports (the AgentObsCertificateNearExpiry alert).
OPERATOR_METRICS_TARGET = "operator_metrics_target"
GRAFANA_COMPONENT = "grafana"  # spelled here rather than imported: grafana imports this module
REPLICA_LABEL = "replica"
# `Owner.extra` key: namespaces matching the instrumentation's namespace selector, as the
# operator found them (rendering is pure, so reconcile passes them in).
AGENT_NAMESPACES = "agent_namespaces"
PROBE_FILE = "probe.yml"


def _label_meta(label: str) -> str:
    """Prometheus' name for a pod label in Kubernetes service discovery."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label)


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


def enabled(owner: Owner) -> bool:
    return owner.spec.prometheus.enabled


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
        scrape_configs.append({"job_name": "agentobs-operator", "static_configs": [{"targets": [operator_target]}]})
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


def probe_client_config() -> dict[str, Any]:
    """What the readiness probe's `promtool` uses to reach the web server: the password from the
    mounted file, the CA from the mounted certificate; no credential in the pod spec."""
    return {"basic_auth": {"username": WEB_USER, "password_file": f"{AUTH_DIR}/password"},
            "tls_config": {"ca_file": f"{TLS_DIR}/ca.crt", "server_name": "localhost"}}


def make_web_config_secret(owner: Owner, password_bcrypt: str) -> Manifest:
    """Prometheus' own web server: TLS with the operator's certificate, and basic auth; and the
    readiness probe's client settings."""
    web = web_server_config(TLS_DIR, WEB_USER, password_bcrypt)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(owner, COMPONENT, owner.child_name(f"{COMPONENT}-web-config")),
        "type": "Opaque",
        "stringData": {"web.yml": yaml.safe_dump(web, sort_keys=True),
                       PROBE_FILE: yaml.safe_dump(probe_client_config(), sort_keys=True)},
    }


def readiness_probe() -> dict[str, Any]:
    """Ready once `/-/ready` answers 200, i.e. after the WAL replay and the first config load.

    Every path of the web server needs basic auth, and an httpGet probe can only send a header
    written into the pod spec. The image's own `promtool check ready` reads the password from
    the mounted file instead (`probe_client_config`), over TLS to `localhost`, which the
    certificate names.
    """
    return {"exec": {"command": ["/bin/promtool", "check", "ready", f"--url=https://localhost:{WEB_PORT}",
                                 f"--http.config.file={WEB_CONFIG_DIR}/{PROBE_FILE}"]},
            "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}


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
        # The replicas scrape at slightly different instants, so the same query differs a little
        # between them: one client (a Grafana pod) stays on one replica and its panels do not
        # jitter from refresh to refresh. A replica's loss moves the client to the other.
        "spec": {"type": "ClusterIP", "selector": selector_labels(owner, COMPONENT), "ports": ports,
                 "sessionAffinity": "ClientIP"},
    }
    return [headless, client]


def _discovery_role(owner: Owner, namespace: str) -> list[Manifest]:
    """Pod reads (what `role: pod` discovery lists and watches) in one namespace, bound to the
    Prometheus service account. In another namespace the pair is named after the resource's
    namespace too (two resources of one name must not share it) and has no owner reference (those
    cannot cross namespaces): pruning and the leader's clean-up remove it by its labels."""
    sa = owner.child_name(COMPONENT)
    meta = metadata(owner, COMPONENT)
    if namespace != owner.namespace:
        meta["name"], meta["namespace"] = f"agentobs-{owner.namespace}-{sa}", namespace
        del meta["ownerReferences"]
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
        "readinessProbe": readiness_probe(),
        # Alive while the listener answers: it opens before the WAL replay, which can take long
        # and must not get the pod killed.
        "livenessProbe": {"tcpSocket": {"port": "web"}, "periodSeconds": 15, "failureThreshold": 6},
        "resources": resources(spec.resources),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/prometheus/config", "readOnly": True},
            {"name": "web-config", "mountPath": WEB_CONFIG_DIR, "readOnly": True},
            {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
            {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True},
            {"name": "rules", "mountPath": RULES_DIR, "readOnly": True},
            *([{"name": "alertmanager-auth", "mountPath": ALERTMANAGER_AUTH_DIR, "readOnly": True}]
              if alertmanager.enabled(owner) else []),
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
                        {"name": "rules", "configMap": {"name": f"{name}-rules"}},
                        *([{"name": "alertmanager-auth",
                            "secret": {"secretName": owner.child_name(alertmanager.WEB_AUTH_SUFFIX),
                                       "items": [{"key": "password", "path": "password"}]}}]
                          if alertmanager.enabled(owner) else []),
                    ],
                },
            },
            "volumeClaimTemplates": [
                {"metadata": {"name": "data", "labels": metadata(owner, COMPONENT)["labels"]},
                 "spec": claim_spec}
            ],
        },
    }


def make_network_policy(owner: Owner) -> Manifest:
    """Ingress from Grafana and the peer replica; egress to what Prometheus scrapes and alerts."""
    ingress = [
        # Grafana queries Prometheus for every dashboard panel; the replicas scrape each
        # other to notice a peer is down.
        {"from": [{"podSelector": {"matchLabels": selector_labels(owner, GRAFANA_COMPONENT)}},
                  {"podSelector": {"matchLabels": selector_labels(owner, COMPONENT)}}],
         "ports": [{"port": WEB_PORT, "protocol": "TCP"}]},
    ]
    out = [egress.dns(), egress.to_component(owner, COMPONENT, WEB_PORT),
           egress.agents(owner, owner.spec.instrumentation.metrics_port), egress.api_server()]
    if alertmanager.enabled(owner):
        out.insert(2, egress.to_component(owner, alertmanager.COMPONENT, alertmanager.WEB_PORT))
    if fluentd.enabled(owner):  # the log pipeline's metrics: this stack's aggregator, the node collector
        out.append(egress.to_component(owner, fluentd.COMPONENT, fluentd.METRICS_PORT))
        if collector_namespace := owner.extra.get(collector.NAMESPACE_EXTRA):
            out.append(egress.to_pods(collector_namespace, collector.selector_labels(), collector.METRICS_PORT))
    port = str(owner.extra.get(OPERATOR_METRICS_TARGET) or "").rpartition(":")[2]
    if port.isdigit():  # the operator's metrics Service: a host of the chart's choosing
        out.append(egress.any_address(int(port)))
    return egress.policy(owner, COMPONENT, ingress, out)


def certificates(owner: Owner) -> dict[str, list[str]]:
    if not enabled(owner):
        return {}
    name = owner.child_name(COMPONENT)
    return {COMPONENT: [*service_dns_names(owner, name, headless=f"{name}-headless"), "localhost"]}


def credentials(owner: Owner) -> list[CredentialRequest]:
    if not enabled(owner):
        return []
    return [CredentialRequest(COMPONENT, WEB_AUTH_SUFFIX, basic_auth_recipe(WEB_USER))]


def endpoints(owner: Owner) -> dict[str, str]:
    return {"prometheus": prometheus_url(owner)} if enabled(owner) else {}


def render(owner: Owner, material: Material) -> list[Manifest]:
    if not enabled(owner):
        return []
    configmap = make_prometheus_configmap(owner)
    rules_configmap = make_rules_configmap(owner)
    web_config = make_web_config_secret(owner, material.credentials[WEB_AUTH_SUFFIX]["password.bcrypt"])
    # Prometheus reads its config and rules only at start (no reloader runs beside it), so a change
    # of either rolls the pods.
    config_hash = content_hash(configmap["data"], rules_configmap["data"], web_config["stringData"])
    return [
        *make_prometheus_rbac(owner),
        configmap,
        rules_configmap,
        web_config,
        *make_prometheus_services(owner),
        make_prometheus_statefulset(owner, config_hash, certificate_hash(material, COMPONENT)),
        pod_disruption_budget(owner, COMPONENT),
        make_network_policy(owner),
    ]
