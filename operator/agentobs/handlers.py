"""The kopf wiring: watch events feed a work queue that a bounded pool of workers drains.

kopf watches the resources and serves the webhook; it keeps no state on the resources (no
finalizer, no progress annotations), so deleting a resource never waits for the operator. The
children are watched by the informers of `agentobs.stack.cache`, which wake their resource when one
changes. A pass is queued when a resource is new or its spec changes (first), when a child changes
or goes away or a resource whose selection may overlap its own is deleted (next), and at every
routine resync (last; the period grows with the number of resources, see `agentobs.workqueue`).
`AGENTOBS_WORKERS` passes run at once, each in the pool's own thread, and passes for one resource
never overlap. With leader election on, only the leader runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import random
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from agentobs import kopf_settings, memory, metrics
from agentobs.admission import server as admission
from agentobs.admission import webhook
from agentobs.admission.coverage import released
from agentobs.api import GROUP, KIND, PLURAL, VERSION
from agentobs.api.crd import make_crd
from agentobs.api.spec import AgentObservabilitySpec
from agentobs.bodies import Bodies, Key
from agentobs.kube import Kube, KubeError, shared
from agentobs.leader import Elector
from agentobs.render import collector
from agentobs.render.common import Owner
from agentobs.render.prometheus import OPERATOR_METRICS_TARGET
from agentobs.render.rules import RUNBOOK_URL
from agentobs.stack import logroutes, unserved
from agentobs.stack.cache import Cache, serves
from agentobs.stack.passclient import PassClient
from agentobs.stack.prune import PRUNABLE, forget, prune, sweep_orphans
from agentobs.stack.reconcile import WARNING_REASONS, WEBHOOK_EXCLUDED_EXTRA, namespace_terminating, reconcile
from agentobs.stack.status import POD_CAUSES
from agentobs.workqueue import Priority, WorkQueue, resync_period, retry_delay

log = logging.getLogger(__name__)

RESYNC_SECONDS = float(os.environ.get("AGENTOBS_RESYNC_SECONDS", "60"))
RESYNC_RATE = float(os.environ.get("AGENTOBS_RESYNC_RATE", "2"))
WORKERS = max(1, int(os.environ.get("AGENTOBS_WORKERS", "4")))
RETRY_SECONDS = 10.0  # the retired collector's deletion, tried again
SWEEP_SECONDS = 600.0
CACHE_SYNC_SECONDS = 60.0
# Where each stack's Prometheus scrapes the operator's own metrics (certificate expiry), if known.
# Where the alerts' runbook links point (the published docs/runbooks.md), if set.
OWNER_EXTRA = {key: os.environ[env] for key, env in ((OPERATOR_METRICS_TARGET, "AGENTOBS_METRICS_TARGET"),
                                                     (RUNBOOK_URL, "AGENTOBS_RUNBOOK_URL")) if os.environ.get(env)}
# The cluster's node log collector (render.collector): where it runs (empty: not run) and its image.
COLLECTOR_NAMESPACE = os.environ.get("AGENTOBS_LOG_COLLECTOR_NAMESPACE",
                                     os.environ.get("AGENTOBS_OPERATOR_NAMESPACE", ""))
COLLECTOR_IMAGE = os.environ.get("AGENTOBS_LOG_COLLECTOR_IMAGE") or collector.IMAGE
if COLLECTOR_NAMESPACE:
    OWNER_EXTRA[collector.NAMESPACE_EXTRA] = COLLECTOR_NAMESPACE
# With no collector to run, where one an earlier configuration ran may remain (the chart's
# logCollector.enabled turned off by `helm upgrade`): the leader deletes it (logroutes.retire).
RETIRED_COLLECTOR_NAMESPACE = "" if COLLECTOR_NAMESPACE else os.environ.get("AGENTOBS_OPERATOR_NAMESPACE", "")
# AGENTOBS_NAMESPACES as main.py reads it: names or globs, empty for the whole cluster.
WATCHED = [n for n in os.environ.get("AGENTOBS_NAMESPACES", "").split(",") if n]


def owner_extra() -> dict[str, str]:
    """OWNER_EXTRA, and the namespaces the webhook configuration leaves out as last read (the chart
    may add some), so a stack in one of them is told it can instrument nothing there."""
    excluded = webhook.excluded_namespaces(os.environ.get("AGENTOBS_OPERATOR_NAMESPACE", ""))
    return {**OWNER_EXTRA, WEBHOOK_EXCLUDED_EXTRA: ",".join(excluded)}


def watched_namespace(namespace: str) -> bool:
    return serves(WATCHED, namespace)


class Scheduler:
    """Which resources exist (from watch events), when each is due, and the workers."""

    def __init__(self) -> None:
        self.bodies = Bodies()
        self.generations: dict[Key, int] = {}
        self.due: dict[Key, float] = {}  # next routine resync
        self.failures: dict[Key, int] = {}  # passes failed in a row
        self.queue: WorkQueue[Key] = WorkQueue()
        self.collector_wakeup = asyncio.Event()
        self.elector = Elector(None, "", "", "")
        self.cache: Cache | None = None
        self.executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="reconcile")
        self.trimmer = memory.Trimmer()

    def client(self) -> Kube:
        return shared()

    def period(self) -> float:
        return resync_period(RESYNC_SECONDS, len(self.bodies), RESYNC_RATE)

    def wake(self, key: Key, priority: Priority = Priority.CHILD, delay: float = 0.0) -> None:
        if key not in self.bodies:
            return
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self.wake, key, priority)
            return
        self.queue.add(key, priority)

    def retry(self, key: Key, failed: bool) -> None:
        """After a pass: when it failed, try again sooner than the routine resync, backing off."""
        if not failed:
            self.failures.pop(key, None)
            return
        self.failures[key] = self.failures.get(key, 0) + 1
        self.wake(key, Priority.RESYNC, retry_delay(self.failures[key]))

    def start_cache(self, loop: asyncio.AbstractEventLoop) -> None:
        def wake(namespace: str, name: str) -> None:  # called from an informer's thread
            loop.call_soon_threadsafe(self.wake, (namespace, name))

        self.cache = Cache(Kube(pool_size=64), PRUNABLE, WATCHED, wake)
        def wake_collector() -> None:  # from an informer's thread too
            loop.call_soon_threadsafe(self.collector_wakeup.set)

        self.cache.wake_unowned = wake_collector
        self.cache.start()

    async def run_forever(self) -> None:
        """Queue routine resyncs as they come due; the workers do the passes."""
        workers = [asyncio.create_task(self._work()) for _ in range(WORKERS)]
        try:
            while True:
                now = time.monotonic()
                for key in [k for k, t in self.due.items() if t <= now]:
                    self.due[key] = now + self.period() * random.uniform(0.9, 1.1)  # noqa: S311 (spread)
                    self.queue.add(key, Priority.RESYNC)
                for priority, count in self.queue.depth().items():
                    metrics.QUEUE_DEPTH.labels(priority=priority.name.lower()).set(count)
                metrics.RESYNC_PERIOD.set(self.period())
                if self.trimmer.due(not self.queue.busy, now):
                    await asyncio.get_running_loop().run_in_executor(self.executor, self.trimmer.trim, now)
                await asyncio.sleep(max(0.05, min(min(self.due.values(), default=now + 1.0) - now, 1.0)))
        finally:
            for worker in workers:
                worker.cancel()

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                if self.elector.is_leader and key in self.bodies:
                    await self._pass(key)
                    self.trimmer.passed()
            finally:
                self.queue.done(key)

    async def _wait_for_cache(self, namespace: str) -> None:
        """A pass reads its children from the caches: give them a moment to fill first (a miss
        would only cost an API read, but thousands of them at start-up are worth avoiding)."""
        if self.cache is None:
            return
        self.cache.ensure_namespace(namespace)
        await asyncio.to_thread(self.cache.wait_synced, namespace, CACHE_SYNC_SECONDS)

    async def _pass(self, key: Key) -> None:
        body = self.bodies.get(key)
        try:
            if body is None:
                return
            await self._wait_for_cache(key[0])
            client = PassClient(self.client(), self.cache)
            loop = asyncio.get_running_loop()
            outcome = await loop.run_in_executor(self.executor, reconcile, client, body, _now, owner_extra())
            for type_, reason, message in outcome.transitions:
                warning = type_ == "Degraded" or reason in WARNING_REASONS or reason in POD_CAUSES
                await loop.run_in_executor(self.executor, _post_event, self.client(), body, warning, reason,
                                           message)
            self.retry(key, outcome.retry)
        except KubeError as exc:
            metrics.RECONCILE_FAILURES.inc()
            log.warning("%s/%s: pass postponed, API server: %s", *key, exc.message)
            self.retry(key, True)
        except Exception:  # a bug must not stop the other resources' passes
            metrics.RECONCILE_FAILURES.inc()
            log.exception("%s/%s: pass failed", *key)
            self.retry(key, True)
        finally:
            if body is not None and key not in self.bodies and self.elector.is_leader:
                # Deleted while this pass ran: what it applied after the clean-up of the DELETED
                # event (cluster-scoped objects, no owner reference) would otherwise stay behind.
                await _clean_up(key, str(body["metadata"].get("uid", "")))
            if logroutes.waiting_for_material(*key):  # its first pass wrote what its route needs
                self.collector_wakeup.set()

    async def collect_forever(self) -> None:
        """Keep the node collector's routes in step with the resources (see agentobs.stack.logroutes)."""
        problem = ""
        if self.cache is not None:  # its objects are read from the caches too (only its kinds: the
            # chart grants no more in the operator's namespace)
            self.cache.ensure_namespace(COLLECTOR_NAMESPACE, logroutes.COLLECTOR_KINDS)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.collector_wakeup.wait(), timeout=RESYNC_SECONDS)
            await asyncio.sleep(1.0)  # one sync for a burst of changes
            self.collector_wakeup.clear()
            if not self.elector.is_leader:
                continue
            try:  # reads through the caches too
                result = await asyncio.to_thread(logroutes.safe_sync, PassClient(self.client(), self.cache),
                                                 COLLECTOR_NAMESPACE, list(self.bodies.values()), COLLECTOR_IMAGE)
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

    async def retire_collector(self, namespace: str) -> None:
        """Delete the collector left in `namespace` by a configuration that ran one, once, as the
        leader. Without the chart's permissions for it (an older chart), say what to delete."""
        while True:
            if self.elector.is_leader:
                try:
                    await asyncio.to_thread(logroutes.retire, self.client(), namespace)
                    return
                except KubeError as exc:
                    if exc.status == 403:
                        log.warning("log collector switched off, but its objects in %s are not mine to delete "
                                    "(%s); delete them with: kubectl delete -n %s ds,cm,secret,svc,sa,"
                                    "networkpolicy,clusterrole,clusterrolebinding -l %s", namespace, exc.message,
                                    namespace, "app.kubernetes.io/instance=" + collector.NAME)
                        return
                    log.warning("log collector switched off, its objects in %s not deleted yet: %s",
                                namespace, exc.message)
            await asyncio.sleep(RETRY_SECONDS)

    async def elect_forever(self) -> None:
        swept = 0.0
        while True:
            was = self.elector.is_leader
            await asyncio.to_thread(self.elector.step, _now())
            if self.elector.is_leader and not was:
                for key in self.bodies:
                    self.wake(key, Priority.RESYNC)
            elif was and not self.elector.is_leader:
                # The new leader exports them now; ours would stay at their last values.
                metrics.forget_resource()
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
        # In a namespace being deleted no event can be posted, and none is worth a warning.
        (log.debug if namespace_terminating(exc) else log.warning)("event %s not posted: %s", reason, exc.message)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    kopf_settings.configure(settings)
    if os.environ.get("AGENTOBS_MANAGE_CRD", "").lower() == "true":
        await asyncio.to_thread(scheduler.client().apply, make_crd())
        logger.info("applied the AgentObservability CRD")
    namespace = os.environ.get("AGENTOBS_OPERATOR_NAMESPACE", "")
    if os.environ.get("AGENTOBS_LEADER_ELECTION", "").lower() == "true" and namespace:
        identity = os.environ.get("POD_ID") or socket.gethostname()
        lease = os.environ.get("AGENTOBS_LEADER_LEASE", "agentobs-operator-leader")
        scheduler.elector = Elector(scheduler.client(), namespace, lease, identity)
    if WATCHED:  # stacks a narrowed namespace list left behind, reconciled by nothing now
        await asyncio.to_thread(unserved.report, scheduler.client(), WATCHED)
    scheduler.start_cache(asyncio.get_running_loop())
    memo["scheduler_tasks"] = [asyncio.create_task(scheduler.run_forever()),
                               asyncio.create_task(scheduler.elect_forever())]
    if COLLECTOR_NAMESPACE:
        memo["scheduler_tasks"].append(asyncio.create_task(scheduler.collect_forever()))
    elif RETIRED_COLLECTOR_NAMESPACE:
        memo["scheduler_tasks"].append(asyncio.create_task(scheduler.retire_collector(RETIRED_COLLECTOR_NAMESPACE)))


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
        gone = admission.CONFIGS.get(f"{key[0]}/{key[1]}")
        admission.untrack(*key)
        for other in released(gone, None, admission.CONFIGS):  # its pods others select are theirs now
            scheduler.wake(other)
        metrics.forget_resource(*key)
        scheduler.bodies.pop(key, None)
        scheduler.due.pop(key, None)
        scheduler.failures.pop(key, None)
        scheduler.queue.discard(key)
        metrics.MANAGED_RESOURCES.set(len(scheduler.bodies))
        scheduler.collector_wakeup.set()  # its route goes
        if scheduler.elector.is_leader:
            await _clean_up(key, body.metadata.uid or "")
        return
    generation = body.metadata.get("generation", 0)
    new = key not in scheduler.bodies
    slim = _slim(body)
    scheduler.bodies[key] = slim
    before = admission.CONFIGS.get(f"{key[0]}/{key[1]}")
    admission.track(slim)
    # Instrumentation turned off or selectors narrowed: as after a deletion, the pods it no longer
    # selects are the others' to take over.
    for other in released(before, admission.CONFIGS.get(f"{key[0]}/{key[1]}"), admission.CONFIGS):
        scheduler.wake(other)
    metrics.MANAGED_RESOURCES.set(len(scheduler.bodies))
    if new:  # its first routine resync comes a period after its first pass
        scheduler.due[key] = time.monotonic() + scheduler.period() * random.uniform(0.9, 1.1)  # noqa: S311
    if scheduler.generations.get(key) != generation:  # new, or the spec changed; not our status writes
        scheduler.generations[key] = generation
        scheduler.wake(key, Priority.NEW)
        scheduler.collector_wakeup.set()  # its route may change


def _slim(body: kopf.Body) -> dict[str, Any]:
    """What passes, events and the collector's routes read of a resource: its managedFields and
    annotations (kubectl's last-applied copy of the spec among them) are left out."""
    meta = body.metadata
    return {"apiVersion": body.get("apiVersion", f"{GROUP}/{VERSION}"), "kind": body.get("kind", KIND),
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "generation", "resourceVersion")
                         if k in meta},
            "spec": body.get("spec") or {}, "status": body.get("status") or {}}


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
