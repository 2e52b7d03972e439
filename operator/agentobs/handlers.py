"""The kopf wiring: watch events feed a scheduler that runs reconcile passes.

kopf watches the resources and their children and serves the webhook; it keeps no state on the
resources (no finalizer, no progress annotations), so deleting a resource never waits for the
operator. A pass runs when a resource is new or its spec changes, when one of its watched children
changes (at once), and every `AGENTOBS_RESYNC_SECONDS` (repairing children deleted or edited by
hand). Passes for one resource never overlap. With leader election on, only the leader runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fnmatch
import logging
import os
import socket
import time
from typing import Any

import kopf

from agentobs import admission, logroutes, metrics
from agentobs.api import GROUP, PLURAL, VERSION
from agentobs.api.crd import make_crd
from agentobs.api.spec import AgentObservabilitySpec
from agentobs.kube import Kube, KubeError, shared
from agentobs.leader import Elector
from agentobs.prune import forget, prune, sweep_orphans
from agentobs.reconcile import reconcile
from agentobs.render import collector
from agentobs.render.common import MANAGED_BY, OWNER_LABEL, OWNER_NAMESPACE_LABEL, Owner
from agentobs.render.prometheus import OPERATOR_METRICS_TARGET
from agentobs.status import POD_CAUSES

log = logging.getLogger(__name__)

RESYNC_SECONDS = float(os.environ.get("AGENTOBS_RESYNC_SECONDS", "60"))
RETRY_SECONDS = 10.0
SWEEP_SECONDS = 600.0
# Where each stack's Prometheus scrapes the operator's own metrics (certificate expiry), if known.
OWNER_EXTRA = ({OPERATOR_METRICS_TARGET: os.environ["AGENTOBS_METRICS_TARGET"]}
               if os.environ.get("AGENTOBS_METRICS_TARGET") else {})
# The cluster's node log collector (render.collector): where it runs (empty: not run) and its image.
COLLECTOR_NAMESPACE = os.environ.get("AGENTOBS_LOG_COLLECTOR_NAMESPACE",
                                     os.environ.get("AGENTOBS_OPERATOR_NAMESPACE", ""))
COLLECTOR_IMAGE = os.environ.get("AGENTOBS_LOG_COLLECTOR_IMAGE") or collector.IMAGE
if COLLECTOR_NAMESPACE:
    OWNER_EXTRA[collector.NAMESPACE_EXTRA] = COLLECTOR_NAMESPACE
# AGENTOBS_NAMESPACES as main.py reads it: names or globs, empty for the whole cluster.
WATCHED = [n for n in os.environ.get("AGENTOBS_NAMESPACES", "").split(",") if n]


def watched_namespace(namespace: str) -> bool:
    return not WATCHED or any(fnmatch.fnmatchcase(namespace, pattern) for pattern in WATCHED)


CHILD_SELECTOR: dict[str, Any] = {"app.kubernetes.io/managed-by": MANAGED_BY, OWNER_LABEL: kopf.PRESENT}

Key = tuple[str, str]


class Scheduler:
    """Which resources exist (from watch events), when each is due, and one pass at a time each."""

    def __init__(self) -> None:
        self.bodies: dict[Key, dict[str, Any]] = {}
        self.generations: dict[Key, int] = {}
        self.due: dict[Key, float] = {}
        self.running: set[Key] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.wakeup = asyncio.Event()
        self.collector_wakeup = asyncio.Event()
        self.elector = Elector(None, "", "", "")

    def client(self) -> Kube:
        return shared()

    def wake(self, key: Key, delay: float = 0.0) -> None:
        if key in self.bodies:
            self.due[key] = min(self.due.get(key, float("inf")), time.monotonic() + delay)
            self.wakeup.set()

    async def run_forever(self) -> None:
        while True:
            now = time.monotonic()
            for key in [k for k, t in self.due.items() if t <= now and k not in self.running]:
                self.due[key] = now + RESYNC_SECONDS
                if self.elector.is_leader:
                    self.running.add(key)
                    task = asyncio.create_task(self._pass(key))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
            timeout = max(0.05, min(self.due.values(), default=now + RESYNC_SECONDS) - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout=timeout)
            self.wakeup.clear()

    async def _pass(self, key: Key) -> None:
        body = self.bodies.get(key)
        try:
            if body is None:
                return
            outcome = await asyncio.to_thread(reconcile, self.client(), body, _now, OWNER_EXTRA)
            for type_, reason, message in outcome.transitions:
                warning = type_ == "Degraded" or reason in ("InvalidSpec", "ApplyFailed") or reason in POD_CAUSES
                await asyncio.to_thread(_post_event, self.client(), body, warning, reason, message)
        except KubeError as exc:
            metrics.RECONCILE_FAILURES.inc()
            log.warning("%s/%s: pass postponed, API server: %s", *key, exc.message)
            self.wake(key, RETRY_SECONDS)
        except Exception:  # a bug must not stop the other resources' passes
            metrics.RECONCILE_FAILURES.inc()
            log.exception("%s/%s: pass failed", *key)
            self.wake(key, RETRY_SECONDS)
        finally:
            self.running.discard(key)
            if body is not None and key not in self.bodies and self.elector.is_leader:
                # Deleted while this pass ran: what it applied after the clean-up of the DELETED
                # event (cluster-scoped objects, no owner reference) would otherwise stay behind.
                await _clean_up(key, str(body["metadata"].get("uid", "")))
            if logroutes.waiting_for_material(*key):  # its first pass wrote what its route needs
                self.collector_wakeup.set()

    async def collect_forever(self) -> None:
        """Keep the node collector's routes in step with the resources (see agentobs.logroutes)."""
        problem = ""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.collector_wakeup.wait(), timeout=RESYNC_SECONDS)
            await asyncio.sleep(1.0)  # one sync for a burst of changes
            self.collector_wakeup.clear()
            if not self.elector.is_leader:
                continue
            try:
                result = await asyncio.to_thread(logroutes.safe_sync, self.client(), COLLECTOR_NAMESPACE,
                                                 list(self.bodies.values()), COLLECTOR_IMAGE)
            except Exception:  # a bug must not stop the syncs to come
                log.exception("log collector: sync failed")
                continue
            if result.problem and result.problem != problem:
                log.warning("log collector: %s", result.problem)
                # Said once per new problem on every resource whose logs it would carry.
                for body in list(self.bodies.values()):
                    if ((body.get("spec") or {}).get("logging") or {}).get("enabled", True):
                        await asyncio.to_thread(_post_event, self.client(), body, True, "LogCollectorUnavailable",
                                                f"agent logs are not collected: {result.problem}")
            problem = result.problem

    async def elect_forever(self) -> None:
        swept = 0.0
        while True:
            was = self.elector.is_leader
            await asyncio.to_thread(self.elector.step, _now())
            if self.elector.is_leader and not was:
                for key in self.bodies:
                    self.wake(key)
            if self.elector.is_leader and time.monotonic() - swept > SWEEP_SECONDS:
                swept = time.monotonic()
                try:
                    await asyncio.to_thread(sweep_orphans, self.client(), watched_namespace)
                except KubeError as exc:
                    log.warning("orphan sweep postponed: %s", exc.message)
            await asyncio.sleep(self.elector.duration / 3)


scheduler = Scheduler()


def _post_event(kube: Kube, body: dict[str, Any], warning: bool, reason: str, message: str) -> None:
    meta = body["metadata"]
    involved = {"apiVersion": body["apiVersion"], "kind": body["kind"], "name": meta["name"],
                "namespace": meta["namespace"], "uid": meta["uid"]}
    try:
        kube.post_event(involved, warning, reason, message)
    except KubeError as exc:
        log.warning("event %s not posted: %s", reason, exc.message)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 270
    settings.networking.request_timeout = 60
    if os.environ.get("AGENTOBS_MANAGE_CRD", "").lower() == "true":
        await asyncio.to_thread(scheduler.client().apply, make_crd())
        logger.info("applied the AgentObservability CRD")
    namespace = os.environ.get("AGENTOBS_OPERATOR_NAMESPACE", "")
    if os.environ.get("AGENTOBS_LEADER_ELECTION", "").lower() == "true" and namespace:
        identity = os.environ.get("POD_ID") or socket.gethostname()
        lease = os.environ.get("AGENTOBS_LEADER_LEASE", "agentobs-operator-leader")
        scheduler.elector = Elector(scheduler.client(), namespace, lease, identity)
    memo["scheduler_tasks"] = [asyncio.create_task(scheduler.run_forever()),
                               asyncio.create_task(scheduler.elect_forever())]
    if COLLECTOR_NAMESPACE:
        memo["scheduler_tasks"].append(asyncio.create_task(scheduler.collect_forever()))


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.get("scheduler_tasks", []):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # Hand the Lease over at once instead of letting it run out: a replica already running takes
    # over within one retry, not a whole lease duration after this one stopped.
    await asyncio.to_thread(scheduler.elector.release, _now())


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_via_client(**kwargs)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def resource_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    key = (body.metadata.namespace or "", body.metadata.name or "")
    if event["type"] == "DELETED":
        admission.untrack(*key)
        scheduler.bodies.pop(key, None)
        scheduler.due.pop(key, None)
        metrics.MANAGED_RESOURCES.set(len(scheduler.bodies))
        scheduler.collector_wakeup.set()  # its route goes
        if scheduler.elector.is_leader:
            await _clean_up(key, body.metadata.uid or "")
        return
    generation = body.metadata.get("generation", 0)
    scheduler.bodies[key] = dict(body)
    admission.track(scheduler.bodies[key])
    metrics.MANAGED_RESOURCES.set(len(scheduler.bodies))
    if scheduler.generations.get(key) != generation:  # new, or the spec changed; not our status writes
        scheduler.generations[key] = generation
        scheduler.wake(key)
        scheduler.collector_wakeup.set()  # its route may change


async def _clean_up(key: Key, uid: str) -> None:
    """What owner references cannot reach: cluster-scoped children and copies in other namespaces."""
    owner = Owner(name=key[1], namespace=key[0], uid=uid, spec=AgentObservabilitySpec())
    try:
        await asyncio.to_thread(prune, scheduler.client(), owner, set(), True)
    except KubeError as exc:
        log.warning("%s/%s: clean-up incomplete: %s", *key, exc.message)
    finally:
        forget(uid)
        scheduler.generations.pop(key, None)


# Children whose change should be noticed at once; the others are repaired by the resync.
@kopf.on.event("apps", "v1", "statefulsets", labels=CHILD_SELECTOR)
@kopf.on.event("apps", "v1", "deployments", labels=CHILD_SELECTOR)
@kopf.on.event("apps", "v1", "daemonsets", labels=CHILD_SELECTOR)
@kopf.on.event("", "v1", "services", labels=CHILD_SELECTOR)
@kopf.on.event("", "v1", "configmaps", labels=CHILD_SELECTOR)
async def child_event(labels: kopf.Labels, **_: Any) -> None:
    owner_namespace = labels.get(OWNER_NAMESPACE_LABEL, "")
    scheduler.wake((owner_namespace, labels.get(OWNER_LABEL, "")))
