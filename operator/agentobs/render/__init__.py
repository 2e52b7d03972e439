"""Pure rendering: from an `Owner` (identity + validated spec) and key material to manifests.

No I/O, clock or randomness happens here: what must be generated (keys, passwords) or read from
the cluster is passed in as `Material`, so the same inputs always give the same objects and the
output can be compared with golden files.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentobs.pki import KeyPair
from agentobs.render.common import Manifest, Owner
from agentobs.render.prometheus import make_prometheus
from agentobs.render.tls import make_ca_secret

__all__ = ["Manifest", "Material", "Owner", "make_stack"]


@dataclass(frozen=True)
class Material:
    """Generated inputs to rendering, made once and kept in Secrets."""

    ca: KeyPair


def make_stack(owner: Owner, material: Material) -> list[Manifest]:
    """Every object the resource wants, in apply order (config before the workloads using it)."""
    return [make_ca_secret(owner, material.ca), *make_prometheus(owner)]
