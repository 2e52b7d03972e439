"""Generated inputs to rendering: the CA, serving certificates and credentials.

The impure side of TLS and secrets. What is needed is declared by `agentobs.render`
(`certificate_requests`, `credential_requests`); this module reads what is stored in the cluster,
keeps whatever is still good, and makes only what is missing or due: a certificate past its
renewal point, not signed by the current CA or lacking a requested name is reissued; a generated
credential is made once with the OS CSPRNG and never replaced, even when the spec changes.
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
from agentobs.api.spec import parse_go_duration
from agentobs.kube import Kube, Manifest
from agentobs.render import CredentialRequest, Material, Owner, certificate_requests, credential_requests
from agentobs.render.tls import ca_secret_name, tls_secret_name

log = logging.getLogger(__name__)

CA_LIFETIME = dt.timedelta(days=3650)
CA_RENEW_BEFORE = CA_LIFETIME / 3


@dataclass
class Gathered:
    material: Material
    issued: list[str] = field(default_factory=list)  # what was made this pass, for events


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
    lifetime, renew_before = parse_go_duration(tls.certificate_lifetime), parse_go_duration(tls.renew_before)
    secret = kube.get("v1", "Secret", owner.namespace, tls_secret_name(owner, component))
    pair = pki.load(_decode(secret, "tls.crt"), _decode(secret, "tls.key"))
    if (pair is not None and pki.signed_by(pair, ca) and _covers(pair, dns_names)
            and not pki.needs_renewal(pair, now, renew_before)):
        return pair, False
    return pki.issue(ca, f"{owner.child_name(component)}.{owner.namespace}.svc", dns_names, now, lifetime), True


def _make_value(recipe: str, values: Mapping[str, str]) -> str:
    kind, _, arg = recipe.partition(":")
    if kind == "literal":
        return arg
    if kind == "random":
        return secrets.token_urlsafe(24)
    if kind == "bcrypt":
        return bcrypt.hashpw(values[arg].encode(), bcrypt.gensalt(rounds=10)).decode()
    raise ValueError(f"unknown credential recipe {kind!r}")


def ensure_credentials(kube: Kube, owner: Owner, request: CredentialRequest) -> tuple[dict[str, str], bool]:
    """Stored values win; only missing keys are generated (in recipe order, so a hash follows its input)."""
    secret = kube.get("v1", "Secret", owner.namespace, owner.child_name(request.suffix))
    values: dict[str, str] = {}
    created = False
    for key, recipe in request.recipe.items():
        stored = _decode(secret, key)
        if stored is not None:
            values[key] = stored.decode()
        else:
            values[key] = _make_value(recipe, values)
            created = True
    return values, created


def gather(kube: Kube, owner: Owner, now: dt.datetime) -> Gathered:
    ca, ca_created = ensure_ca(kube, owner, now)
    issued = ["CA"] if ca_created else []
    certs: dict[str, pki.KeyPair] = {}
    for component, dns_names in certificate_requests(owner).items():
        certs[component], created = ensure_certificate(kube, owner, component, dns_names, ca, now)
        metrics.CERTIFICATE_EXPIRY.labels(namespace=owner.namespace, resource=owner.name,
                                          component=component).set(certs[component].not_after.timestamp())
        if created:
            issued.append(f"{component} certificate")
    credentials: dict[str, dict[str, str]] = {}
    for request in credential_requests(owner):
        credentials[request.suffix], created = ensure_credentials(kube, owner, request)
        if created:
            issued.append(f"{request.suffix} credentials")
    if issued:
        log.info("%s/%s: issued %s", owner.namespace, owner.name, ", ".join(issued))
    return Gathered(Material(ca=ca, certs=certs, credentials=credentials), issued)
