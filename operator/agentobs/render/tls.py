"""Secrets that carry TLS material and generated credentials, and the requests for them.

Pure: the key pairs and passwords are made by `agentobs.material` (the impure side) from the
requests declared here, and passed back in to be rendered.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from agentobs.pki import KeyPair
from agentobs.render.common import Manifest, Owner, metadata

CA_COMPONENT = "ca"
CA_BUNDLE_KEY = "ca.crt"
# Generated credentials outlive the resource, like the data volumes they unlock.
RETAINED_ANNOTATION = "agentobs.io/retained-on-delete"


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def ca_secret_name(owner: Owner) -> str:
    return owner.child_name(CA_COMPONENT)


def tls_secret_name(owner: Owner, component: str) -> str:
    return owner.child_name(f"{component}-tls")


def ca_bundle_name(owner: Owner) -> str:
    return owner.child_name("ca-bundle")


def service_dns_names(owner: Owner, service: str, headless: str | None = None) -> list[str]:
    """Every name a client may use for `service` (and the pods behind a headless service)."""
    names = []
    for svc in filter(None, (service, headless)):
        base = f"{svc}.{owner.namespace}"
        names += [svc, base, f"{base}.svc", f"{base}.svc.cluster.local"]
    if headless:
        names += [f"*.{headless}.{owner.namespace}.svc", f"*.{headless}.{owner.namespace}.svc.cluster.local"]
    return names


def make_ca_secret(owner: Owner, ca: KeyPair) -> Manifest:
    """The resource's CA; `tls.key` never leaves this Secret."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(owner, CA_COMPONENT, ca_secret_name(owner)),
        "type": "kubernetes.io/tls",
        "data": {CA_BUNDLE_KEY: _b64(ca.cert_pem), "tls.crt": _b64(ca.cert_pem), "tls.key": _b64(ca.key_pem)},
    }


def make_ca_bundle(owner: Owner, ca: KeyPair, namespace: str | None = None) -> Manifest:
    """The CA certificate alone, for clients to trust (agents mount it read-only)."""
    meta = metadata(owner, CA_COMPONENT, ca_bundle_name(owner))
    if namespace and namespace != owner.namespace:
        meta["namespace"] = namespace
        del meta["ownerReferences"]  # owner references cannot cross namespaces
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
            "data": {CA_BUNDLE_KEY: ca.cert_pem.decode()}}


def make_tls_secret(owner: Owner, component: str, pair: KeyPair, ca: KeyPair) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(owner, component, tls_secret_name(owner, component)),
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": _b64(pair.cert_pem), "tls.key": _b64(pair.key_pem), CA_BUNDLE_KEY: _b64(ca.cert_pem)},
    }


def make_credentials_secret(owner: Owner, component: str, suffix: str, values: Mapping[str, str]) -> Manifest:
    """Generated credentials, kept when the resource is deleted (no owner reference)."""
    meta = metadata(owner, component, owner.child_name(suffix), annotations={RETAINED_ANNOTATION: "true"})
    del meta["ownerReferences"]
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
            "data": {k: _b64(v) for k, v in sorted(values.items())}}
