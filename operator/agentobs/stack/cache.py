"""Watch-fed caches of the operator's children (and of pods, for injection coverage), and the
per-pass client that reads from them and writes only what differs.

One `Informer` per kind lists once, then follows a watch from that version, with bookmarks,
re-listing only when the version expired: cluster-wide, or per namespace when the operator serves
namespaces named literally (and, for pods, whenever it is limited to some). Children are selected
on the server by the `managed-by` label. Each object is kept as a compact `Entry`
(`agentobs.stack.cache_entry`). Events other than the echo of the operator's own write wake the
owning resource.

`PassClient` is what a reconcile pass gets: reads come from the caches when they cover the
object (a miss falls back to one API read, so a cache still filling is never taken for absence),
and `apply` of a child whose hash and owned fields are in place returns the cached object without
a request. All requests still go through `agentobs.kube`.
"""

from __future__ import annotations

import fnmatch
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agentobs import metrics
from agentobs.kube import KINDS, Kube, KubeError, Manifest
from agentobs.render.common import MANAGED_BY, OWNER_LABEL, OWNER_NAMESPACE_LABEL
from agentobs.stack.cache_entry import (
    CHILD_LABELS,
    STACK_POD_LABELS,
    Entry,
    Selector,
    is_stack_pod,
    label_key,
    selector_terms,
)
from agentobs.stack.desired import applied_hash

log = logging.getLogger(__name__)

CHILD_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
# Kinds cached whole-label and unselected: pods (injection coverage) and namespaces (their selector).
UNSELECTED = (("v1", "Pod"), ("v1", "Namespace"))
Key = tuple[str, str, str, str]  # apiVersion, kind, namespace ("" when cluster-scoped), name
Wake = Callable[[str, str], None]  # (namespace, name) of the resource to wake
# An informer's objects by namespace ("" for cluster-scoped ones), then name: a pass lists one
# namespace's objects without a scan of all of them, and no entry needs a (namespace, name) key.
Store = dict[str, dict[str, Entry]]
# Lists come in pages of LIST_PAGE objects, and at most two pages are parsed at once in the whole
# process: at start-up every informer lists at the same time, and whole pages of full objects (with
# their managedFields) are what sets the operator's peak memory, which the process keeps after.
LIST_PAGE = 100
# The longest wait before a failed list or watch is tried again (client-go's reflector waits 30 s
# at most): after an outage of the API server the caches, which the passes read instead of it,
# are stale for no longer than this. A kind the cluster lacks, or the operator may not list, is
# tried again far less often.
RETRY_MAX_SECONDS = 30.0
UNAVAILABLE_RETRY_SECONDS = 300.0
_PAGES = threading.BoundedSemaphore(2)


@dataclass
class Informer:
    kube: Kube
    api_version: str
    kind: str
    namespace: str | None
    selector: str
    on_change: Callable[[Entry | None, Entry | None], None]
    store: Store = field(default_factory=dict)
    synced: threading.Event = field(default_factory=threading.Event)
    unavailable: bool = False  # this cluster lacks the kind, or the operator may not list it here
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopped: bool = False

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"informer-{self.kind}-{self.namespace or '*'}",
                         daemon=True).start()

    def get(self, namespace: str, name: str) -> Entry | None:
        with self.lock:
            names = self.store.get(namespace)
            return names.get(name) if names else None

    def entries(self, namespace: str | None = None) -> list[Entry]:
        """The entries of `namespace`, or of every namespace when None."""
        with self.lock:
            if namespace is None:
                return [entry for names in self.store.values() for entry in names.values()]
            names = self.store.get(namespace)
            return list(names.values()) if names else []

    def put(self, entry: Entry) -> Entry | None:
        """Store `entry`, keeping what the operator recorded about its own writes; the one replaced."""
        with self.lock:
            names = self.store.setdefault(entry.namespace, {})
            before = names.get(entry.name)
            if before is not None:
                entry.carry(before)
            names[entry.name] = entry
        return before

    def pop(self, namespace: str, name: str) -> Entry | None:
        with self.lock:
            names = self.store.get(namespace)
            if not names:
                return None
            before = names.pop(name, None)
            if not names:
                del self.store[namespace]
        return before

    def put_written(self, entry: Entry) -> Entry:
        """Store what a write returned, unless the watch already brought a later version (a status
        update by a controller can arrive before the writing thread gets here): a cache must never
        go back in time. Versions are compared as etcd's integers; opaque ones are taken as newer."""
        with self.lock:
            names = self.store.setdefault(entry.namespace, {})
            current = names.get(entry.name)
            if (current is not None and isinstance(current.rv, int) and isinstance(entry.rv, int)
                    and current.rv > entry.rv):
                current.baseline, current.echo = entry.owned, entry.rv
                return current
            names[entry.name] = entry
        entry.baseline, entry.echo = entry.owned, entry.rv
        return entry

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
                    backoff = UNAVAILABLE_RETRY_SECONDS
                else:
                    log.warning("watch of %s interrupted: %s", self.kind, exc.message)
            except Exception:  # a malformed event must not end the cache for good
                log.exception("watch of %s failed", self.kind)
            time.sleep(backoff * random.uniform(0.5, 1.5))  # noqa: S311 (jitter, not a secret)
            backoff = backoff if self.unavailable else min(backoff * 2, RETRY_MAX_SECONDS)

    def _relist(self) -> str:
        fresh: Store = {}
        count = 0
        token, version = "", ""
        while True:
            with _PAGES:  # a parsed page is tens of times the entries made of it: few at once
                items, list_version, token = self.kube.list_page(self.api_version, self.kind, self.namespace,
                                                                 self.selector, limit=LIST_PAGE, continue_=token)
                for obj in items:
                    entry = Entry(obj)
                    fresh.setdefault(entry.namespace, {})[entry.name] = entry
                    count += 1
                del items
            version = version or list_version
            if not token:
                break
        with self.lock:
            old, self.store = self.store, fresh
            for namespace, names in fresh.items():
                before_names = old.get(namespace, {})
                for name, entry in names.items():
                    if name in before_names:
                        entry.carry(before_names[name])
        if self.synced.is_set():  # a re-list: report what changed while the watch was away
            for namespace in old.keys() | fresh.keys():
                before_names, after_names = old.get(namespace, {}), fresh.get(namespace, {})
                for name in before_names.keys() | after_names.keys():
                    before, after = before_names.get(name), after_names.get(name)
                    if (before.rv if before else None) != (after.rv if after else None):
                        self.on_change(before, after)
        self.unavailable = False
        self.synced.set()
        metrics.CACHE_OBJECTS.labels(kind=self.kind).set(count)
        return version

    def _follow(self, version: str) -> str:
        """Apply watch events until the stream ends; the version to resume from, or "" to re-list."""
        timeout = random.randint(240, 360)  # noqa: S311 (spread the reconnects)
        for type_, obj in self.kube.watch(self.api_version, self.kind, self.namespace, self.selector, version,
                                          timeout):
            if type_ == "ERROR":
                return ""  # 410 Gone (or another Status): list again
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            if type_ == "BOOKMARK":
                continue
            obj.setdefault("apiVersion", self.api_version)
            obj.setdefault("kind", self.kind)
            entry = Entry(obj)
            if type_ == "DELETED":
                self.on_change(self.pop(entry.namespace, entry.name), None)
            else:
                self.on_change(self.put(entry), entry)
        return version


class Cache:
    """The informers of one operator process, keyed by (apiVersion, kind, namespace or None)."""

    def __init__(self, kube: Kube, kinds: list[tuple[str, str]], namespaces: list[str], wake: Wake) -> None:
        self.kube = kube
        self.kinds = kinds
        self.patterns = namespaces  # empty: cluster-wide
        # Children are watched cluster-wide unless every served namespace is named literally. The
        # chart binds the operator's namespaced permissions per namespace only then; for globs it
        # binds them cluster-wide, and a watch per kind and namespace would cost a thread and a
        # connection each (about 90 KiB): 17 per namespace, thousands with a team per namespace.
        # Pods stay per namespace, as they are not selected by label: the cluster's every pod is
        # not the operator's business.
        self.children_cluster_wide = not namespaces or any(set(p) & set("*?[]!") for p in namespaces)
        self.wake = wake
        # Called when a child that belongs to no one resource (the node log collector) changes.
        self.wake_unowned: Callable[[], None] | None = None
        self.informers: dict[tuple[str, str, str | None], Informer] = {}
        self._lock = threading.Lock()
        self._served: dict[str, bool] = {}  # namespace -> whether a change there concerns this operator

    def start(self) -> None:
        """Cluster-wide informers: of every kind of child unless the served namespaces are named
        literally (then of cluster-scoped kinds only), of pods when serving the whole cluster."""
        for api, kind in self.kinds:
            if self.children_cluster_wide or not KINDS[(api, kind)].namespaced:
                self._start(api, kind, None)
        if not self.patterns:
            self._start("v1", "Pod", None)
        self._start("v1", "Namespace", None)

    def ensure_namespace(self, namespace: str, kinds: list[tuple[str, str]] | None = None) -> None:
        """Per-namespace informers, when the operator is limited to some namespaces: of `kinds`
        (default: every kind of child, and pods) that no cluster-wide informer serves."""
        if not self.patterns:
            return
        self._served[namespace] = True
        for api, kind in kinds if kinds is not None else [*self.kinds, ("v1", "Pod")]:
            if KINDS[(api, kind)].namespaced and (api, kind, None) not in self.informers:
                self._start(api, kind, namespace)

    def _start(self, api: str, kind: str, namespace: str | None) -> None:
        with self._lock:
            if (api, kind, namespace) in self.informers:
                return
            informer = Informer(self.kube, api, kind, namespace,
                                "" if (api, kind) in UNSELECTED else CHILD_SELECTOR, self._changed)
            self.informers[(api, kind, namespace)] = informer
        informer.start()

    def _informer(self, api: str, kind: str, namespace: str | None) -> Informer | None:
        if (api, kind) not in KINDS:
            return None
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

    def peek(self, api: str, kind: str, namespace: str, name: str) -> tuple[bool, Entry | None]:
        """(covered, cached entry): covered is False when no synced cache holds this kind there."""
        informer = self._informer(api, kind, namespace)
        if informer is None:
            return False, None
        return True, informer.get(namespace if KINDS[(api, kind)].namespaced else "", name)

    def list(self, api: str, kind: str, namespace: str | None, selector: str) -> list[Manifest] | None:
        """Cached objects matching, or None when the caches cannot answer for all of them."""
        cluster_wide_ok = not self.patterns or not KINDS.get((api, kind), KINDS[("v1", "Pod")]).namespaced
        informer = self._informer(api, kind, namespace) if (namespace or cluster_wide_ok) else None
        terms = selector_terms(selector)
        # Every child the operator renders carries managed-by beside its owner labels.
        if informer is None or not (selector_terms(informer.selector) <= terms
                                    or any(label_key(t) == OWNER_LABEL for t in terms)):
            return None
        if (api, kind) not in UNSELECTED and any(label_key(t) not in CHILD_LABELS for t in terms):
            return None  # a label the cache does not keep
        # The stack's own pods keep only the labels that select them (cache_entry): a selector on
        # other labels looks for agents' pods, which they are not.
        agents_only = kind == "Pod" and any(label_key(t) not in STACK_POD_LABELS for t in terms)
        wanted = Selector(selector)
        return [entry.manifest() for entry in informer.entries(namespace)
                if wanted(entry.labels)
                and not (agents_only and is_stack_pod(entry.labels))]

    def remember(self, key: Key, written: Manifest) -> Entry:
        """Record the operator's own write: its echo from the watch wakes nothing, and the fields it
        owns now are the baseline for noticing hand edits."""
        entry = Entry(written)
        informer = self._informer(key[0], key[1], key[2] or None)
        if informer is not None:
            return informer.put_written(entry)
        entry.baseline, entry.echo = entry.owned, entry.rv
        return entry

    @staticmethod
    def in_place(desired: Manifest, live: Entry | None) -> bool:
        """The live child carries the desired hash and the fields the operator's last apply owned."""
        wanted = applied_hash(desired)
        if live is None or wanted is None or live.applied_hash != wanted or not live.owned:
            return False
        if live.baseline is None:  # first sight after a restart: the baseline from now on
            live.baseline = live.owned
        return live.baseline == live.owned

    def _changed(self, before: Entry | None, after: Entry | None) -> None:
        entry = after or before
        if entry is None or (entry.api_version, entry.kind) in UNSELECTED:
            return
        if after is not None and after.echo == after.rv:
            return  # the echo of our own write
        if not self._serves(entry.namespace):
            return  # a cluster-wide watch sees other operators' children too
        if OWNER_LABEL not in entry.labels:
            if self.wake_unowned is not None:
                self.wake_unowned()
            return
        self.wake(entry.labels.get(OWNER_NAMESPACE_LABEL, ""), entry.labels[OWNER_LABEL])


    def _serves(self, namespace: str) -> bool:
        if not self.patterns or not namespace:
            return True
        served = self._served.get(namespace)
        if served is None:
            served = self._served[namespace] = serves(self.patterns, namespace)
        return served


def serves(patterns: list[str], namespace: str) -> bool:
    """Whether an operator limited to `patterns` (names or globs; none: the whole cluster) serves
    `namespace`."""
    return not patterns or any(fnmatch.fnmatchcase(namespace, p) for p in patterns)


def key_of(manifest: Manifest) -> Key:
    meta = manifest["metadata"]
    namespace = meta.get("namespace", "") if KINDS[(manifest["apiVersion"], manifest["kind"])].namespaced else ""
    return (manifest["apiVersion"], manifest["kind"], namespace, meta["name"])
