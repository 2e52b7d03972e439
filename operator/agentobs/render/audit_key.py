"""The audit key of a resource: one generated Secret the agents' audit trails are keyed with.

The webhook mounts it read-only into every injected pod (AGENTOBS_AUDIT_KEY_FILE), so each
record's hash is an HMAC that whoever can edit the trail's files cannot recompute. It is made
once by `agentobs.stack.material` with the OS CSPRNG, never overwritten (rotating it would make
existing trails unverifiable), and kept when the resource is deleted, like the other generated
credentials: trails outlive the stack, and so must the key that verifies them.
"""

from __future__ import annotations

from agentobs.render.common import CredentialRequest, Manifest, Material, Owner

COMPONENT = "audit"
SUFFIX = "audit-key"
KEY = "key"


def secret_name(owner: Owner) -> str:
    return owner.child_name(SUFFIX)


def certificates(owner: Owner) -> dict[str, list[str]]:
    return {}


def credentials(owner: Owner) -> list[CredentialRequest]:
    if not owner.spec.instrumentation.enabled:
        return []
    return [CredentialRequest(COMPONENT, SUFFIX, {KEY: "random"})]


def render(owner: Owner, material: Material) -> list[Manifest]:
    return []  # the Secret itself is rendered with the other generated credentials


def endpoints(owner: Owner) -> dict[str, str]:
    return {}
