"""Generated inputs to rendering: the CA, serving certificates and credentials.

The impure side of TLS and secrets. What is needed is declared by `agentobs.render`
(`certificate_requests`, `credential_requests`); this module reads what is stored in the cluster,
keeps whatever is still good, and makes only what is missing or due: a certificate past its
renewal point, not signed by the current CA or lacking a requested name is reissued; a generated
credential is made once with the OS CSPRNG and never replaced, even when the spec changes.
With `spec.tls.issuerRef` cert-manager issues the certificates instead: nothing is made here, the
Secrets cert-manager wrote are read (for the cert-hash that rolls workloads on renewal, and for the
issuer's CA that clients trust), and the ones still missing are reported.
Nothing here logs a secret value.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

import bcrypt
from cryptography import x509

from agentobs import metrics, pki
from agentobs.api.spec import IssuerRef, parse_go_duration
from agentobs.kube import Kube, Manifest
from agentobs.render import CredentialRequest, Material, Owner, certificate_requests, credential_requests
from agentobs.render.tls import (
    CA_BUNDLE_KEY,
    CERT_MANAGER_GROUP,
    ca_bundle_name,
    ca_secret_name,
    issuer_group,
    tls_secret_name,
)

log = logging.getLogger(__name__)

CA_LIFETIME = dt.timedelta(days=3650)
CA_RENEW_BEFORE = CA_LIFETIME / 3
# What cert-manager records on a Secret it issued: which issuer signed what it holds.
ISSUER_NAME_ANNOTATION = "cert-manager.io/issuer-name"
ISSUER_KIND_ANNOTATION = "cert-manager.io/issuer-kind"
ISSUER_GROUP_ANNOTATION = "cert-manager.io/issuer-group"


@dataclass
class Gathered:
    material: Material
    issued: list[str] = field(default_factory=list)  # what was made this pass, for events
    # With cert-manager: whether every Secret is issued, and why not. None with the operator's CA,
    # whose readiness is its CA Secret being applied.
    tls_ready: bool | None = None
    tls_message: str = ""


def _decode(secret: Manifest | None, key: str) -> bytes | None:
    value = ((secret or {}).get("data") or {}).get(key)
    return base64.b64decode(value) if value else None


def ensure_ca(kube: Kube, owner: Owner, now: dt.datetime) -> tuple[pki.KeyPair, bool]:
    """The stored CA, or a new one when absent, unusable or due for renewal. Returns (ca, created)."""
    secret = kube.get("v1", "Secret", owner.namespace, ca_secret_name(owner))
    ca = pki.load(_decode(secret, "tls.crt"), _decode(secret, "tls.key"))
    if ca is not None and not pki.needs_renewal(ca, now, CA_RENEW_BEFORE):
        return ca, False
    return pki.make_ca(f"agentobs {owner.namespace}/{owner.name}", now, CA_LIFETIME), True


def _covers(pair: pki.KeyPair, dns_names: list[str]) -> bool:
    try:
        sans = pair.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return set(dns_names) <= set(sans.get_values_for_type(x509.DNSName))


def ensure_certificate(kube: Kube, owner: Owner, component: str, dns_names: list[str], ca: pki.KeyPair,
                       now: dt.datetime) -> tuple[pki.KeyPair, bool]:
    tls = owner.spec.tls
    lifetime, renew_before = parse_go_duration(tls.certificate_lifetime), tls.renewal_window
    secret = kube.get("v1", "Secret", owner.namespace, tls_secret_name(owner, component))
    pair = pki.load(_decode(secret, "tls.crt"), _decode(secret, "tls.key"))
    if (pair is not None and pki.signed_by(pair, ca) and _covers(pair, dns_names)
            and not pki.needs_renewal(pair, now, renew_before)):
        return pair, False
    return pki.issue(ca, f"{owner.child_name(component)}.{owner.namespace}.svc", dns_names, now, lifetime), True


# bcrypt's cost slows the guessing of a password from its hash. A password made here is 192 random
# bits, beyond any guessing at the lowest cost, and a high one would only cost every stack's first
# pass (two hashes at cost 10 were most of its CPU) and the servers that check each request. A password
# stored by someone else may be a weak one, and gets the usual cost.
GENERATED_COST = 4
STORED_COST = 10


def _make_value(recipe: str, values: Mapping[str, str], generated: set[str]) -> str:
    kind, _, arg = recipe.partition(":")
    if kind == "literal":
        return arg
    if kind == "random":
        return secrets.token_urlsafe(24)
    if kind == "bcrypt":
        cost = GENERATED_COST if arg in generated else STORED_COST
        return bcrypt.hashpw(values[arg].encode(), bcrypt.gensalt(rounds=cost)).decode()
    raise ValueError(f"unknown credential recipe {kind!r}")


def ensure_credentials(kube: Kube, owner: Owner, request: CredentialRequest) -> tuple[dict[str, str], bool]:
    """Stored values win; only missing keys are generated (in recipe order, so a hash follows its input)."""
    secret = kube.get("v1", "Secret", owner.namespace, owner.child_name(request.suffix))
    values: dict[str, str] = {}
    generated: set[str] = set()  # random values made in this call, not read back
    created = False
    for key, recipe in request.recipe.items():
        stored = _decode(secret, key)
        if stored is not None:
            values[key] = stored.decode()
        else:
            values[key] = _make_value(recipe, values, generated)
            created = True
            if recipe == "random":
                generated.add(key)
    return values, created


def _issued_by(secret: Manifest, issuer: IssuerRef) -> bool:
    """The Secret's cert-manager annotations name `issuer` (not the issuer before a switch, and not
    none at all: a Secret the operator's own CA filled before the switch to cert-manager)."""
    annotations: dict[str, str] = (secret.get("metadata") or {}).get("annotations") or {}
    return (annotations.get(ISSUER_NAME_ANNOTATION) == issuer.name
            and (annotations.get(ISSUER_KIND_ANNOTATION) or "Issuer") == issuer.kind
            and (annotations.get(ISSUER_GROUP_ANNOTATION) or CERT_MANAGER_GROUP) == issuer_group(issuer))


def read_cert_manager_secrets(kube: Kube, owner: Owner, issuer: IssuerRef) -> tuple[Material, bool, str]:
    """What cert-manager has issued so far: (material, all issued, why not).

    `material.certs` holds every Secret present, even one not yet reissued by the spec's issuer,
    because it is what the pods mount; `material.ca` holds, as its certificate only, every distinct
    `ca.crt` found (several while the issuer's CA rotates), and no key: cert-manager keeps that.
    """
    certs: dict[str, pki.KeyPair] = {}
    cas: set[bytes] = set()
    waiting: list[str] = []
    without_ca: list[str] = []
    for component, dns_names in sorted(certificate_requests(owner).items()):
        name = tls_secret_name(owner, component)
        secret = kube.get("v1", "Secret", owner.namespace, name)
        pair = pki.load(_decode(secret, "tls.crt"), _decode(secret, "tls.key"))
        if secret is None or pair is None:
            waiting.append(name)
            continue
        certs[component] = pair
        metrics.CERTIFICATE_EXPIRY.labels(namespace=owner.namespace, resource=owner.name,
                                          component=component).set(pair.not_after.timestamp())
        ca = _decode(secret, CA_BUNDLE_KEY)
        if ca:
            cas.add(ca if ca.endswith(b"\n") else ca + b"\n")
        if not _issued_by(secret, issuer) or not _covers(pair, dns_names):
            waiting.append(name)
        elif not ca:
            without_ca.append(name)
    problems: list[str] = []
    if waiting:
        problems.append(f"waiting for cert-manager ({issuer.kind} {issuer.name}) to issue Secret(s) "
                        + ", ".join(waiting))
    if without_ca:
        problems.append(f"Secret(s) {', '.join(without_ca)} carry no {CA_BUNDLE_KEY}, so clients trusting "
                        f"{ca_bundle_name(owner)} cannot verify them")
    bundle = pki.KeyPair(cert_pem=b"".join(sorted(cas)), key_pem=b"")
    return Material(ca=bundle, certs=certs), not problems, "; ".join(problems)


def gather(kube: Kube, owner: Owner, now: dt.datetime) -> Gathered:
    issuer = owner.spec.tls.issuer_ref
    if issuer is not None:
        tls, tls_ready, tls_message = read_cert_manager_secrets(kube, owner, issuer)
        issued: list[str] = []
    else:
        tls, issued = _ensure_operator_certificates(kube, owner, now)
        tls_ready, tls_message = None, ""
    credentials: dict[str, dict[str, str]] = {}
    for request in credential_requests(owner):
        credentials[request.suffix], created = ensure_credentials(kube, owner, request)
        if created:
            issued.append(f"{request.suffix} credentials")
    if issued:
        log.debug("%s/%s: issued %s", owner.namespace, owner.name, ", ".join(issued))  # the pass's line says it
    return Gathered(Material(ca=tls.ca, certs=tls.certs, credentials=credentials), issued, tls_ready, tls_message)


def _ensure_operator_certificates(kube: Kube, owner: Owner, now: dt.datetime) -> tuple[Material, list[str]]:
    """The operator's CA and every serving certificate it signs, made where missing or due."""
    ca, ca_created = ensure_ca(kube, owner, now)
    issued = ["CA"] if ca_created else []
    certs: dict[str, pki.KeyPair] = {}
    for component, dns_names in certificate_requests(owner).items():
        certs[component], created = ensure_certificate(kube, owner, component, dns_names, ca, now)
        metrics.CERTIFICATE_EXPIRY.labels(namespace=owner.namespace, resource=owner.name,
                                          component=component).set(certs[component].not_after.timestamp())
        if created:
            issued.append(f"{component} certificate")
    return Material(ca=ca, certs=certs), issued
