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
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
from aiohttp import web

from agentobs import metrics
from agentobs.admission import injection, webhook
from agentobs.kube import Kube, KubeError, shared
from agentobs.render.common import owner_of

log = logging.getLogger(__name__)

ROTATION_CHECK_SECONDS = 3600.0
# How often the configuration's caBundle is checked between rotation checks: a reinstalled chart
# (or anything else replacing the MutatingWebhookConfiguration) brings it back empty, and until
# it is put back the API server cannot call the webhook and admits agent pods uninstrumented.
# One GET, and no write while the bundle is in place.
CA_CHECK_SECONDS = 30.0
START_RETRY_SECONDS = 5.0
START_RETRY_MAX_SECONDS = 300.0
# When the API server was the trouble (unreachable, 429, 5xx), at most this long: once it is back,
# pods admitted before the webhook serves again go uninjected.
START_RETRY_API_MAX_SECONDS = 30.0
# The readiness path on the webhook port (the chart's readinessProbe, over HTTPS).
READY_PATH = "readyz"
# What the `webhook` health probe reports: starting, serving, or degraded with the reason.
WEBHOOK_STATE: dict[str, str] = {"status": "starting"}
NAMESPACE_CACHE_SECONDS = 30.0

_namespace_labels: dict[str, tuple[float, dict[str, str]]] = {}
_LOOKUPS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="admission")


def _client() -> Kube:
    return shared()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


CONFIGS = injection.ConfigIndex()


def track(body: dict[str, Any]) -> None:
    """Record what a resource injects (from its watch events); invalid or disabled: nothing."""
    meta = body.get("metadata") or {}
    key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
    owner = owner_of(body)
    if owner is None:
        CONFIGS.pop(key)  # reported by reconcile as Degraded; no stack to send to meanwhile
        return
    config = injection.make_config(owner)
    if config is None:
        CONFIGS.pop(key)
    else:
        CONFIGS.put(config)


def untrack(namespace: str, name: str) -> None:
    CONFIGS.pop(f"{namespace}/{name}")


async def admit(request: dict[str, Any], configs: injection.ConfigIndex) -> list[dict[str, Any]]:
    """The JSON patch for one AdmissionRequest. Never raises: an error admits the pod untouched."""
    started = time.perf_counter()
    pod = request.get("object") or {}
    namespace = request.get("namespace") or (pod.get("metadata") or {}).get("namespace") or ""
    result, ops = "skipped", []
    try:
        candidates = configs.candidates(pod, namespace)
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
    ops = await admit(admission_request, CONFIGS)
    if ops:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
    return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                              "response": response})


def _ssl_context(material: webhook.ServingMaterial) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    webhook.load_serving_pair(context, material)
    return context


async def _upkeep(settings: webhook.WebhookSettings, material: webhook.ServingMaterial,
                  context: ssl.SSLContext) -> None:
    """Renew the certificate before it is due (new connections get the new one at once), and keep
    its CA in the webhook configuration."""
    rotation_checked = time.monotonic()
    while True:
        await asyncio.sleep(CA_CHECK_SECONDS)
        try:
            if time.monotonic() - rotation_checked < ROTATION_CHECK_SECONDS:
                await asyncio.to_thread(webhook.publish_ca, _client(), settings, material.ca.cert_pem)
                continue
            material, changed = await asyncio.to_thread(webhook.ensure, _client(), settings, material, _now())
            rotation_checked = time.monotonic()
        except KubeError as exc:
            log.warning("webhook certificate upkeep postponed: %s", exc.message)
            continue
        if changed:
            webhook.load_serving_pair(context, material)


async def _ready(_request: web.Request) -> web.Response:
    return web.Response(text="serving")


def make_app() -> web.Application:
    """The webhook's routes. `GET /readyz` is the pod's readiness probe: kopf's /healthz answers
    before the webhook listens (and while it cannot), so a pod probed there joined the webhook
    Service early, and every rollout admitted the pods created meanwhile uninstrumented."""
    app = web.Application()
    app.add_routes([web.post(f"/{webhook.WEBHOOK_PATH}", _review), web.get(f"/{READY_PATH}", _ready)])
    return app


async def _serve(hook: webhook.WebhookSettings, memo: kopf.Memo) -> None:
    material, _changed = await asyncio.to_thread(webhook.ensure, _client(), hook, None, _now())
    context = _ssl_context(material)
    app = make_app()
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, hook.bind, hook.port, ssl_context=context).start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("webhook listening on %s:%d", hook.bind, hook.port)
    memo["webhook_runner"] = runner
    memo["webhook_upkeep"] = asyncio.create_task(_upkeep(hook, material, context))


def _failure_text(exc: BaseException) -> str:
    """What went wrong, without request bodies or key material (KubeError keeps only the server's
    message; OSError and SSL errors name the address or the file)."""
    if isinstance(exc, KubeError):
        return f"API server: {exc.message}"
    return f"{type(exc).__name__}: {exc}"[:300]


async def _serve_until_up(hook: webhook.WebhookSettings, memo: kopf.Memo) -> None:
    """Start the webhook, retrying with back-off for as long as it fails.

    It runs beside the reconciler, never before it: a webhook that cannot start (its port taken,
    its key material unreadable) costs injection only (the API server admits pods uninjected,
    failurePolicy Ignore), and stacks keep converging. The failure shows in /healthz (the
    `webhook` probe), in `agentobs_webhook_serving` and `agentobs_webhook_start_failures_total`,
    and in a Warning Event on the MutatingWebhookConfiguration.
    """
    delay, reported = START_RETRY_SECONDS, ""
    while True:
        try:
            await _serve(hook, memo)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any start failure: report, retry, keep the operator going
            text = _failure_text(exc)
            WEBHOOK_STATE["status"] = f"degraded: not serving on {hook.bind}:{hook.port}: {text}"
            metrics.WEBHOOK_SERVING.set(0)
            metrics.WEBHOOK_START_FAILURES.labels(reason=type(exc).__name__).inc()
            log.error("webhook not started (retrying in %.0fs): %s", delay, text)
            if text != reported:
                reported = text
                await asyncio.to_thread(_report_start_failure, hook, text)
            await asyncio.sleep(delay)
            passing = isinstance(exc, KubeError) and exc.transient
            delay = min(delay * 2, START_RETRY_API_MAX_SECONDS if passing else START_RETRY_MAX_SECONDS)
            continue
        WEBHOOK_STATE["status"] = "serving"
        metrics.WEBHOOK_SERVING.set(1)
        return


def _report_start_failure(hook: webhook.WebhookSettings, text: str) -> None:
    involved = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                "name": hook.configuration}
    try:
        _client().post_event(involved, True, "WebhookNotServing",
                             f"the operator's webhook is not serving; pods are admitted without injection: {text}")
    except KubeError as exc:
        log.warning("event WebhookNotServing not posted: %s", exc.message)


@kopf.on.startup()
async def start_webhook(memo: kopf.Memo, **_: Any) -> None:
    WEBHOOK_STATE["status"] = "starting"
    memo["webhook_start"] = asyncio.create_task(_serve_until_up(webhook.WebhookSettings.from_env(), memo))


@kopf.on.probe(id="webhook")
def webhook_probe(**_: Any) -> str:
    return WEBHOOK_STATE["status"]


@kopf.on.cleanup()
async def stop_webhook(memo: kopf.Memo, **_: Any) -> None:
    for key in ("webhook_start", "webhook_upkeep"):
        task = memo.get(key)
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
