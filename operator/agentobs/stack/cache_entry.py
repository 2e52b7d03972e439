"""What the watch caches keep of one object (`Entry`), and label selectors matched against it.

An entry is a few hundred bytes where the parsed manifest takes tens of kilobytes: name, version,
the labels and annotations the operator reads, a digest of the fields the operator owns instead of
`managedFields`, plus the data of a Secret (decoded and deflated), the replica count and the status fields of
a workload that readiness is judged by, whether a Job is done or why it failed, and of a pod its
controller, phase, unmet conditions and waiting containers. An entry holds no dict or list of the
parsed manifest, so the manifest is freed whole. Label and annotation sets of children and of the stack's own pods
are shared between entries; agents' pods keep all their labels, for the instrumentation's selectors.
"""

from __future__ import annotations

import base64
import json
import struct
import sys
import threading
import weakref
import zlib

from agentobs.kube import FIELD_MANAGER, Manifest
from agentobs.render.common import MANAGED_BY, OWNER_LABEL, OWNER_NAMESPACE_LABEL
from agentobs.stack.desired import HASH_ANNOTATION, owned_fields

WORKLOADS = ("StatefulSet", "Deployment", "DaemonSet")
# What a cached child keeps of its labels and annotations: enough to find its resource, to serve the
# operator's own lists (prune, sweep) and to read cert-manager's issuer on a Secret.
CHILD_LABELS = frozenset({"app.kubernetes.io/managed-by", "app.kubernetes.io/component", "app.kubernetes.io/name",
                          OWNER_LABEL, OWNER_NAMESPACE_LABEL})
CHILD_ANNOTATIONS = ("agentobs.io/", "cert-manager.io/")
# Of the stack's own pods: what selects them (`selector_labels`, a Job's `job-name`) and finds their
# resource. The rest (a StatefulSet pod's name and revision, a ReplicaSet's hash) would make every
# pod's label set its own; agents' pods keep all their labels, for the instrumentation's selectors.
STACK_POD_LABELS = CHILD_LABELS | {"app.kubernetes.io/instance", "app.kubernetes.io/part-of", "job-name"}
# What `status.workload_state` reads of a workload's status; the rest (conditions with their
# messages and times) would be kept for nothing, thousands of times over.
WORKLOAD_STATUS = ("observedGeneration", "readyReplicas", "updatedReplicas", "currentRevision", "updateRevision",
                   "desiredNumberScheduled", "numberReady", "updatedNumberScheduled")
_intern = sys.intern  # label keys and values repeat across thousands of objects


def is_stack_pod(labels: dict[str, str]) -> bool:
    """A pod of a stack the operator made (not an agent's)."""
    return labels.get("app.kubernetes.io/managed-by") == MANAGED_BY


class _Labels(dict[str, str]):
    """A label set shared by the entries that carry it (weakly referenced by `_LABEL_SETS`)."""

    __slots__ = ("__weakref__",)


# Label sets in use, each kept once while an entry uses it: a stack's children share a few (one per
# component), and the caches hold tens of thousands of children. Never mutated. Keyed by the hash of
# the set alone: most sets name their stack, so there are thousands, and a key holding the pairs
# (a tuple of tuples) took more than the set itself.
_LABEL_SETS: weakref.WeakValueDictionary[int, _Labels] = weakref.WeakValueDictionary()
_LABEL_SETS_LOCK = threading.Lock()


def _set_key(items: tuple[tuple[str, str], ...]) -> int:
    return hash(items)


def _shared(labels: dict[str, str]) -> dict[str, str]:
    items = tuple(sorted(labels.items()))
    key = _set_key(items)
    with _LABEL_SETS_LOCK:  # informer threads fill it at once
        found = _LABEL_SETS.get(key)
        if found is not None and found == labels:
            return found
        made = _Labels({_intern(k): _intern(v) for k, v in items})
        if found is None:  # a different set with the same hash keeps its place; this one goes unshared
            _LABEL_SETS[key] = made
    return made


class Entry:
    """One cached object: a few hundred bytes where the parsed manifest takes tens of kilobytes."""

    __slots__ = ("annotations", "api_version", "baseline", "echo", "extra", "generation", "hash", "kind", "labels",
                 "name", "namespace", "owned", "rv")

    def __init__(self, obj: Manifest) -> None:
        meta = obj.get("metadata") or {}
        self.api_version: str = _intern(str(obj.get("apiVersion", "")))
        self.kind: str = _intern(str(obj.get("kind", "")))
        self.name: str = str(meta.get("name", ""))
        self.namespace: str = _intern(str(meta.get("namespace", "")))
        self.rv: int | str = _pack_version(str(meta.get("resourceVersion", "")))
        self.generation: int = int(meta.get("generation") or 0)
        pod = self.kind == "Pod"
        labels = meta.get("labels") or {}
        if pod and is_stack_pod(labels):
            self.labels: dict[str, str] = _shared({k: v for k, v in labels.items() if k in STACK_POD_LABELS})
        elif pod or self.kind == "Namespace":  # an agent's pod: its own label set, all of it
            self.labels = {_intern(k): _intern(v) for k, v in labels.items()}
        else:
            self.labels = _shared({k: v for k, v in labels.items() if k in CHILD_LABELS})
        annotations = meta.get("annotations") or {}
        self.hash: bytes | str | None = _pack_hash(annotations.get(HASH_ANNOTATION))  # apart: a dict costs more
        kept = {k: v for k, v in annotations.items() if k.startswith(CHILD_ANNOTATIONS) and k != HASH_ANNOTATION}
        # A component's pods carry the same hashes: one shared set for all of them.
        self.annotations: dict[str, str] | None = (_shared(kept) if pod else kept) if kept else None
        owned = owned_fields(obj, FIELD_MANAGER)
        # 16 raw bytes (an object of 49 bytes) where the 32 hex digits took 81, in every entry.
        self.owned: bytes | None = bytes.fromhex(owned[:32]) if owned else None
        self.baseline: bytes | None = None  # `owned` as the operator's last apply left it
        self.echo: int | str | None = None  # `rv` of the operator's last write
        self.extra: Manifest | _PodFacts | _SecretFacts | None = None
        if self.kind == "Secret":
            self.extra = _SecretFacts(obj)
        elif self.kind in WORKLOADS:
            status = obj.get("status") or {}
            self.extra = {"spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
                          "status": {k: status[k] for k in WORKLOAD_STATUS if k in status}}
        elif self.kind == "Job":  # whether it is done or failed: `reconcile._job_causes`
            status = obj.get("status") or {}
            if status.get("succeeded"):
                self.extra = {"status": {"succeeded": status["succeeded"]}}
            else:
                failed = [{k: c[k] for k in ("type", "status", "reason", "message") if c.get(k)}
                          for c in status.get("conditions") or [] if c.get("type") == "Failed"]
                self.extra = {"status": {"conditions": failed}} if failed else {"status": {}}
        elif pod:
            self.extra = _PodFacts(obj)

    def carry(self, before: Entry) -> None:
        """Keep what the operator recorded of its last write to this object (`before`: the entry
        this one replaces). The usual case, this version being that write's echo, keeps one string
        where there would be two: tens of thousands of entries pay for every copy."""
        self.baseline = self.owned if before.baseline == self.owned else before.baseline
        self.echo = self.rv if before.echo == self.rv else before.echo

    @property
    def version(self) -> str:
        """The resourceVersion, as the API server wrote it."""
        return str(self.rv)

    @property
    def applied_hash(self) -> str | None:
        return self.hash.hex() if isinstance(self.hash, bytes) else self.hash

    def manifest(self) -> Manifest:
        """The object as a (partial) manifest, for code that reads manifests."""
        meta: Manifest = {"name": self.name, "resourceVersion": self.version, "labels": dict(self.labels)}
        if self.namespace:
            meta["namespace"] = self.namespace
        if self.generation:
            meta["generation"] = self.generation
        applied = self.applied_hash
        if self.annotations or applied:
            meta["annotations"] = {**(self.annotations or {}), **({HASH_ANNOTATION: applied} if applied else {})}
        out: Manifest = {"apiVersion": self.api_version, "kind": self.kind, "metadata": meta}
        if isinstance(self.extra, _PodFacts | _SecretFacts):
            self.extra.expand(out)
        elif self.extra:
            out.update(self.extra)
        return out


def _pack_version(value: str) -> int | str:
    """A resourceVersion as an integer (28 or 32 bytes where its digits took about 57), when it is
    etcd's decimal and reads back the same; opaque otherwise, as the API allows."""
    if value.isdigit() and str(int(value)) == value:
        return int(value)
    return value


def _pack_hash(value: str | None) -> bytes | str | None:
    """The applied hash as its 32 raw bytes (65 bytes where the 64 hex digits took 113); a value
    that would not read back the same (edited by hand) is kept as it is."""
    if value and len(value) == 64:
        try:
            packed = bytes.fromhex(value)
        except ValueError:
            return value
        if packed.hex() == value:
            return packed
    return value


class _PodFacts:
    """What is read of a pod besides its labels: its controller, whether it is being deleted, and
    its status as `_pod_status` keeps it (for a running pod, its phase alone)."""

    __slots__ = ("deleting", "owner", "status")

    def __init__(self, obj: Manifest) -> None:
        meta = obj.get("metadata") or {}
        status = _pod_status(obj.get("status") or {})
        self.status: Manifest | str = status["phase"] if status.keys() == {"phase"} else status
        self.owner: tuple[str, str] | None = next(
            ((_intern(str(r.get("kind", ""))), str(r.get("name", "")))
             for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
        self.deleting: str | None = meta.get("deletionTimestamp")

    def expand(self, out: Manifest) -> None:
        out["status"] = {"phase": self.status} if isinstance(self.status, str) else self.status
        if self.owner is not None:
            out["metadata"]["ownerReferences"] = [{"kind": self.owner[0], "name": self.owner[1], "controller": True}]
        if self.deleting:
            out["metadata"]["deletionTimestamp"] = self.deleting


class _SecretFacts:
    """A Secret's type and `data`, packed: the values base64-decoded (certificates and keys are
    then PEM, which deflate shrinks where their base64 barely shrank), length-prefixed and deflated;
    a stack's Secrets were the largest part of its cache entries. Unpacked only by a pass that
    renders the stack, re-encoded to the very strings the API server sent (its base64 is canonical;
    a value that would not read back the same keeps the whole data as JSON)."""

    __slots__ = ("packed", "type")

    def __init__(self, obj: Manifest) -> None:
        self.type: str | None = _intern(str(obj["type"])) if obj.get("type") else None
        self.packed = _pack_data(obj.get("data") or {})

    def expand(self, out: Manifest) -> None:
        out["type"] = self.type
        out["data"] = _unpack_data(self.packed)


_RAW, _JSON = b"R", b"J"  # the first byte of packed data: which of the two layouts follows


def _pack_data(data: dict[str, str]) -> bytes:
    if not data:
        return b""
    parts: list[bytes] = []
    for key, value in data.items():
        try:
            raw = base64.b64decode(value, validate=True)
        except (ValueError, TypeError):
            raw = None
        if raw is None or base64.b64encode(raw).decode() != value:
            return _JSON + zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 9)
        parts += [key.encode(), raw]
    return _RAW + zlib.compress(b"".join(struct.pack("<I", len(p)) + p for p in parts), 9)


def _unpack_data(packed: bytes) -> dict[str, str]:
    if not packed:
        return {}
    body = zlib.decompress(packed[1:])
    if packed[:1] == _JSON:
        data: dict[str, str] = json.loads(body)
        return data
    parts: list[bytes] = []
    at = 0
    while at < len(body):
        (size,) = struct.unpack_from("<I", body, at)
        parts.append(body[at + 4:at + 4 + size])
        at += 4 + size
    return {parts[i].decode(): base64.b64encode(parts[i + 1]).decode() for i in range(0, len(parts), 2)}


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


class Selector:
    """A label selector of equality (`k=v`, `k==v`, `k!=v`) and existence (`k`, `!k`) terms, all
    required, parsed once: a cached list tests it against thousands of entries."""

    __slots__ = ("absent", "equal", "present", "unequal")

    def __init__(self, selector: str) -> None:
        self.equal: set[tuple[str, str]] = set()
        self.unequal: list[tuple[str, str]] = []
        self.present: list[str] = []
        self.absent: list[str] = []
        for term in selector_terms(selector):
            if "!=" in term:
                k, v = term.split("!=", 1)
                self.unequal.append((k.strip(), v.strip()))
            elif "=" in term:
                k, v = term.replace("==", "=").split("=", 1)
                self.equal.add((k.strip(), v.strip()))
            elif term.startswith("!"):
                self.absent.append(term[1:].strip())
            else:
                self.present.append(term)

    def __call__(self, labels: dict[str, str]) -> bool:
        # The usual selector is equality terms only: one C-level subset test of the label items.
        if not labels.items() >= self.equal:
            return False
        if self.present or self.unequal or self.absent:
            get = labels.get
            return (all(k in labels for k in self.present) and not any(get(k) == v for k, v in self.unequal)
                    and not any(k in labels for k in self.absent))
        return True


def matches(labels: dict[str, str], selector: str) -> bool:
    """Whether `labels` satisfy every term of `selector` (see `Selector`)."""
    return Selector(selector)(labels)
