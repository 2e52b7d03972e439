"""The kopf wiring of the pod webhook: its server, its certificate's upkeep, the index of what each
resource injects, and the mutating handler.

The handler never fails a pod: any error admits the pod untouched, and is counted
(`agentobs_webhook_failopen_total`) and reported as a Kubernetes Event, so a broken operator is
visible without blocking agents. Pods admitted that way are found later by the coverage count.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import kopf
from pydantic import ValidationError

from agentobs import injection, metrics, webhook
from agentobs.api import GROUP, PLURAL, VERSION
from agentobs.api.spec import AgentObservabilitySpec
from agentobs.kube import Kube, KubeError
from agentobs.render.common import Owner

log = logging.getLogger(__name__)

ROTATION_CHECK_SECONDS = 3600.0
NAMESPACE_CACHE_SECONDS = 30.0

_kube: Kube | None = None
_namespace_labels: dict[str, tuple[float, dict[str, str]]] = {}


def _client() -> Kube:
    global _kube
    if _kube is None:
        _kube = Kube()
    return _kube


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def _upkeep(settings: webhook.WebhookSettings, material: webhook.ServingMaterial, directory: Path) -> None:
    """Renew the certificate before it is due; kopf's server picks up the rewritten files."""
    while True:
        await asyncio.sleep(ROTATION_CHECK_SECONDS)
        try:
            material, changed = await asyncio.to_thread(webhook.ensure, _client(), settings, material, _now())
        except KubeError as exc:
            log.warning("webhook certificate upkeep postponed: %s", exc.message)
            continue
        if changed:
            webhook.write_files(material, directory)


@kopf.on.startup()
async def start_webhook(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    hook = webhook.WebhookSettings.from_env()
    material, _changed = await asyncio.to_thread(webhook.ensure, _client(), hook, None, _now())
    directory = Path(tempfile.mkdtemp(prefix="agentobs-webhook-"))
    certfile, pkeyfile = webhook.write_files(material, directory)
    settings.admission.server = kopf.WebhookServer(
        addr=hook.bind, port=hook.port, certfile=str(certfile), pkeyfile=str(pkeyfile), host=hook.host,
        file_check_interval=30,
    )
    settings.admission.managed = None  # the configuration is the chart's (or ours), not kopf's
    memo["webhook_upkeep"] = asyncio.create_task(_upkeep(hook, material, directory))


@kopf.on.cleanup()
async def stop_webhook(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("webhook_upkeep")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@kopf.index(GROUP, VERSION, PLURAL)
def injection_configs(body: kopf.Body, **_: Any) -> dict[str, injection.InjectionConfig] | None:
    meta = body.metadata
    try:
        spec = AgentObservabilitySpec.model_validate(dict(body.spec))
    except ValidationError:
        return None  # reported by reconcile as Degraded; nothing to inject meanwhile
    owner = Owner(name=meta.name or "", namespace=meta.namespace or "", uid=meta.uid or "", spec=spec)
    config = injection.make_config(owner)
    return {config.key: config} if config else None


def _labels_of_namespace(name: str) -> dict[str, str]:
    now = time.monotonic()
    cached = _namespace_labels.get(name)
    if cached and now - cached[0] < NAMESPACE_CACHE_SECONDS:
        return cached[1]
    found = _client().get("v1", "Namespace", None, name)
    labels = dict(((found or {}).get("metadata") or {}).get("labels") or {})
    _namespace_labels[name] = (now, labels)
    return labels


def _report_fail_open(namespace: str, pod: dict[str, Any], error: str) -> None:
    meta = pod.get("metadata") or {}
    name = meta.get("name") or f"{meta.get('generateName', 'pod-')}<new>"
    stamp = _now().strftime("%Y-%m-%dT%H:%M:%SZ")
    with contextlib.suppress(KubeError):
        _client().create_event({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"agentobs-failopen-{uuid.uuid4().hex[:12]}", "namespace": namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": namespace, "name": name},
            "reason": "InjectionFailed", "type": "Warning",
            "message": f"admitted without agentobs instrumentation: {error}",
            "source": {"component": "agentobs-operator"}, "firstTimestamp": stamp, "lastTimestamp": stamp,
            "count": 1,
        })


def mutate(pod: dict[str, Any], namespace: str, configs: list[injection.InjectionConfig],
           namespace_labels: dict[str, str]) -> dict[str, Any] | None:
    """The mutated pod, or None when no resource selects it."""
    chosen = injection.choose(pod, namespace, namespace_labels, configs)
    return injection.inject(pod, chosen) if chosen else None


@kopf.on.mutate("v1", "pods", id=webhook.WEBHOOK_PATH, operations={"CREATE"}, ignore_failures=True,
                side_effects=False)
async def mutate_pod(body: kopf.Body, patch: kopf.Patch, namespace: str | None, **kwargs: Any) -> None:
    started = time.perf_counter()
    injection_configs: kopf.Index[str, injection.InjectionConfig] = kwargs["injection_configs"]
    pod = dict(body)
    ns = namespace or (pod.get("metadata") or {}).get("namespace") or ""
    result = "skipped"
    try:
        configs = [c for key in injection_configs for c in injection_configs.get(key, [])]
        labels = await asyncio.to_thread(_labels_of_namespace, ns) if configs else {}
        mutated = mutate(pod, ns, configs, labels)
        if mutated is not None:
            result = "injected"
            patch.fns.append(lambda target: _replace(target, mutated))
    except Exception as exc:  # fail open: the pod is admitted as it came
        result = "failed"
        metrics.WEBHOOK_FAIL_OPEN.labels(reason=type(exc).__name__).inc()
        log.exception("admitting a pod in %s without injection", ns)
        await asyncio.to_thread(_report_fail_open, ns, pod, type(exc).__name__)
    metrics.WEBHOOK_REQUESTS.labels(result=result).inc()
    metrics.WEBHOOK_SECONDS.observe(time.perf_counter() - started)


def _replace(target: Any, mutated: dict[str, Any]) -> None:
    target.clear()
    target.update(mutated)
