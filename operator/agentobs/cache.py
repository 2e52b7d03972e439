"""Watch-fed caches of the operator's children (and of pods, for injection coverage), and the
per-pass client that reads from them and writes only what differs.

One `Informer` per kind (cluster-wide, or per namespace when the operator is limited to some)
lists once, then follows a watch from that version, with bookmarks, re-listing only when the
version expired. Children are selected on the server by the `managed-by` label, and stored trimmed
to what a pass reads: metadata without `managedFields` (a digest of the fields the operator owns
stands in for them), plus the data of Secrets, the replica counts and status of workloads, and a
pod's phase. Events other than the echo of the operator's own write wake the owning resource.

`PassClient` is what a reconcile pass gets: reads come from the caches when they cover the
object (a miss falls back to one API read, so a cache still filling is never taken for absence),
and `apply` of a child whose hash and owned fields are in place returns the cached object without
a request. All requests still go through `agentobs.kube`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch

from agentobs import metrics
from agentobs.desired import applied_hash, owned_fields
from agentobs.kube import FIELD_MANAGER, KINDS, Kube, KubeError, Manifest
from agentobs.render.common import MANAGED_BY, OWNER_LABEL, OWNER_NAMESPACE_LABEL

log = logging.getLogger(__name__)

OWNED = "_ownedFields"  # where a cached object keeps the digest of the operator's managed fields
CHILD_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
WORKLOADS = ("StatefulSet", "Deployment", "DaemonSet")
Key = tuple[str, str, str, str]  # apiVersion, kind, namespace ("" when cluster-scoped), name
Wake = Callable[[str, str], None]  # (namespace, name) of the resource to wake


def trim(obj: Manifest) -> Manifest:
    """What the cache keeps of an object (see the module docstring)."""
    meta = dict(obj.get("metadata") or {})
    owned = owned_fields(obj, FIELD_MANAGER)
    meta.pop("managedFields", None)
    kind = obj.get("kind")
    out: Manifest = {"apiVersion": obj.get("apiVersion"), "kind": kind, "metadata": meta, OWNED: owned}
    if kind == "Secret":
        out["type"] = obj.get("type")
        out["data"] = obj.get("data") or {}
    elif kind in WORKLOADS:
        out["spec"] = {"replicas": (obj.get("spec") or {}).get("replicas", 1)}
        out["status"] = obj.get("status") or {}
    elif kind == "Pod":
        keep = ("name", "namespace", "labels", "annotations", "ownerReferences", "deletionTimestamp",
                "resourceVersion", "uid")
        out["metadata"] = {k: meta[k] for k in keep if k in meta}
        out["status"] = {"phase": (obj.get("status") or {}).get("phase")}
        del out[OWNED]
    return out


def _selector_terms(selector: str) -> set[str]:
    return {t.strip() for t in selector.split(",") if t.strip()}


def matches(labels: dict[str, str], selector: str) -> bool:
    """Equality (`k=v`, `k==v`, `k!=v`) and existence (`k`, `!k`) terms, all required."""
    for term in _selector_terms(selector):
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


@dataclass
class Informer:
    kube: Kube
    api_version: str
    kind: str
    namespace: str | None
    selector: str
    on_change: Callable[[Manifest | None, Manifest | None], None]
    store: dict[tuple[str, str], Manifest] = field(default_factory=dict)
    synced: threading.Event = field(default_factory=threading.Event)
    unavailable: bool = False  # this cluster lacks the kind, or the operator may not list it here
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopped: bool = False

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"informer-{self.kind}-{self.namespace or '*'}",
                         daemon=True).start()

    def get(self, namespace: str, name: str) -> Manifest | None:
        with self.lock:
            return self.store.get((namespace, name))

    def items(self) -> list[Manifest]:
        with self.lock:
            return list(self.store.values())

    def _run(self) -> None:
        backoff = 1.0
        while not self.stopped:
            try:
                version = self._relist()
                backoff = 1.0
                while version and not self.stopped:
                    version = self._follow(version)
            except KubeError as exc:
                if exc.status in (403, 404):
                    if not self.unavailable:
                        log.info("no cache of %s in %s (HTTP %d): reads go to the API server", self.kind,
                                 self.namespace or "the cluster", exc.status)
                    self.unavailable = True
                    self.synced.set()
                    backoff = 300.0
                else:
                    log.warning("watch of %s interrupted: %s", self.kind, exc.message)
            except Exception:  # a malformed event must not end the cache for good
                log.exception("watch of %s failed", self.kind)
            time.sleep(backoff * random.uniform(0.5, 1.5))  # noqa: S311 (jitter, not a secret)
            backoff = min(backoff * 2, 300.0)

    def _relist(self) -> str:
        fresh: dict[tuple[str, str], Manifest] = {}
        token, version = "", ""
        while True:
            items, list_version, token = self.kube.list_page(self.api_version, self.kind, self.namespace,
                                                             self.selector, continue_=token)
            version = version or list_version
            for obj in items:
                trimmed = trim(obj)
                meta = trimmed["metadata"]
                fresh[(meta.get("namespace", ""), meta["name"])] = trimmed
            if not token:
                break
        with self.lock:
            old, self.store = self.store, fresh
        if self.synced.is_set():  # a re-list: report what changed while the watch was away
            for key in old.keys() | fresh.keys():
                before, after = old.get(key), fresh.get(key)
                if (before or {}).get("metadata", {}).get("resourceVersion") != \
                        (after or {}).get("metadata", {}).get("resourceVersion"):
                    self.on_change(before, after)
        self.unavailable = False
        self.synced.set()
        metrics.CACHE_OBJECTS.labels(kind=self.kind).set(len(fresh))
        return version

    def _follow(self, version: str) -> str:
        """Apply watch events until the stream ends; the version to resume from, or "" to re-list."""
        timeout = random.randint(240, 360)  # noqa: S311 (spread the reconnects)
        for type_, obj in self.kube.watch(self.api_version, self.kind, self.namespace, self.selector, version,
                                          timeout):
            if type_ == "ERROR":
                return ""  # 410 Gone (or another Status): list again
            meta = obj.get("metadata") or {}
            version = str(meta.get("resourceVersion") or version)
            if type_ == "BOOKMARK":
                continue
            obj.setdefault("apiVersion", self.api_version)
            obj.setdefault("kind", self.kind)
            key = (meta.get("namespace", ""), meta.get("name", ""))
            trimmed = trim(obj)
            with self.lock:
                before = self.store.get(key)
                if type_ == "DELETED":
                    self.store.pop(key, None)
                else:
                    self.store[key] = trimmed
            self.on_change(before, None if type_ == "DELETED" else trimmed)
        return version


class Cache:
    """The informers of one operator process, keyed by (apiVersion, kind, namespace or None)."""

    def __init__(self, kube: Kube, kinds: list[tuple[str, str]], namespaces: list[str], wake: Wake) -> None:
        self.kube = kube
        self.kinds = kinds
        self.patterns = namespaces  # empty: cluster-wide
        self.wake = wake
        self.informers: dict[tuple[str, str, str | None], Informer] = {}
        self._written: dict[Key, str] = {}  # resourceVersion of the operator's last write of a child
        self._owned: dict[Key, str] = {}  # owned-fields digest the operator's last apply left
        self._lock = threading.Lock()

    def start(self) -> None:
        """Cluster-wide informers (all kinds when cluster-wide, cluster-scoped kinds otherwise)."""
        for api, kind in self.kinds:
            if not self.patterns or not KINDS[(api, kind)].namespaced:
                self._start(api, kind, None)
        if not self.patterns:
            self._start("v1", "Pod", None)

    def ensure_namespace(self, namespace: str) -> None:
        """Per-namespace informers, when the operator is limited to some namespaces."""
        if not self.patterns:
            return
        for api, kind in [*self.kinds, ("v1", "Pod")]:
            if KINDS[(api, kind)].namespaced:
                self._start(api, kind, namespace)

    def _start(self, api: str, kind: str, namespace: str | None) -> None:
        with self._lock:
            if (api, kind, namespace) in self.informers:
                return
            informer = Informer(self.kube, api, kind, namespace, "" if kind == "Pod" else CHILD_SELECTOR,
                                self._changed)
            self.informers[(api, kind, namespace)] = informer
        informer.start()

    def _informer(self, api: str, kind: str, namespace: str | None) -> Informer | None:
        if not KINDS[(api, kind)].namespaced:
            namespace = None
        found = self.informers.get((api, kind, None)) or (self.informers.get((api, kind, namespace))
                                                           if namespace else None)
        if found is None or found.unavailable or not found.synced.is_set():
            return None
        return found

    def wait_synced(self, namespace: str, timeout: float) -> bool:
        """Block until the informers serving `namespace` have listed once (or `timeout` passes)."""
        deadline = time.monotonic() + timeout
        relevant = [i for (_, _, ns), i in list(self.informers.items()) if ns in (None, namespace)]
        return all(i.synced.wait(max(0.0, deadline - time.monotonic())) for i in relevant)

    def peek(self, api: str, kind: str, namespace: str, name: str) -> tuple[bool, Manifest | None]:
        """(covered, cached object): covered is False when no synced cache holds this kind there."""
        informer = self._informer(api, kind, namespace)
        if informer is None:
            return False, None
        return True, informer.get(namespace if KINDS[(api, kind)].namespaced else "", name)

    def list(self, api: str, kind: str, namespace: str | None, selector: str) -> list[Manifest] | None:
        """Cached objects matching, or None when the caches cannot answer for all of them."""
        informer = self._informer(api, kind, namespace) if (namespace or not self.patterns or
                                                          not KINDS[(api, kind)].namespaced) else None
        if informer is None or not _selector_terms(informer.selector) <= _selector_terms(selector):
            return None
        return [obj for obj in informer.items()
                if (namespace is None or obj["metadata"].get("namespace") == namespace)
                and matches(obj["metadata"].get("labels") or {}, selector)]

    def remember(self, key: Key, written: Manifest) -> Manifest:
        """Record the operator's own write: its echo from the watch wakes nothing."""
        trimmed = trim(written)
        self._written[key] = str(trimmed["metadata"].get("resourceVersion", ""))
        if trimmed.get(OWNED):
            self._owned[key] = trimmed[OWNED]
        informer = self._informer(key[0], key[1], key[2] or None)
        if informer is not None:
            with informer.lock:
                informer.store[(key[2], key[3])] = trimmed
        return trimmed

    def forget(self, key: Key) -> None:
        self._written.pop(key, None)
        self._owned.pop(key, None)

    def in_place(self, key: Key, desired: Manifest, live: Manifest | None) -> bool:
        """The live child carries the desired hash and the fields the operator's last apply owned."""
        if live is None or applied_hash(live) != applied_hash(desired) or not live.get(OWNED):
            return False
        # After a restart the first sight is the baseline; a hand edit shows as a different digest.
        return bool(self._owned.setdefault(key, live[OWNED]) == live[OWNED])

    def _changed(self, before: Manifest | None, after: Manifest | None) -> None:
        obj = after or before or {}
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        if obj.get("kind") == "Pod" or OWNER_LABEL not in labels:
            return
        key: Key = (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta.get("name", ""))
        if after is not None and self._written.get(key) == meta.get("resourceVersion"):
            return  # the echo of our own write
        self.wake(labels.get(OWNER_NAMESPACE_LABEL, ""), labels[OWNER_LABEL])

    def covers(self, namespace: str) -> bool:
        return not self.patterns or any(fnmatch(namespace, p) for p in self.patterns)


def key_of(manifest: Manifest) -> Key:
    meta = manifest["metadata"]
    namespace = meta.get("namespace", "") if KINDS[(manifest["apiVersion"], manifest["kind"])].namespaced else ""
    return (manifest["apiVersion"], manifest["kind"], namespace, meta["name"])


class PassClient(Kube):
    """The client of one reconcile pass: cached reads, and applies only of what is not in place.
    `written` lists what the pass wrote ("Kind name"), for its one log line."""

    def __init__(self, kube: Kube, cache: Cache | None) -> None:
        self._api = kube._api
        self._cache = cache
        self.written: list[str] = []
        self.skipped = 0

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Manifest | None:
        if self._cache is not None:
            _, cached = self._cache.peek(api_version, kind, namespace or "", name)
            if cached is not None:
                return cached
        return super().get(api_version, kind, namespace, name)

    def list(self, api_version: str, kind: str, namespace: str | None, label_selector: str = "") -> list[Manifest]:
        cached = self._cache.list(api_version, kind, namespace, label_selector) if self._cache else None
        return cached if cached is not None else super().list(api_version, kind, namespace, label_selector)

    def apply(self, manifest: Manifest, field_manager: str = FIELD_MANAGER, dry_run: bool = False) -> Manifest:
        if dry_run or field_manager != FIELD_MANAGER or self._cache is None:
            return super().apply(manifest, field_manager, dry_run)
        key = key_of(manifest)
        covered, live = self._cache.peek(*key)
        if not covered:  # no cache here (e.g. a namespace outside the operator's): one read instead
            found = super().get(*key[:2], key[2] or None, key[3])
            live = trim(found) if found is not None else None
        if self._cache.in_place(key, manifest, live):
            assert live is not None
            self.skipped += 1
            metrics.SKIPPED_APPLIES.labels(kind=key[1]).inc()
            return live
        result = super().apply(manifest)
        self.written.append(f"{key[1]} {key[3]}")
        return self._cache.remember(key, result)

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        super().delete(api_version, kind, namespace, name)
        if self._cache is not None:
            self._cache.forget((api_version, kind, namespace or "", name))
