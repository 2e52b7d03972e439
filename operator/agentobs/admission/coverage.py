"""Injection coverage: which selected agent pods carry the current injection, and the rollouts that
bring the others up to date.

Pods created before the webhook existed, while it was down, or before the resource's settings
changed lack the current injection (the `agentobs.io/injection-digest` annotation tells). They are
counted in status and metrics; with `spec.instrumentation.rolloutOnChange` their Deployments and
StatefulSets are restarted once per injection digest, so a webhook that stays down cannot cause a
restart loop.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agentobs import metrics
from agentobs.admission.injection import (
    DIGEST_ANNOTATION,
    INJECT_ANNOTATION,
    INJECTED_ANNOTATION,
    InjectionConfig,
    make_config,
    owner_workload,
)
from agentobs.api import API_VERSION, KIND
from agentobs.kube import Kube, KubeError
from agentobs.render.common import owner_of

ROLLOUT_ANNOTATION = "agentobs.io/rollout-for-injection"
WORKLOAD_API = {"Deployment": "apps/v1", "StatefulSet": "apps/v1"}


@dataclass
class Coverage:
    selected: int = 0
    current: int = 0
    stale: int = 0  # injected by this resource with older settings
    missing: int = 0  # not injected at all
    restarted: list[str] = field(default_factory=list)  # "Kind ns/name"
    namespaces: list[str] = field(default_factory=list)
    # Selected pods that another resource, whose selection overlaps this one's, instruments:
    # "namespace/name" of that resource -> pods. Not counted above: they are not this one's.
    elsewhere: dict[str, int] = field(default_factory=dict)


def selected_namespaces(kube: Kube, config: InjectionConfig) -> list[str]:
    if not config.namespace_selector:
        return [config.namespace]
    selector = ",".join(f"{k}={v}" for k, v in sorted(config.namespace_selector.items()))
    return sorted(n["metadata"]["name"] for n in kube.list("v1", "Namespace", None, selector))


def classify(pod: dict[str, Any], config: InjectionConfig) -> str | None:
    """`current`, `stale`, `missing`, or None when the pod is not this resource's to count."""
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return None
    annotations = meta.get("annotations") or {}
    choice = annotations.get(INJECT_ANNOTATION, "").strip().lower()
    if choice in ("false", "no", "off", "0") or ("/" in choice and choice != config.key.lower()):
        return None
    injected_by = annotations.get(INJECTED_ANNOTATION)
    if injected_by and injected_by != config.key:
        return None  # another resource instruments it
    if not injected_by:
        return "missing"
    return "current" if annotations.get(DIGEST_ANNOTATION) == config.digest else "stale"


def instrumented_by_another(pod: dict[str, Any], config: InjectionConfig) -> str | None:
    """The resource that instrumented a live pod this resource's selectors also select, when it is
    not this one (the webhook gives a pod to one resource only)."""
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return None
    injected_by = (meta.get("annotations") or {}).get(INJECTED_ANNOTATION)
    return injected_by if injected_by and injected_by != config.key else None


def may_overlap(one: InjectionConfig, other: InjectionConfig) -> bool:
    """Whether some pod could be selected by both (namespace labels unread: a namespace selector
    may match any namespace whose labels it does not contradict)."""
    def agree(a: dict[str, str], b: dict[str, str]) -> bool:
        return all(b.get(k, v) == v for k, v in a.items())

    if not agree(one.pod_selector, other.pod_selector):
        return False
    if one.namespace_selector and other.namespace_selector:
        return agree(one.namespace_selector, other.namespace_selector)
    return bool(one.namespace_selector or other.namespace_selector) or one.namespace == other.namespace


def released(before: InjectionConfig | None, after: InjectionConfig | None,
             configs: Iterable[InjectionConfig]) -> list[tuple[str, str]]:
    """The resources to wake when a resource's config goes from `before` to `after` (None: deleted,
    invalid or instrumentation off): those whose selection may overlap what it no longer selects,
    as the pods it instrumented there are theirs now."""
    if before is None or (after is not None and (after.pod_selector, after.namespace_selector)
                          == (before.pod_selector, before.namespace_selector)):
        return []
    return [(c.namespace, c.name) for c in configs if c.key != before.key and may_overlap(before, c)]


class _Holder:
    """What the resource that instrumented some pods injects now, read once per pass."""

    def __init__(self, kube: Kube, key: str) -> None:
        namespace, _, name = key.partition("/")
        self.key = key
        self.known = True
        self.config: InjectionConfig | None = None  # None: gone, or its instrumentation is off
        try:
            body = kube.get(API_VERSION, KIND, namespace, name)
        except KubeError:  # another team's namespace, out of this operator's reach: assume it still does
            self.known = False
            return
        if body is not None:
            owner = owner_of(body)
            if owner is None:  # invalid for now (reported on it): not a reason to take its pods
                self.known = False
                return
            self.config = make_config(owner)

    def keeps(self, kube: Kube, namespace: str, pod: dict[str, Any], labels_of: dict[str, dict[str, str]]) -> bool:
        """Whether it still selects the pod, so that a restart would give the pod to it again."""
        if not self.known:
            return True
        if self.config is None:
            return False
        meta = pod.get("metadata") or {}
        if (meta.get("annotations") or {}).get(INJECT_ANNOTATION, "").strip() == self.key:
            return True
        if self.config.namespace_selector and namespace not in labels_of:
            found = kube.get("v1", "Namespace", None, namespace) or {}
            labels_of[namespace] = (found.get("metadata") or {}).get("labels") or {}
        return self.config.selects_pod(meta.get("labels") or {}) and \
            self.config.selects_namespace(namespace, labels_of.get(namespace, {}))


def _restart(kube: Kube, namespace: str, kind: str, name: str, digest: str, now: dt.datetime) -> bool:
    api = WORKLOAD_API[kind]
    workload = kube.get(api, kind, namespace, name)
    if workload is None:
        return False
    template_meta = workload["spec"]["template"].get("metadata") or {}
    if (template_meta.get("annotations") or {}).get(ROLLOUT_ANNOTATION) == digest:
        return False  # already restarted for these settings
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    kube.patch(api, kind, namespace, name, {"spec": {"template": {"metadata": {"annotations": {
        ROLLOUT_ANNOTATION: digest, "agentobs.io/restarted-at": stamp}}}}})
    return True


def observe(kube: Kube, config: InjectionConfig, rollout: bool, now: dt.datetime) -> Coverage:
    coverage = Coverage(namespaces=selected_namespaces(kube, config))
    selector = ",".join(f"{k}={v}" for k, v in sorted(config.pod_selector.items()))
    to_restart: set[tuple[str, str, str]] = set()
    others: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    counted: list[tuple[str, str, dict[str, Any]]] = []  # (namespace, state, pod)
    for namespace in coverage.namespaces:
        for pod in kube.list("v1", "Pod", namespace, selector):
            state = classify(pod, config)
            if state is None:
                other = instrumented_by_another(pod, config)
                if other is not None:
                    others.setdefault(other, []).append((namespace, pod))
                continue
            counted.append((namespace, state, pod))
    labels_of: dict[str, dict[str, str]] = {}
    for other, pods in sorted(others.items()):
        holder = _Holder(kube, other)
        for namespace, pod in pods:
            if holder.keeps(kube, namespace, pod, labels_of):
                coverage.elsewhere[other] = coverage.elsewhere.get(other, 0) + 1
            else:  # its resource is gone, or no longer selects it (instrumentation off, selectors
                # narrowed): the pod sends to nothing, and is this one's to bring up to date
                counted.append((namespace, "stale", pod))
    for namespace, state, pod in counted:
        coverage.selected += 1
        setattr(coverage, state, getattr(coverage, state) + 1)
        workload = owner_workload(pod)
        if rollout and state != "current" and workload and workload[0] in WORKLOAD_API:
            to_restart.add((namespace, *workload))
    for namespace, kind, name in sorted(to_restart):
        if _restart(kube, namespace, kind, name, config.digest, now):
            coverage.restarted.append(f"{kind} {namespace}/{name}")
    for state in ("current", "stale", "missing"):
        metrics.INJECTION_PODS.labels(namespace=config.namespace, resource=config.name,
                                      state=state).set(getattr(coverage, state))
    return coverage
