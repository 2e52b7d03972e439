"""The injection contract: which resource instruments a pod, and the pod it becomes. Pure.

`InjectionConfig` is what one `AgentObservability` injects, with a digest of it; `choose` picks the
config for a pod; `inject` returns the mutated pod. The webhook turns the difference into a JSON
patch. Injection only ever adds: a variable, volume, mount, label or annotation the pod already
has is left as it is, so a second pass changes nothing and users can override any setting.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jsonpatch

from agentobs.render import audit_key
from agentobs.render.addresses import otlp_grpc_url
from agentobs.render.common import Owner, content_hash
from agentobs.render.tls import CA_BUNDLE_KEY, ca_bundle_name

INJECT_ANNOTATION = "agentobs.io/inject"
INJECTED_ANNOTATION = "agentobs.io/injected"
DIGEST_ANNOTATION = "agentobs.io/injection-digest"
CONTAINERS_ANNOTATION = "agentobs.io/container-names"
SERVICE_NAME_ANNOTATION = "resource.opentelemetry.io/service.name"
LOGS_LABEL = "agentobs.io/logs"
AGENT_NAME_LABEL = "agentobs.io/agent-name"
AGENT_ID_LABEL = "agentobs.io/agent-id"
CA_VOLUME = "agentobs-ca"
CA_DIR = "/var/run/agentobs/ca"
AUDIT_VOLUME = "agentobs-audit"
AUDIT_DIR = "/var/lib/agentobs/audit"
AUDIT_KEY_VOLUME = "agentobs-audit-key"
AUDIT_KEY_DIR = "/var/run/agentobs/audit-key"

Pod = dict[str, Any]


@dataclass(frozen=True)
class InjectionConfig:
    """What one resource injects into the pods it selects."""

    namespace: str
    name: str
    pod_selector: dict[str, str]
    namespace_selector: dict[str, str]
    env: dict[str, str]  # fixed variables, the same for every pod
    metrics_port: int
    ca_configmap: str
    audit_key_secret: str = ""
    digest: str = field(default="")

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def selects_namespace(self, namespace: str, namespace_labels: dict[str, str]) -> bool:
        if not self.namespace_selector:
            return namespace == self.namespace
        return all(namespace_labels.get(k) == v for k, v in self.namespace_selector.items())

    def selects_pod(self, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.pod_selector.items())


def make_config(owner: Owner) -> InjectionConfig | None:
    """The injection config of a resource, or None when its instrumentation is off."""
    inst = owner.spec.instrumentation
    if not inst.enabled:
        return None
    if owner.spec.tracing.enabled:
        tracing = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_grpc_url(owner),
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_CERTIFICATE": f"{CA_DIR}/{CA_BUNDLE_KEY}",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": repr(float(inst.sampling_ratio)),
        }
    else:
        # No collector to send to: no endpoint (the agentobs SDK then exports no traces), and the
        # standard variable that stops other OpenTelemetry SDKs from trying their localhost default.
        tracing = {"OTEL_TRACES_EXPORTER": "none"}
    env = {
        **tracing,
        # The latest GenAI semantic conventions (agentobs_sdk.semconv.PROJECT_DEFAULT_OPT_IN): the
        # names the stack's rules and dashboards query (tests/unit/test_series_contract.py).
        "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
        "AGENTOBS_METRICS_PORT": str(inst.metrics_port),
        "AGENTOBS_AUDIT_DIR": AUDIT_DIR,
        "AGENTOBS_AUDIT_RETENTION_DAYS": str(owner.spec.audit.retention_days),
        "AGENTOBS_AUDIT_KEY_FILE": f"{AUDIT_KEY_DIR}/{audit_key.KEY}",
    }
    if inst.model_prices:
        env["AGENTOBS_PRICES"] = json.dumps(
            {model: price.model_dump(exclude_none=True) for model, price in sorted(inst.model_prices.items())},
            separators=(",", ":"))
    config = InjectionConfig(
        namespace=owner.namespace,
        name=owner.name,
        pod_selector=dict(inst.pod_selector.match_labels),
        namespace_selector=dict(inst.namespace_selector.match_labels),
        env=env,
        metrics_port=inst.metrics_port,
        ca_configmap=ca_bundle_name(owner),
        audit_key_secret=audit_key.secret_name(owner),
    )
    extra = dict(sorted(inst.resource_attributes.items()))
    digest = content_hash(env, extra, config.ca_configmap, config.audit_key_secret)
    return InjectionConfig(**{**config.__dict__, "digest": digest, "env": {**env, **_extra_env(extra)}})


def _extra_env(attributes: dict[str, str]) -> dict[str, str]:
    # Carried in a variable of our own, merged into OTEL_RESOURCE_ATTRIBUTES per container.
    return {"AGENTOBS_EXTRA_RESOURCE_ATTRIBUTES": ",".join(f"{k}={v}" for k, v in attributes.items())} \
        if attributes else {}


class ConfigIndex:
    """The configs of every resource, by where they can apply. A pod's admission looks at the
    configs of its own namespace, at those that select namespaces by label, and at the one its
    annotation names: with a resource per team, a scan of every config for each pod admitted would
    cost each pod more the more teams the cluster has."""

    def __init__(self) -> None:
        self._by_key: dict[str, InjectionConfig] = {}
        self._local: dict[str, dict[str, InjectionConfig]] = {}  # namespace -> key -> config
        self._selecting: dict[str, InjectionConfig] = {}  # configs with a namespace selector

    def put(self, config: InjectionConfig) -> None:
        """Add or replace a config. The new one is in place before the old one leaves, so a pod
        admitted meanwhile never finds its resource missing."""
        key = config.key
        self._by_key[key] = config
        if config.namespace_selector:
            self._selecting[key] = config
            self._drop_local(config.namespace, key)
        else:
            self._local.setdefault(config.namespace, {})[key] = config
            self._selecting.pop(key, None)

    def pop(self, key: str) -> None:
        old = self._by_key.pop(key, None)
        if old is not None:
            self._selecting.pop(key, None)
            self._drop_local(old.namespace, key)

    def _drop_local(self, namespace: str, key: str) -> None:
        local = self._local.get(namespace)
        if local is not None:
            local.pop(key, None)
            if not local:
                del self._local[namespace]

    def get(self, key: str) -> InjectionConfig | None:
        return self._by_key.get(key)

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[InjectionConfig]:
        return iter(list(self._by_key.values()))

    def candidates(self, pod: Pod, namespace: str) -> list[InjectionConfig]:
        """The configs `choose` can pick for `pod` in `namespace`: it picks the same from these as
        from all of them."""
        out = [*(self._local.get(namespace) or {}).values(), *self._selecting.values()]
        named = ((pod.get("metadata") or {}).get("annotations") or {}).get(INJECT_ANNOTATION, "").strip()
        if "/" in named and named in self._by_key:
            out.append(self._by_key[named])
        return out


def choose(pod: Pod, namespace: str, namespace_labels: dict[str, str],
           configs: list[InjectionConfig]) -> InjectionConfig | None:
    """The config that applies to a pod, or None. Deterministic when several match: the one in
    the pod's own namespace first, then by namespace/name."""
    meta = pod.get("metadata") or {}
    choice = (meta.get("annotations") or {}).get(INJECT_ANNOTATION, "").strip()
    if choice.lower() in ("false", "no", "off", "0"):
        return None
    if "/" in choice:
        return next((c for c in configs if c.key == choice), None)
    labels = meta.get("labels") or {}
    matching = [c for c in configs if c.selects_namespace(namespace, namespace_labels) and c.selects_pod(labels)]
    matching.sort(key=lambda c: (c.namespace != namespace, c.namespace, c.name))
    return matching[0] if matching else None


def service_name(pod: Pod, container: str) -> str:
    """From the OpenTelemetry annotation, then the app name label, then the owning workload, then
    the container."""
    meta = pod.get("metadata") or {}
    annotated = (meta.get("annotations") or {}).get(SERVICE_NAME_ANNOTATION)
    if annotated:
        return str(annotated)
    labelled = (meta.get("labels") or {}).get("app.kubernetes.io/name")
    if labelled:
        return str(labelled)
    workload = owner_workload(pod)
    return workload[1] if workload else container


def owner_workload(pod: Pod) -> tuple[str, str] | None:
    """(kind, name) of the workload owning a pod, as far as the pod itself tells."""
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if not ref.get("controller"):
            continue
        kind, name = ref.get("kind", ""), ref.get("name", "")
        if kind == "ReplicaSet":
            # A Deployment's ReplicaSet is named <deployment>-<pod-template-hash>.
            hash_label = ((pod.get("metadata") or {}).get("labels") or {}).get("pod-template-hash")
            if hash_label and name.endswith(f"-{hash_label}"):
                return "Deployment", name[: -len(hash_label) - 1]
            return "ReplicaSet", name
        return kind, name
    return None


def _resource_attributes(pod: Pod, container: str, config: InjectionConfig) -> str:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    parts = [
        "k8s.namespace.name=$(AGENTOBS_POD_NAMESPACE)",
        "k8s.pod.name=$(AGENTOBS_POD_NAME)",
        "k8s.pod.uid=$(AGENTOBS_POD_UID)",
        "k8s.node.name=$(AGENTOBS_NODE_NAME)",
        f"k8s.container.name={container}",
    ]
    workload = owner_workload(pod)
    if workload:
        parts.append(f"k8s.{workload[0].lower()}.name={workload[1]}")
    for label, attribute in ((AGENT_NAME_LABEL, "gen_ai.agent.name"), (AGENT_ID_LABEL, "gen_ai.agent.id")):
        if labels.get(label):
            parts.append(f"{attribute}={labels[label]}")
    parts.append(f"agentobs.resource={config.key}")
    if config.env.get("AGENTOBS_EXTRA_RESOURCE_ATTRIBUTES"):
        parts.append("$(AGENTOBS_EXTRA_RESOURCE_ATTRIBUTES)")
    return ",".join(parts)


_DOWNWARD = {
    "AGENTOBS_POD_NAME": "metadata.name",
    "AGENTOBS_POD_NAMESPACE": "metadata.namespace",
    "AGENTOBS_POD_UID": "metadata.uid",
    "AGENTOBS_NODE_NAME": "spec.nodeName",
}


def _pointer(*parts: str | int) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class _Ops:
    """Collects JSON-patch operations; an absent list or map is added whole, else appended to."""

    def __init__(self) -> None:
        self.ops: list[dict[str, Any]] = []

    def extend(self, parent: dict[str, Any], key: str, path: tuple[str | int, ...], items: list[Any]) -> None:
        if not items:
            return
        if parent.get(key) is None:
            self.ops.append({"op": "add", "path": _pointer(*path, key), "value": items})
        else:
            self.ops += [{"op": "add", "path": _pointer(*path, key, "-"), "value": i} for i in items]

    def merge(self, parent: dict[str, Any], key: str, path: tuple[str | int, ...], values: dict[str, str],
              overwrite: frozenset[str] = frozenset()) -> None:
        current = parent.get(key)
        if current is None:
            if values:
                self.ops.append({"op": "add", "path": _pointer(*path, key), "value": values})
            return
        for k, v in values.items():
            if k not in current or (k in overwrite and current[k] != v):
                self.ops.append({"op": "add" if k not in current else "replace", "path": _pointer(*path, key, k),
                                 "value": v})


def _targets(pod: Pod) -> list[tuple[str, int, dict[str, Any]]]:
    spec = pod.get("spec") or {}
    named = ((pod.get("metadata") or {}).get("annotations") or {}).get(CONTAINERS_ANNOTATION)
    wanted = {n.strip() for n in named.split(",") if n.strip()} if named else None
    return [(field_, i, c) for field_ in ("initContainers", "containers")
            for i, c in enumerate(spec.get(field_) or []) if wanted is None or c.get("name") in wanted]


def _container_ops(pod: Pod, field_: str, index: int, container: dict[str, Any], config: InjectionConfig,
                   ops: _Ops) -> None:
    name = container.get("name", "")
    present = {e.get("name") for e in container.get("env") or []}
    # Downward API variables first: later values refer to them with $(VAR).
    wanted: list[dict[str, Any]] = [
        {"name": n, "valueFrom": {"fieldRef": {"fieldPath": p}}} for n, p in _DOWNWARD.items()
    ]
    wanted.append({"name": "OTEL_SERVICE_NAME", "value": service_name(pod, name)})
    wanted += [{"name": k, "value": v} for k, v in config.env.items()]
    wanted.append({"name": "OTEL_RESOURCE_ATTRIBUTES", "value": _resource_attributes(pod, name, config)})
    path = ("spec", field_, index)
    ops.extend(container, "env", path, [e for e in wanted if e["name"] not in present])

    mounts = container.get("volumeMounts") or []
    paths, names = {m.get("mountPath") for m in mounts}, {m.get("name") for m in mounts}
    ops.extend(container, "volumeMounts", path, [
        {"name": volume, "mountPath": mount, "readOnly": read_only}
        for volume, mount, read_only in ((CA_VOLUME, CA_DIR, True), (AUDIT_VOLUME, AUDIT_DIR, False),
                                         (AUDIT_KEY_VOLUME, AUDIT_KEY_DIR, True))
        if mount not in paths and volume not in names])


def patch_ops(pod: Pod, config: InjectionConfig) -> list[dict[str, Any]]:
    """The JSON patch (RFC 6902) that applies the contract to `pod`; empty when it already has it.

    Built directly rather than by diffing a mutated copy: diffing long env lists costs milliseconds.
    """
    ops = _Ops()
    for field_, index, container in _targets(pod):
        _container_ops(pod, field_, index, container, config, ops)

    spec = pod.get("spec") or {}
    have = {v.get("name") for v in spec.get("volumes") or []}
    volumes = []
    if CA_VOLUME not in have:
        volumes.append({"name": CA_VOLUME, "configMap": {
            "name": config.ca_configmap, "items": [{"key": CA_BUNDLE_KEY, "path": CA_BUNDLE_KEY}],
            "optional": True}})
    if AUDIT_VOLUME not in have:
        volumes.append({"name": AUDIT_VOLUME, "emptyDir": {}})
    if AUDIT_KEY_VOLUME not in have:
        # Optional: the Secret lives in the resource's namespace only (and may not exist yet); a
        # pod without it still starts, and the SDK says its trail is unkeyed. Readable by any uid
        # (0444): the agent's non-root user must read it, and no fsGroup can be assumed. The
        # `previous-key` entry, when the user adds one to rotate the key, lands beside `key`
        # (optional too: a Secret without it mounts `key` alone), where the SDK looks for it.
        volumes.append({"name": AUDIT_KEY_VOLUME, "secret": {
            "secretName": config.audit_key_secret,
            "items": [{"key": k, "path": k} for k in (audit_key.KEY, audit_key.PREVIOUS_KEY)],
            "defaultMode": 0o444, "optional": True}})
    ops.extend(spec, "volumes", ("spec",), volumes)

    meta = pod.get("metadata") or {}
    ops.merge(meta, "annotations", ("metadata",), {
        "prometheus.io/scrape": "true", "prometheus.io/port": str(config.metrics_port),
        "prometheus.io/path": "/metrics", INJECTED_ANNOTATION: config.key, DIGEST_ANNOTATION: config.digest,
    }, overwrite=frozenset({INJECTED_ANNOTATION, DIGEST_ANNOTATION}))  # ours: they record the current settings
    ops.merge(meta, "labels", ("metadata",), {LOGS_LABEL: "true"})
    return ops.ops


def inject(pod: Pod, config: InjectionConfig) -> Pod:
    """The pod with the contract applied (for tests and tools; the webhook sends `patch_ops`)."""
    result: Pod = jsonpatch.apply_patch(pod, patch_ops(pod, config), in_place=False)
    return result


def is_current(pod: Pod, config: InjectionConfig) -> bool:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return bool(annotations.get(INJECTED_ANNOTATION) == config.key
                and annotations.get(DIGEST_ANNOTATION) == config.digest)
