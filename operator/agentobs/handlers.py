"""The kopf wiring: which events start a reconcile pass. Each handler is a few lines.

Passes for one resource are serialised by a lock. Besides create/update/resume, a daemon per
resource re-runs the pass every `resync` seconds (repairing children deleted or edited by hand)
and as soon as one of its workloads changes (so readiness reaches the status quickly).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
from typing import Any

import kopf

from agentobs import metrics
from agentobs.api import GROUP, PLURAL, VERSION
from agentobs.api.crd import make_crd
from agentobs.api.spec import AgentObservabilitySpec
from agentobs.kube import Kube, KubeError
from agentobs.prune import forget, prune
from agentobs.reconcile import reconcile
from agentobs.render.common import MANAGED_BY, OWNER_LABEL, Owner

RESYNC_SECONDS = float(os.environ.get("AGENTOBS_RESYNC_SECONDS", "60"))
CHILD_SELECTOR: dict[str, Any] = {"app.kubernetes.io/managed-by": MANAGED_BY, OWNER_LABEL: kopf.PRESENT}

_locks: dict[tuple[str, str], asyncio.Lock] = {}
_wakeups: dict[tuple[str, str], asyncio.Event] = {}
_kube: Kube | None = None


def _client() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube()
    return _kube


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _run(body: kopf.Body, logger: kopf.Logger) -> None:
    key = (body.metadata.namespace or "", body.metadata.name or "")
    lock = _locks.setdefault(key, asyncio.Lock())
    async with lock:
        try:
            outcome = await asyncio.to_thread(reconcile, _client(), dict(body), _now)
        except KubeError as exc:
            metrics.RECONCILE_FAILURES.inc()
            raise kopf.TemporaryError(f"API server: {exc.message}", delay=10) from None
    for type_, reason, message in outcome.transitions:
        if type_ == "Degraded" or reason in ("InvalidSpec", "ApplyFailed"):
            kopf.warn(body, reason=reason, message=message)
        else:
            kopf.info(body, reason=reason, message=message)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="agentobs.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="agentobs.io", key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 270
    settings.networking.request_timeout = 60


@kopf.on.startup()
async def install_crd(logger: kopf.Logger, **_: Any) -> None:
    if os.environ.get("AGENTOBS_MANAGE_CRD", "").lower() != "true":
        return
    await asyncio.to_thread(_client().apply, make_crd())
    logger.info("applied the AgentObservability CRD")


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_via_client(**kwargs)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def reconcile_on_change(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    await _run(body, logger)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=5)
async def resync(body: kopf.Body, logger: kopf.Logger, stopped: kopf.DaemonStopped, **_: Any) -> None:
    key = (body.metadata.namespace or "", body.metadata.name or "")
    wakeup = _wakeups.setdefault(key, asyncio.Event())
    metrics.MANAGED_RESOURCES.inc()
    try:
        while not stopped:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout=RESYNC_SECONDS)
            wakeup.clear()
            if stopped:
                break
            try:
                await _run(body, logger)
            except kopf.TemporaryError as exc:
                logger.warning("reconcile postponed: %s", exc)
    finally:
        metrics.MANAGED_RESOURCES.dec()
        _wakeups.pop(key, None)
        _locks.pop(key, None)


def _wake_owner(namespace: str | None, labels: kopf.Labels) -> None:
    wakeup = _wakeups.get((namespace or "", labels.get(OWNER_LABEL, "")))
    if wakeup is not None:
        wakeup.set()


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
async def clean_up(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """What owner references cannot reach: cluster-scoped children and copies in other namespaces."""
    try:
        owner = Owner(name=body.metadata.name or "", namespace=body.metadata.namespace or "",
                      uid=body.metadata.uid or "", spec=AgentObservabilitySpec())
        await asyncio.to_thread(prune, _client(), owner, set(), True)
    except KubeError as exc:
        logger.warning("clean-up incomplete: %s", exc.message)
    finally:
        forget(body.metadata.uid or "")


# Children whose change should be noticed at once; the others are repaired by the resync.
@kopf.on.event("apps", "v1", "statefulsets", labels=CHILD_SELECTOR)
@kopf.on.event("apps", "v1", "deployments", labels=CHILD_SELECTOR)
@kopf.on.event("apps", "v1", "daemonsets", labels=CHILD_SELECTOR)
@kopf.on.event("", "v1", "services", labels=CHILD_SELECTOR)
@kopf.on.event("", "v1", "configmaps", labels=CHILD_SELECTOR)
async def child_changed(namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    _wake_owner(namespace, labels)
