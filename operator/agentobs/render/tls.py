"""Secrets that carry TLS material and generated credentials, and the requests for them.

Two ways to serve TLS: by default the operator's own CA signs each component's certificate and
the Secrets are rendered here; with `spec.tls.issuerRef` a cert-manager `Certificate` is rendered
per component instead, and cert-manager writes the Secret of the same name.

Pure: the key pairs and passwords are made (or, with cert-manager, read) by `agentobs.stack.material`
(the impure side) from the requests declared here, and passed back in to be rendered.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from agentobs.api.formats import format_go_duration
from agentobs.api.spec import IssuerRef
from agentobs.pki import KeyPair
from agentobs.render.common import Manifest, Material, Owner, content_hash, labels, metadata, moved_to

CA_COMPONENT = "ca"
CA_BUNDLE_KEY = "ca.crt"
# Generated credentials outlive the resource, like the data volumes they unlock.
RETAINED_ANNOTATION = "agentobs.io/retained-on-delete"
CERT_MANAGER_API = "cert-manager.io/v1"
CERT_MANAGER_GROUP = "cert-manager.io"
# Pod-template value while a component's certificate is not issued yet (cert-manager mode): the
# workload exists, its pods wait for the Secret, and issuance changes the value and rolls them.
PENDING_CERT_HASH = "pending"


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
        moved_to(meta, namespace)
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


def certificate_hash(material: Material, component: str, *also: str) -> str:
    """The cert-hash pod annotation of `component`: a digest of its certificate (and of `also`)."""
    pair = material.certs.get(component)
    return content_hash(pair.cert_pem.decode(), *also) if pair is not None else PENDING_CERT_HASH


def issuer_group(issuer: IssuerRef) -> str:
    return issuer.group or CERT_MANAGER_GROUP


def make_certificate(owner: Owner, component: str, dns_names: list[str]) -> Manifest:
    """A cert-manager Certificate that fills the Secret `make_tls_secret` would otherwise render.

    Same Secret name, names, lifetime and key type as the operator's own certificates, so the
    workloads mount it unchanged. The Secret carries the owner labels so it is found, and reconcile
    counts it as wanted so pruning leaves it while the resource exists.
    """
    tls = owner.spec.tls
    issuer = tls.issuer_ref
    if issuer is None:
        raise ValueError("a Certificate is rendered only with spec.tls.issuerRef")
    name = tls_secret_name(owner, component)
    return {
        "apiVersion": CERT_MANAGER_API,
        "kind": "Certificate",
        "metadata": metadata(owner, component, name),
        "spec": {
            "secretName": name,
            "dnsNames": list(dns_names),
            "duration": tls.certificate_lifetime,
            "renewBefore": format_go_duration(tls.renewal_window),
            "issuerRef": {"name": issuer.name, "kind": issuer.kind, "group": issuer_group(issuer)},
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            # Both ends of mutual TLS (Elasticsearch transport, Alertmanager gossip) use one certificate.
            "usages": ["digital signature", "server auth", "client auth"],
            "secretTemplate": {"labels": labels(owner, component)},
        },
    }


def make_credentials_secret(owner: Owner, component: str, suffix: str, values: Mapping[str, str]) -> Manifest:
    """Generated credentials, kept when the resource is deleted (no owner reference)."""
    meta = metadata(owner, component, owner.child_name(suffix), annotations={RETAINED_ANNOTATION: "true"})
    del meta["ownerReferences"]
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
            "data": {k: _b64(v) for k, v in sorted(values.items())}}


def basic_auth_recipe(user: str) -> dict[str, str]:
    """Credentials for `user`: a generated password, and its bcrypt hash for the server that checks it."""
    return {"username": f"literal:{user}", "password": "random", "password.bcrypt": "bcrypt:password"}


def web_server_config(tls_dir: str, user: str, password_bcrypt: str) -> dict[str, Any]:
    """The web configuration Prometheus and Alertmanager share: TLS with the mounted pair, basic auth."""
    return {
        "tls_server_config": {"cert_file": f"{tls_dir}/tls.crt", "key_file": f"{tls_dir}/tls.key",
                              "min_version": "TLS12"},
        "basic_auth_users": {user: password_bcrypt},
    }
