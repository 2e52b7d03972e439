"""Secrets that carry TLS material. Pure: the key pairs are made by `agentobs.pki` and passed in."""

from __future__ import annotations

import base64

from agentobs.pki import KeyPair
from agentobs.render.common import Manifest, Owner, metadata

CA_COMPONENT = "ca"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def ca_secret_name(owner: Owner) -> str:
    return owner.child_name(CA_COMPONENT)


def make_ca_secret(owner: Owner, ca: KeyPair) -> Manifest:
    """The resource's CA; `ca.crt` is what clients trust, `tls.key` never leaves this Secret."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(owner, CA_COMPONENT, ca_secret_name(owner)),
        "type": "kubernetes.io/tls",
        "data": {"ca.crt": _b64(ca.cert_pem), "tls.crt": _b64(ca.cert_pem), "tls.key": _b64(ca.key_pem)},
    }
