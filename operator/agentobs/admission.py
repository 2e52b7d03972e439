"""The pod webhook: its HTTPS server, its certificate's upkeep, what each resource injects, and
the admission review itself.

The server is a small aiohttp app of our own rather than kopf's admission machinery: the patch is
built directly as JSON-patch operations (`injection.patch_ops`), where kopf would diff a mutated
copy of the pod, which costs milliseconds on pods with long env lists.

The handler never fails a pod: any error admits the pod untouched, and is counted
(`agentobs_webhook_failopen_total`) and reported as a Kubernetes Event, so a broken operator is
visible without blocking agents. Pods admitted that way are found later by the coverage count.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import ssl
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kopf
from aiohttp import web
from pydantic import ValidationError

from agentobs import injection, metrics, webhook
from agentobs.api.spec import AgentObservabilitySpec
from agentobs.kube import Kube, KubeError, shared
from agentobs.render.common import Owner

log = logging.getLogger(__name__)

ROTATION_CHECK_SECONDS = 3600.0
NAMESPACE_CACHE_SECONDS = 30.0

_namespace_labels: dict[str, tuple[float, dict[str, str]]] = {}
_LOOKUPS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="admission")


def _client() -> Kube:
    return shared()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


CONFIGS: dict[str, injection.InjectionConfig] = {}


def track(body: dict[str, Any]) -> None:
    """Record what a resource injects (from its watch events); invalid or disabled: nothing."""
    meta = body.get("metadata") or {}
    key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    try:
        spec = AgentObservabilitySpec.model_validate(body.get("spec") or {})
    except ValidationError:
        CONFIGS.pop(key, None)  # reported by reconcile as Degraded; nothing to inject meanwhile
        return
    config = injection.make_config(Owner(name=meta.get("name", ""), namespace=meta.get("namespace", ""),
                                         uid=meta.get("uid", ""), spec=spec))
    if config is None:
        CONFIGS.pop(key, None)
    else:
        CONFIGS[key] = config


def untrack(namespace: str, name: str) -> None:
    CONFIGS.pop(f"{namespace}/{name}", None)


async def admit(request: dict[str, Any], configs: Iterable[injection.InjectionConfig]) -> list[dict[str, Any]]:
    """The JSON patch for one AdmissionRequest. Never raises: an error admits the pod untouched."""
    started = time.perf_counter()
    pod = request.get("object") or {}
    namespace = request.get("namespace") or (pod.get("metadata") or {}).get("namespace") or ""
    result, ops = "skipped", []
    try:
        candidates = list(configs)
        labels: dict[str, str] = {}
        if any(c.namespace_selector for c in candidates):
            # Its own small pool: admission must not queue behind reconcile passes in the default one,
            # or the API server's 5 s timeout admits pods uninjected under load.
            labels = await asyncio.get_running_loop().run_in_executor(_LOOKUPS, _labels_of_namespace, namespace)
        chosen = injection.choose(pod, namespace, labels, candidates)
        if chosen is not None:
            ops = injection.patch_ops(pod, chosen)
            result = "injected" if ops else "unchanged"
    except Exception as exc:  # fail open: the pod is admitted as it came
        result, ops = "failed", []
        metrics.WEBHOOK_FAIL_OPEN.labels(reason=type(exc).__name__).inc()
        log.exception("admitting a pod in %s without injection", namespace)
        await asyncio.get_running_loop().run_in_executor(_LOOKUPS, _report_fail_open, namespace, pod,
                                                         type(exc).__name__)
    metrics.WEBHOOK_REQUESTS.labels(result=result).inc()
    metrics.WEBHOOK_SECONDS.observe(time.perf_counter() - started)
    return ops


async def _review(request: web.Request) -> web.Response:
    try:
        review = await request.json()
        admission_request = review["request"]
    except (ValueError, KeyError, TypeError):
        return web.json_response({"error": "not an AdmissionReview"}, status=400)
    response: dict[str, Any] = {"uid": admission_request.get("uid", ""), "allowed": True}
    ops = await admit(admission_request, CONFIGS.values())
    if ops:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
    return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                              "response": response})


def _ssl_context(material: webhook.ServingMaterial, directory: Path) -> ssl.SSLContext:
    certfile, keyfile = webhook.write_files(material, directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


async def _upkeep(settings: webhook.WebhookSettings, material: webhook.ServingMaterial, directory: Path,
                  context: ssl.SSLContext) -> None:
    """Renew the certificate before it is due; new connections get the new one at once."""
    while True:
        await asyncio.sleep(ROTATION_CHECK_SECONDS)
        try:
            material, changed = await asyncio.to_thread(webhook.ensure, _client(), settings, material, _now())
        except KubeError as exc:
            log.warning("webhook certificate upkeep postponed: %s", exc.message)
            continue
        if changed:
            certfile, keyfile = webhook.write_files(material, directory)
            context.load_cert_chain(certfile, keyfile)


@kopf.on.startup()
async def start_webhook(memo: kopf.Memo, **_: Any) -> None:
    hook = webhook.WebhookSettings.from_env()
    material, _changed = await asyncio.to_thread(webhook.ensure, _client(), hook, None, _now())
    directory = Path(tempfile.mkdtemp(prefix="agentobs-webhook-"))
    context = _ssl_context(material, directory)
    app = web.Application()
    app.add_routes([web.post(f"/{webhook.WEBHOOK_PATH}", _review)])
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, hook.bind, hook.port, ssl_context=context).start()
    log.info("webhook listening on %s:%d", hook.bind, hook.port)
    memo["webhook_runner"] = runner
    memo["webhook_upkeep"] = asyncio.create_task(_upkeep(hook, material, directory, context))


@kopf.on.cleanup()
async def stop_webhook(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("webhook_upkeep")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    runner = memo.get("webhook_runner")
    if runner is not None:
        await runner.cleanup()


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
    # At admission a pod made from generateName has no name yet.
    name = meta.get("name") or f"{meta.get('generateName', 'pod-')}new"
    with contextlib.suppress(KubeError):
        _client().post_event({"apiVersion": "v1", "kind": "Pod", "namespace": namespace, "name": name}, True,
                             "InjectionFailed", f"admitted without agentobs instrumentation: {error}")
