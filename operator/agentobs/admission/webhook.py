"""The webhook's runtime: its own CA and serving certificate, kept and rotated by the operator, and
the MutatingWebhookConfiguration whose `caBundle` the operator patches.

When the chart installed the configuration, only its `caBundle` is set (server-side apply under a
field manager of its own), so `helm upgrade` or a GitOps sync never fights the operator. Without a
chart (`make run`, the tests) the operator creates the whole configuration, pointing at its local
URL, and points it at itself again when it restarts on another address. The key material lives in a
Secret of the operator's namespace so every replica serves the same certificate; out of cluster it
lives in the process only.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentobs import pki
from agentobs.kube import Kube, KubeError, Manifest

log = logging.getLogger(__name__)

WEBHOOK_NAME = "pods.agentobs.io"
WEBHOOK_PATH = "mutate-pods"
CA_FIELD_MANAGER = "agentobs-operator-cabundle"
CA_LIFETIME = dt.timedelta(days=3650)
CERT_LIFETIME = dt.timedelta(days=365)
RENEW_FRACTION = 3  # renew when a third of the lifetime is left
MANAGED_BY = "agentobs-operator"  # on a configuration the operator made (no chart), which it then owns whole


@dataclass(frozen=True)
class WebhookSettings:
    port: int
    bind: str
    configuration: str
    service: str  # "<namespace>/<name>" in cluster; empty out of cluster
    operator_namespace: str
    host: str  # what the API server dials when there is no Service

    @classmethod
    def from_env(cls) -> WebhookSettings:
        return cls(
            port=int(os.environ.get("AGENTOBS_WEBHOOK_PORT", "9443")),
            bind=os.environ.get("AGENTOBS_BIND_ADDRESS", "0.0.0.0"),  # noqa: S104 (a pod's own port)
            configuration=os.environ.get("AGENTOBS_WEBHOOK_CONFIGURATION", "agentobs-webhook"),
            service=os.environ.get("AGENTOBS_WEBHOOK_SERVICE", ""),
            operator_namespace=os.environ.get("AGENTOBS_OPERATOR_NAMESPACE", ""),
            host=os.environ.get("AGENTOBS_WEBHOOK_HOST", "127.0.0.1"),
        )

    @property
    def secret_name(self) -> str:
        return f"{self.configuration}-tls"

    def dns_names(self) -> list[str]:
        if not self.service:
            return ["localhost"]
        namespace, name = self.service.split("/", 1)
        return [name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]


@dataclass(frozen=True)
class ServingMaterial:
    ca: pki.KeyPair
    cert: pki.KeyPair


def _due(pair: pki.KeyPair, now: dt.datetime) -> bool:
    return pki.needs_renewal(pair, now, (pair.not_after - pair.not_before) / RENEW_FRACTION)


def renew(current: ServingMaterial | None, settings: WebhookSettings, now: dt.datetime) -> ServingMaterial:
    """Keep what is still good; make a new CA or certificate only when absent or due."""
    ca = current.ca if current and not _due(current.ca, now) else pki.make_ca("agentobs webhook", now, CA_LIFETIME)
    if current and current.ca == ca and not _due(current.cert, now):
        return current
    ips = ["127.0.0.1"] if not settings.service else []
    cert = pki.issue(ca, settings.dns_names()[0], settings.dns_names(), now, CERT_LIFETIME, ip_addresses=ips,
                     client=False)
    return ServingMaterial(ca, cert)


def load_stored(kube: Kube, settings: WebhookSettings) -> ServingMaterial | None:
    if not settings.operator_namespace:
        return None
    secret = kube.get("v1", "Secret", settings.operator_namespace, settings.secret_name)
    data = (secret or {}).get("data") or {}

    def get(key: str) -> bytes | None:
        return base64.b64decode(data[key]) if key in data else None

    ca, cert = pki.load(get("ca.crt"), get("ca.key")), pki.load(get("tls.crt"), get("tls.key"))
    return ServingMaterial(ca, cert) if ca and cert and pki.signed_by(cert, ca) else None


def store(kube: Kube, settings: WebhookSettings, material: ServingMaterial, *, first: bool) -> ServingMaterial:
    """Keep the key material in a Secret owned by the webhook configuration, so it goes with it.

    Every replica serves the webhook behind one Service, so all must serve the same pair: when
    none is stored yet (`first`), the Secret is created, not applied, and a replica that loses
    that race adopts the winner's material instead of its own. Returns the material to serve."""
    if not settings.operator_namespace:
        return material
    configuration = kube.get("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None,
                             settings.configuration)
    owners = [{"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
               "name": settings.configuration, "uid": configuration["metadata"]["uid"]}] if configuration else []

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    secret = {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": settings.secret_name, "namespace": settings.operator_namespace,
                     "labels": {"app.kubernetes.io/name": "agentobs-operator",
                                "app.kubernetes.io/component": "webhook"},
                     **({"ownerReferences": owners} if owners else {})},
        "data": {"ca.crt": b64(material.ca.cert_pem), "ca.key": b64(material.ca.key_pem),
                 "tls.crt": b64(material.cert.cert_pem), "tls.key": b64(material.cert.key_pem)},
    }
    if not first:
        kube.apply(secret)
        return material
    try:
        kube.create(secret)
    except KubeError as exc:
        if exc.status != 409:
            raise
        stored = load_stored(kube, settings)
        if stored is not None:
            log.info("serving the webhook certificate another replica stored first")
            return stored
        kube.apply(secret)
    return material


def load_serving_pair(context: ssl.SSLContext, material: ServingMaterial) -> None:
    """Load the serving certificate (with its CA) and key into `context`.

    `ssl` reads a key only from a file, so the pair is written to a private directory (mode 0700)
    for the call and removed with it: no copy of the key outlives the load, not even after the
    process is killed between two rotations.
    """
    with tempfile.TemporaryDirectory(prefix="agentobs-webhook-") as directory:
        cert, key = Path(directory) / "tls.crt", Path(directory) / "tls.key"
        cert.write_bytes(material.cert.cert_pem + material.ca.cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(material.cert.key_pem)
        context.load_cert_chain(cert, key)


# What the live configuration leaves out by name, as last read (publish_ca reads it every
# CA_CHECK_SECONDS): a chart's `webhook.excludeNamespaces` is known to the operator only this way.
_configured_exclusions: frozenset[str] = frozenset()


def excluded_namespaces(operator_namespace: str) -> list[str]:
    """The namespaces whose pods are never sent to the webhook: kube-system, and the operator's
    own, whose pods (the operator's) must start without it; and any other the live configuration
    leaves out (a chart's `webhook.excludeNamespaces`)."""
    return sorted(({"kube-system", operator_namespace} | _configured_exclusions) - {""})


def left_out(configuration: Manifest) -> frozenset[str]:
    """The namespaces every webhook of `configuration` leaves out by name (its namespaceSelector's
    `kubernetes.io/metadata.name NotIn` terms); a namespace one webhook still serves is not."""
    sets = []
    for hook in configuration.get("webhooks") or []:
        names: set[str] = set()
        for term in ((hook.get("namespaceSelector") or {}).get("matchExpressions") or []):
            if term.get("key") == "kubernetes.io/metadata.name" and term.get("operator") == "NotIn":
                names.update(str(v) for v in term.get("values") or [])
        sets.append(names)
    return frozenset(set.intersection(*sets)) if sets else frozenset()


def _note_exclusions(configuration: Manifest) -> None:
    global _configured_exclusions
    _configured_exclusions = left_out(configuration)


def make_configuration(settings: WebhookSettings, ca_pem: bytes) -> Manifest:
    """The whole configuration, for when no chart installed one (the operator runs out of cluster)."""
    excluded = excluded_namespaces(settings.operator_namespace)
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": settings.configuration,
                     "labels": {"app.kubernetes.io/name": "agentobs-operator",
                                "app.kubernetes.io/component": "webhook",
                                "app.kubernetes.io/managed-by": MANAGED_BY}},
        "webhooks": [{
            "name": WEBHOOK_NAME,
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": f"https://{settings.host}:{settings.port}/{WEBHOOK_PATH}",
                             "caBundle": base64.b64encode(ca_pem).decode()},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["pods"], "scope": "Namespaced"}],
            # A broken or absent operator must never block agent pods.
            "failurePolicy": "Ignore",
            "sideEffects": "None",
            "timeoutSeconds": 5,
            "reinvocationPolicy": "IfNeeded",
            "namespaceSelector": {"matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": excluded}]},
            "objectSelector": {"matchExpressions": [
                {"key": "app.kubernetes.io/name", "operator": "NotIn", "values": ["agentobs-operator"]}]},
        }],
    }


def publish_ca(kube: Kube, settings: WebhookSettings, ca_pem: bytes) -> None:
    """Point the configuration at this webhook, writing nothing when it already does.

    A configuration the chart installed is the chart's: only its `caBundle` is ours. One the
    operator made (no chart, out of cluster) follows this process's URL as well as its CA, so an
    operator restarted on another port is not left with every call failing open against the old
    one."""
    api, kind = "admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"
    existing = kube.get(api, kind, None, settings.configuration)
    bundle = base64.b64encode(ca_pem).decode()
    if existing is None:
        made = make_configuration(settings, ca_pem)
        kube.apply(made)
        _note_exclusions(made)
        log.info("created MutatingWebhookConfiguration %s", settings.configuration)
        return
    _note_exclusions(existing)
    hooks = existing.get("webhooks") or []
    configs = [w.get("clientConfig") or {} for w in hooks]
    if (existing["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == MANAGED_BY:
        desired = make_configuration(settings, ca_pem)
        url = desired["webhooks"][0]["clientConfig"]["url"]
        if [w.get("name") for w in hooks] == [WEBHOOK_NAME] and configs[0] == {"url": url, "caBundle": bundle}:
            return
        kube.apply(desired)
        log.info("MutatingWebhookConfiguration %s now calls %s", settings.configuration, url)
        return
    if configs and all(c.get("caBundle") == bundle for c in configs):
        return
    names = [w["name"] for w in hooks] or [WEBHOOK_NAME]
    patch: dict[str, Any] = {
        "apiVersion": api, "kind": kind, "metadata": {"name": settings.configuration},
        "webhooks": [{"name": n, "clientConfig": {"caBundle": bundle}} for n in names],
    }
    kube.apply(patch, field_manager=CA_FIELD_MANAGER)


def ensure(kube: Kube, settings: WebhookSettings, current: ServingMaterial | None,
           now: dt.datetime) -> tuple[ServingMaterial, bool]:
    """The material to serve with, renewed and stored if needed, and published. (material, changed)"""
    serving = current
    if current is None:
        try:
            current = load_stored(kube, settings)
        except KubeError as exc:
            log.warning("cannot read the stored webhook certificate: %s", exc.message)
    else:
        # Another replica may have rotated the pair: serve what is stored when it is still good.
        try:
            stored = load_stored(kube, settings)
        except KubeError:
            stored = None
        if stored is not None and stored != current and not _due(stored.cert, now):
            current = stored
    material = renew(current, settings, now)
    if material != current:
        material = store(kube, settings, material, first=current is None)
        log.info("webhook certificate valid until %s", material.cert.not_after.isoformat())
    publish_ca(kube, settings, material.ca.cert_pem)
    return material, material != serving
