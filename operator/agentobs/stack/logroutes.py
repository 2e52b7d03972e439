"""Keeping the cluster's one log collector in step with the resources: its routes, and its objects.

Every resource with `logging.enabled` gets a route: the namespaces it collects from (a namespace
selector is resolved to names here, so a namespace labelled later is picked up at the next sync),
the pod labels, its aggregator's Service, the CA that signs the aggregator's certificate (read
from the resource's CA bundle ConfigMap) and the collector's client certificate for that stack
(its Secret `<name>-log-collector-tls`); a resource whose first pass has not written them yet gets
its route at the next sync. `render.collector` turns the routes into objects; this module applies
them in the collector namespace and deletes the ones no longer wanted (all of them when no
resource collects logs).

Every object is stamped with its applied hash (`agentobs.stack.desired`). Given the operator's
`PassClient`, a sync sends only the objects the watch-fed caches do not hold as rendered (changed
routes, or deleted or edited by hand), and reads a route's CA and client certificate from the API
server only when the cache shows a new version of them, so a sync over an unchanged cluster sends
no request. Given a plain client (tests), it writes when the rendered objects differ from what it
last applied in this process or one of them is gone. Paused resources keep their route: pausing
leaves a stack as it is.

The operator's Deployment (`AGENTOBS_OPERATOR_DEPLOYMENT`, set by the chart) owns the collector's
objects when they are in its namespace: deleting it (`helm uninstall`) deletes them through the
garbage collector, while a restart or rollout, which keeps the Deployment, keeps them. The
cluster-scoped ClusterRole and ClusterRoleBinding cannot have a namespaced owner and stay.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from agentobs.kube import Kube, KubeError
from agentobs.render import collector, fluentd
from agentobs.render.common import Owner, content_hash, owner_of
from agentobs.render.tls import CA_BUNDLE_KEY, ca_bundle_name, tls_secret_name
from agentobs.stack.desired import applied_hash, stamp
from agentobs.stack.passclient import PassClient
from agentobs.stack.prune import key_of

log = logging.getLogger(__name__)

PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
# Kinds the collector consists of, for finding what to delete.
COLLECTOR_KINDS = [("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "Service"), ("v1", "ServiceAccount"),
                   ("apps/v1", "DaemonSet"), ("networking.k8s.io/v1", "NetworkPolicy"),
                   ("rbac.authorization.k8s.io/v1", "ClusterRole"),
                   ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding")]


@dataclass
class SyncResult:
    routes: list[str] = field(default_factory=list)  # route ids in the applied config
    waiting: list[str] = field(default_factory=list)  # "ns/name" whose CA bundle is not there yet
    applied: bool = False
    deleted: list[str] = field(default_factory=list)
    problem: str = ""  # what keeps the collector from running, for the resources' events
    error: str = ""  # an API failure, retried at the next sync


OPERATOR_DEPLOYMENT = os.environ.get("AGENTOBS_OPERATOR_DEPLOYMENT", "")

# Without caches, re-read now and then: a CA changes only when its Secret is replaced, a client
# certificate when renewed (long before it expires). With them, re-read when their version changes.
MATERIAL_REFRESH_SECONDS = 600.0


@dataclass
class _State:
    applied_hash: str = ""
    clean: bool = False  # no collector object left to delete, as the last look found
    waiting: set[str] = field(default_factory=set)
    owner: dict[str, str] | None = None  # the ownerReference to the operator's Deployment, once read
    owner_fresh: bool = False  # read from the API server by this sync
    # uid -> (read at, cached versions of the two objects or None, (CA, client certificate, client key) PEM)
    material: dict[str, tuple[float, tuple[str, str] | None, tuple[str, str, str]]] = field(default_factory=dict)


_state = _State()


def waiting_for_material(namespace: str, name: str) -> bool:
    """Whether the last sync left this resource out for want of its CA bundle or client certificate."""
    return f"{namespace}/{name}" in _state.waiting


def _versions(kube: Kube, owner: Owner) -> tuple[str, str] | None:
    """The cached versions of the CA bundle and the client certificate Secret; None without caches
    for them (or while one is not there)."""
    if not isinstance(kube, PassClient):
        return None
    bundle = kube.cached_version("v1", "ConfigMap", owner.namespace, ca_bundle_name(owner))
    client = kube.cached_version("v1", "Secret", owner.namespace, tls_secret_name(owner, fluentd.COLLECTOR_CLIENT))
    return (bundle, client) if bundle and client else None


def _material(kube: Kube, owner: Owner) -> tuple[str, str, str] | None:
    """(CA, client certificate, client key) of a resource's route; None while not written yet."""
    now = time.monotonic()
    versions = _versions(kube, owner)
    cached = _state.material.get(owner.uid)
    if cached is not None and (cached[1] == versions if versions is not None
                               else now - cached[0] < MATERIAL_REFRESH_SECONDS):
        return cached[2]
    # The caches keep no ConfigMap contents (and may keep no Secret data): read the objects themselves.
    read = kube.read if isinstance(kube, PassClient) else kube.get
    bundle = read("v1", "ConfigMap", owner.namespace, ca_bundle_name(owner))
    ca = str(((bundle or {}).get("data") or {}).get(CA_BUNDLE_KEY, ""))
    client = read("v1", "Secret", owner.namespace, tls_secret_name(owner, fluentd.COLLECTOR_CLIENT))
    data = (client or {}).get("data") or {}
    if not ca or not data.get("tls.crt") or not data.get("tls.key"):
        return None
    found = (ca, base64.b64decode(data["tls.crt"]).decode(), base64.b64decode(data["tls.key"]).decode())
    if versions is not None:  # the versions of what was just read, so the next sync reuses it
        versions = (str(bundle["metadata"].get("resourceVersion", "")),  # type: ignore[index]
                    str(client["metadata"].get("resourceVersion", "")))  # type: ignore[index]
    _state.material[owner.uid] = (now, versions, found)
    return found


def _namespaces(kube: Kube, owner: Owner, cache: dict[str, list[str]]) -> list[str]:
    names = fluentd.selected_namespaces(owner)
    if names is not None:
        return names
    selector = ",".join(f"{k}={v}" for k, v in
                        sorted(owner.spec.instrumentation.namespace_selector.match_labels.items()))
    if selector not in cache:
        cache[selector] = sorted(n["metadata"]["name"] for n in kube.list("v1", "Namespace", None, selector))
    return cache[selector]


def routes(kube: Kube, bodies: list[dict[str, Any]]) -> tuple[list[collector.Route], list[str]]:
    """(routes ready to apply, "ns/name" of the resources still waiting for their CA bundle)."""
    out: list[collector.Route] = []
    waiting: list[str] = []
    selector_cache: dict[str, list[str]] = {}
    uids = {(b.get("metadata") or {}).get("uid") for b in bodies}
    for uid in [u for u in _state.material if u not in uids]:
        del _state.material[uid]
    for body in bodies:
        owner = owner_of(body)  # None: invalid, its status says why; no aggregator to route to
        if owner is None or not fluentd.enabled(owner):
            continue
        material = _material(kube, owner)
        if material is None:
            waiting.append(f"{owner.namespace}/{owner.name}")
            continue
        ca, client_cert, client_key = material
        namespaces = _namespaces(kube, owner, selector_cache)
        if not namespaces:
            continue
        out.append(collector.Route(
            owner_namespace=owner.namespace, owner_name=owner.name, namespaces=tuple(namespaces),
            pod_labels=fluentd.selected_pod_labels(owner), host=fluentd.service_host(owner),
            port=fluentd.FORWARD_PORT, ca_pem=ca, client_cert_pem=client_cert, client_key_pem=client_key))
    return out, waiting


def _collector_objects(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    selector = ",".join(f"{k}={v}" for k, v in sorted(collector.selector_labels().items()))
    found: list[dict[str, Any]] = []
    for api, kind in COLLECTOR_KINDS:
        cluster_scoped = kind.startswith("Cluster")
        items = kube.list(api, kind, None if cluster_scoped else namespace, selector)
        if cluster_scoped:  # ours are named after the namespace; another operator's are not ours
            items = [i for i in items if i["metadata"]["name"] == f"{collector.NAME}-{namespace}"]
        found += items
    return found


def sync(kube: Kube, namespace: str, bodies: list[dict[str, Any]], image: str = collector.IMAGE) -> SyncResult:
    """Apply the collector for `bodies` (every AgentObservability this operator serves)."""
    result = SyncResult()
    ns = kube.get("v1", "Namespace", None, namespace)
    if ns is None:
        result.problem = f"the log collector namespace {namespace} does not exist"
        return result
    enforce = ((ns.get("metadata") or {}).get("labels") or {}).get(PSA_ENFORCE, "privileged")
    if enforce != "privileged":
        # Its pods would be refused (hostPath); say so rather than leave a DaemonSet of no pods.
        result.problem = (f"namespace {namespace} enforces Pod Security {enforce!r}; the log collector needs "
                          f"{PSA_ENFORCE}=privileged there")
        return result
    found, result.waiting = routes(kube, bodies)
    _state.waiting = set(result.waiting)
    result.routes = sorted(r.id for r in found)
    owner = _owner_reference(kube, namespace)
    manifests = [stamp(_owned(m, owner or {})) for m in collector.render(namespace, found, image)]
    if owner and not _state.owner_fresh and not _unchanged(kube, manifests):
        # About to write, with the owner as read earlier: the Deployment may have been replaced
        # since (its pods orphaned, this replica running on), and objects applied with the old
        # uid would be deleted by the garbage collector, then made again.
        owner = _owner_reference(kube, namespace, refresh=True)
        manifests = [stamp(_owned(m, owner or {})) for m in collector.render(namespace, found, image)]
    if owner is None:
        result.problem = f"the operator's Deployment {OPERATOR_DEPLOYMENT} in {namespace} is gone"
        return result
    desired_hash = content_hash(manifests)
    if isinstance(kube, PassClient):  # sends only what the caches do not hold as rendered
        before = len(kube.written)
        for manifest in manifests:
            kube.apply(manifest)
        result.applied = len(kube.written) > before
    elif manifests and not (_state.applied_hash == desired_hash and _all_there(kube, manifests)):
        for manifest in manifests:
            kube.apply(manifest)
        result.applied = True
    applied = desired_hash if manifests else ""
    if applied != _state.applied_hash:
        _state.clean = False  # objects no longer rendered (all of them, with no route left) may remain
    _state.applied_hash = applied
    if not _state.clean:
        desired = {key_of(m) for m in manifests}
        for obj in _collector_objects(kube, namespace):
            if key_of(obj) not in desired:
                meta = obj["metadata"]
                kube.delete(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
                result.deleted.append(f"{obj['kind']} {meta['name']}")
        _state.clean = True
    if result.applied or result.deleted:
        log.info("log collector in %s: routes %s%s", namespace, ", ".join(result.routes) or "none",
                 f"; deleted {', '.join(result.deleted)}" if result.deleted else "")
    return result


def _owner_reference(kube: Kube, namespace: str, refresh: bool = False) -> dict[str, str] | None:
    """The reference to the operator's Deployment in `namespace`; empty when there is none (another
    namespace, or run outside the chart); None when the Deployment it was read from is gone.
    Read at the first sync, and again whenever the DaemonSet is missing (first made, or deleted)
    or `refresh` asks (a sync about to write)."""
    if not OPERATOR_DEPLOYMENT:
        return {}
    _state.owner_fresh = False
    if _state.owner is not None and not refresh and not _missing(kube, namespace):
        return _state.owner
    _state.owner_fresh = True
    read = kube.read if isinstance(kube, PassClient) else kube.get
    try:
        deployment = read("apps/v1", "Deployment", namespace, OPERATOR_DEPLOYMENT)
    except KubeError as exc:  # RBAC without that read (not the chart's): the collector stays unowned
        if exc.status != 403:
            raise
        log.info("log collector: cannot read Deployment %s (%s); helm uninstall will leave the collector",
                 OPERATOR_DEPLOYMENT, exc.message)
        deployment = None
    uid = str(((deployment or {}).get("metadata") or {}).get("uid", ""))
    if not uid and _state.owner:
        # Deleted (helm uninstall, or by hand): the garbage collector deletes what it owned; made
        # again, the collector would be deleted again, as long as this replica lives.
        return None
    _state.owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": OPERATOR_DEPLOYMENT,
                    "uid": uid} if uid else {}
    return _state.owner


def _unchanged(kube: Kube, manifests: list[dict[str, Any]]) -> bool:
    """Whether a sync would write none of `manifests`: with caches, each is in place; without, each
    is as this process last applied it."""
    if isinstance(kube, PassClient):
        return all(kube.in_place(m) for m in manifests)
    return _state.applied_hash == content_hash(manifests) and _all_there(kube, manifests)


def _missing(kube: Kube, namespace: str) -> bool:
    if isinstance(kube, PassClient):
        return kube.cached_version("apps/v1", "DaemonSet", namespace, collector.NAME) is None
    return kube.get("apps/v1", "DaemonSet", namespace, collector.NAME) is None


def _owned(manifest: dict[str, Any], owner: dict[str, str]) -> dict[str, Any]:
    if owner and manifest["metadata"].get("namespace"):  # not the cluster-scoped RBAC
        manifest["metadata"]["ownerReferences"] = [dict(owner)]
    return manifest


def _all_there(kube: Kube, manifests: list[dict[str, Any]]) -> bool:
    """Every object is there with the hash it was rendered with (none deleted or replaced by hand)."""
    for m in manifests:
        meta = m["metadata"]
        live = kube.get(m["apiVersion"], m["kind"], meta.get("namespace"), meta["name"])
        if live is None or applied_hash(live) != applied_hash(m):
            return False
    return True


def retire(kube: Kube, namespace: str) -> list[str]:
    """Delete every object of a collector this operator no longer runs in `namespace` (the chart's
    `logCollector.enabled` turned off): left there, its DaemonSet would go on collecting every
    node's logs with the routes and client keys of the moment, never updated again (a new stack
    gets no route; a deleted stack's route retries its gone aggregator without end, its buffer
    growing on the nodes' disks). Returns what it deleted, as `Kind name`."""
    deleted = []
    for obj in _collector_objects(kube, namespace):
        meta = obj["metadata"]
        kube.delete(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        deleted.append(f"{obj['kind']} {meta['name']}")
    if deleted:
        log.info("log collector switched off: deleted %s from %s", ", ".join(deleted), namespace)
    return deleted


def safe_sync(kube: Kube, namespace: str, bodies: list[dict[str, Any]], image: str) -> SyncResult:
    """`sync` that reports an API failure instead of raising (the caller retries at the next wake)."""
    try:
        return sync(kube, namespace, bodies, image)
    except KubeError as exc:
        log.warning("log collector not synced: %s", exc.message)
        _state.applied_hash = ""
        _state.clean = False
        return SyncResult(error=exc.message)
