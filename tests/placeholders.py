"""Placeholder key material for rendering in tests: the render layer never parses it."""

from __future__ import annotations

from agentobs.pki import KeyPair
from agentobs.render import Material, Owner, certificate_requests, credential_requests


def placeholder_material(owner: Owner) -> Material:
    """Rendering does not parse key material, so placeholders keep golden files free of keys.

    One placeholder per requested certificate and credential, so a new component needs no edit here.
    """
    def pair(name: str) -> KeyPair:
        return KeyPair(cert_pem=f"-----{name.upper()} CERT-----\n".encode(),
                       key_pem=f"-----{name.upper()} KEY-----\n".encode())

    def value(recipe: str) -> str:
        kind, _, arg = recipe.partition(":")
        return arg if kind == "literal" else {"random": "PASSWORD", "bcrypt": "HASH"}[kind]

    return Material(
        ca=pair("ca"),
        certs={component: pair(component) for component in certificate_requests(owner)},
        credentials={r.suffix: {k: value(v) for k, v in r.recipe.items()} for r in credential_requests(owner)},
    )
