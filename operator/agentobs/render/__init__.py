"""Pure rendering: from an `Owner` (identity + validated spec) and key material to manifests.

No I/O, clock or randomness happens here: what must be generated (keys, passwords) or read from
the cluster is declared by each component's `certificates` and `credentials`, gathered by
`agentobs.stack.material`, and passed back in as `Material`, so the same inputs always give the same
objects and the output can be compared with golden files.

Each module in `COMPONENTS` follows the `Component` protocol; adding a component is adding its
module to that tuple.
"""

from __future__ import annotations

from typing import Protocol

from agentobs.render import (
    alertmanager,
    audit_key,
    elasticsearch,
    fluentd,
    grafana,
    jaeger,
    prometheus,
    retention,
)
from agentobs.render.common import CredentialRequest, Manifest, Material, Owner
from agentobs.render.tls import (
    make_ca_bundle,
    make_ca_secret,
    make_certificate,
    make_credentials_secret,
    make_tls_secret,
)

__all__ = ["COMPONENTS", "CredentialRequest", "Manifest", "Material", "Owner", "certificate_requests",
           "credential_requests", "endpoints", "make_stack"]


class Component(Protocol):
    """What a component module provides. All functions are pure."""

    def certificates(self, owner: Owner) -> dict[str, list[str]]:
        """Component name -> DNS names of its serving certificate (empty when not provisioned)."""
        ...

    def credentials(self, owner: Owner) -> list[CredentialRequest]:
        """Generated credentials the component needs (empty when not provisioned)."""
        ...

    def render(self, owner: Owner, material: Material) -> list[Manifest]:
        """The component's objects in apply order (empty when not provisioned)."""
        ...

    def endpoints(self, owner: Owner) -> dict[str, str]:
        """Status endpoint field (e.g. `prometheus`, `otlpGrpc`) -> URL."""
        ...


COMPONENTS: tuple[Component, ...] = (prometheus, alertmanager, elasticsearch, retention, jaeger, fluentd, grafana,
                                     audit_key)


def certificate_requests(owner: Owner) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for component in COMPONENTS:
        out.update(component.certificates(owner))
    return out


def credential_requests(owner: Owner) -> list[CredentialRequest]:
    return [request for component in COMPONENTS for request in component.credentials(owner)]


def endpoints(owner: Owner) -> dict[str, str]:
    out: dict[str, str] = {}
    for component in COMPONENTS:
        out.update(component.endpoints(owner))
    return out


def make_stack(owner: Owner, material: Material) -> list[Manifest]:
    """Every object the resource wants, in apply order (material before the workloads using it)."""
    if owner.spec.tls.issuer_ref is None:
        out = [make_ca_secret(owner, material.ca), make_ca_bundle(owner, material.ca)]
        out += [make_tls_secret(owner, component, pair, material.ca)
                for component, pair in sorted(material.certs.items())]
    else:
        # cert-manager writes the serving Secrets and holds the CA key; `material.ca` carries only the
        # CA certificate(s) read from those Secrets, for the bundle clients trust.
        out = [make_ca_bundle(owner, material.ca)]
        out += [make_certificate(owner, component, dns_names)
                for component, dns_names in sorted(certificate_requests(owner).items())]
    requests = {r.suffix: r for r in credential_requests(owner)}
    out += [make_credentials_secret(owner, requests[suffix].component, suffix, values)
            for suffix, values in sorted(material.credentials.items()) if suffix in requests]
    for component in COMPONENTS:
        out += component.render(owner, material)
    return out
