"""What the watch caches keep of one object (`Entry`), and label selectors matched against it.

An entry is a few hundred bytes where the parsed manifest takes tens of kilobytes: name, version,
the labels and annotations the operator reads (all of a pod's labels), a digest of the fields the
operator owns instead of `managedFields`, plus the data of a Secret, the replica count and status
of a workload, whether a Job is done or failed, and of a pod its controller, phase, unmet
conditions and waiting containers. Label sets of children are shared between entries.
"""

from __future__ import annotations

import sys
import threading
import weakref

from agentobs.desired import HASH_ANNOTATION, owned_fields
from agentobs.kube import FIELD_MANAGER, Manifest
from agentobs.render.common import OWNER_LABEL, OWNER_NAMESPACE_LABEL

WORKLOADS = ("StatefulSet", "Deployment", "DaemonSet")
# What a cached child keeps of its labels and annotations: enough to find its resource, to serve the
# operator's own lists (prune, sweep) and to read cert-manager's issuer on a Secret.
CHILD_LABELS = frozenset({"app.kubernetes.io/managed-by", "app.kubernetes.io/component", "app.kubernetes.io/name",
                          OWNER_LABEL, OWNER_NAMESPACE_LABEL})
CHILD_ANNOTATIONS = ("agentobs.io/", "cert-manager.io/")
_intern = sys.intern  # label keys and values repeat across thousands of objects


class _Labels(dict[str, str]):
    """A label set shared by the entries that carry it (weakly referenced by `_LABEL_SETS`)."""

    __slots__ = ("__weakref__",)


# Label sets in use, each kept once while an entry uses it: a stack's children share a few (one per
# component), and the caches hold tens of thousands of children. Never mutated.
_LABEL_SETS: weakref.WeakValueDictionary[tuple[tuple[str, str], ...], _Labels] = weakref.WeakValueDictionary()
_LABEL_SETS_LOCK = threading.Lock()


def _shared(labels: dict[str, str]) -> dict[str, str]:
    key = tuple(sorted(labels.items()))
    with _LABEL_SETS_LOCK:  # informer threads fill it at once
        found = _LABEL_SETS.get(key)
        if found is None:
            found = _Labels({_intern(k): _intern(v) for k, v in key})
            _LABEL_SETS[key] = found
    return found


class Entry:
    """One cached object: a few hundred bytes where the parsed manifest takes tens of kilobytes."""

    __slots__ = ("annotations", "api_version", "baseline", "echo", "extra", "generation", "hash", "kind", "labels",
                 "name", "namespace", "owned", "version")

    def __init__(self, obj: Manifest) -> None:
        meta = obj.get("metadata") or {}
        self.api_version: str = _intern(str(obj.get("apiVersion", "")))
        self.kind: str = _intern(str(obj.get("kind", "")))
        self.name: str = str(meta.get("name", ""))
        self.namespace: str = _intern(str(meta.get("namespace", "")))
        self.version: str = str(meta.get("resourceVersion", ""))
        self.generation: int = int(meta.get("generation") or 0)
        pod = self.kind == "Pod"
        every_label = pod or self.kind == "Namespace"
        labels = meta.get("labels") or {}
        # Pods' label sets are their own (a StatefulSet pod's name, a Job's uid): not worth sharing.
        self.labels: dict[str, str] = ({_intern(k): _intern(v) for k, v in labels.items()} if every_label else
                                       _shared({k: v for k, v in labels.items() if k in CHILD_LABELS}))
        annotations = meta.get("annotations") or {}
        self.hash: str | None = annotations.get(HASH_ANNOTATION)  # apart: a dict for it alone costs more
        self.annotations: dict[str, str] | None = {
            _intern(k): _intern(v) if pod else v for k, v in annotations.items()
            if k.startswith(CHILD_ANNOTATIONS) and k != HASH_ANNOTATION} or None
        owned = owned_fields(obj, FIELD_MANAGER)
        self.owned: str | None = owned[:32] if owned else None
        self.baseline: str | None = None  # `owned` as the operator's last apply left it
        self.echo: str | None = None  # resourceVersion of the operator's last write
        self.extra: Manifest | None = None
        if self.kind == "Secret":
            self.extra = {"type": obj.get("type"), "data": obj.get("data") or {}}
        elif self.kind in WORKLOADS:
            self.extra = {"spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
                          "status": obj.get("status") or {}}
        elif self.kind == "Job":  # whether it is done or failed: `reconcile._job_causes`
            status = obj.get("status") or {}
            self.extra = {"status": {k: status[k] for k in ("succeeded", "conditions") if status.get(k)}}
        elif pod:
            self.extra = {"status": _pod_status(obj.get("status") or {})}
            owners = [{"kind": _intern(str(r.get("kind", ""))), "name": str(r.get("name", "")), "controller": True}
                      for r in meta.get("ownerReferences") or [] if r.get("controller")]
            if owners:
                self.extra["ownerReferences"] = owners
            if meta.get("deletionTimestamp"):
                self.extra["deletionTimestamp"] = meta["deletionTimestamp"]

    @property
    def applied_hash(self) -> str | None:
        return self.hash

    def manifest(self) -> Manifest:
        """The object as a (partial) manifest, for code that reads manifests."""
        meta: Manifest = {"name": self.name, "resourceVersion": self.version, "labels": dict(self.labels)}
        if self.namespace:
            meta["namespace"] = self.namespace
        if self.generation:
            meta["generation"] = self.generation
        if self.annotations or self.hash:
            meta["annotations"] = {**(self.annotations or {}), **({HASH_ANNOTATION: self.hash} if self.hash else {})}
        out: Manifest = {"apiVersion": self.api_version, "kind": self.kind, "metadata": meta}
        for key, value in (self.extra or {}).items():
            (meta if key in ("ownerReferences", "deletionTimestamp") else out)[key] = value
        return out


def _pod_status(status: Manifest) -> Manifest:
    """What the operator reads of a pod's status (`coverage`, `status.pod_cause`): its phase, the
    conditions that are not met, and why a container waits."""
    out: Manifest = {}
    if status.get("phase"):
        out["phase"] = _intern(str(status["phase"]))
    unmet = [{k: c[k] for k in ("type", "status", "reason", "message") if c.get(k)}
             for c in status.get("conditions") or [] if c.get("status") != "True"]
    if unmet:
        out["conditions"] = unmet
    for key in ("initContainerStatuses", "containerStatuses"):
        waiting = [{"name": c.get("name"), "state": {"waiting": c["state"]["waiting"]}}
                   for c in status.get(key) or [] if (c.get("state") or {}).get("waiting")]
        if waiting:
            out[key] = waiting
    return out


def selector_terms(selector: str) -> set[str]:
    return {t.strip() for t in selector.split(",") if t.strip()}


def label_key(term: str) -> str:
    for sep in ("!=", "==", "="):
        if sep in term:
            return term.split(sep, 1)[0].strip()
    return term.lstrip("!").strip()


def matches(labels: dict[str, str], selector: str) -> bool:
    """Equality (`k=v`, `k==v`, `k!=v`) and existence (`k`, `!k`) terms, all required."""
    for term in selector_terms(selector):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True
