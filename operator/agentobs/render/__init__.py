"""Pure rendering: from an `Owner` (identity + validated spec) and key material to manifests.

No I/O, clock or randomness happens here: what must be generated (keys, passwords) or read from
the cluster is declared by `certificate_requests` and `credential_requests`, gathered by
`agentobs.material`, and passed back in as `Material`, so the same inputs always give the same
objects and the output can be compared with golden files.
"""

from __future__ import annotations

from agentobs.render import prometheus
from agentobs.render.common import CredentialRequest, Manifest, Material, Owner
from agentobs.render.tls import (
    make_ca_bundle,
    make_ca_secret,
    make_credentials_secret,
    make_tls_secret,
    service_dns_names,
)

__all__ = ["CredentialRequest", "Manifest", "Material", "Owner", "certificate_requests", "credential_requests",
           "make_stack"]


def certificate_requests(owner: Owner) -> dict[str, list[str]]:
    """Component -> the DNS names its serving certificate must carry."""
    prom = prometheus.COMPONENT
    return {
        prom: [*service_dns_names(owner, owner.child_name(prom), headless=owner.child_name(f"{prom}-headless")),
               "localhost"],
    }


def credential_requests(owner: Owner) -> list[CredentialRequest]:
    return [
        CredentialRequest(prometheus.COMPONENT, prometheus.WEB_AUTH_SUFFIX,
                          {"username": "literal:agentobs", "password": "random", "password.bcrypt": "bcrypt:password"}),
    ]


def make_stack(owner: Owner, material: Material) -> list[Manifest]:
    """Every object the resource wants, in apply order (config before the workloads using it)."""
    out = [make_ca_secret(owner, material.ca), make_ca_bundle(owner, material.ca)]
    out += [make_tls_secret(owner, component, pair, material.ca) for component, pair in sorted(material.certs.items())]
    requests = {r.suffix: r for r in credential_requests(owner)}
    out += [make_credentials_secret(owner, requests[suffix].component, suffix, values)
            for suffix, values in sorted(material.credentials.items()) if suffix in requests]
    out += prometheus.make_prometheus(owner, material)
    return out
