"""The audit key of a resource: one generated Secret the agents' audit trails are keyed with.

The webhook mounts it read-only into every injected pod (AGENTOBS_AUDIT_KEY_FILE), so each
record's hash is an HMAC that whoever can edit the trail's files cannot recompute. It is made
once by `agentobs.stack.material` with the OS CSPRNG and never overwritten: a value the user
stores wins, so rotating it is the user's step (the old key moves to `previous-key`). It is kept
when the resource is deleted, like the other generated credentials: trails outlive the stack, and
so must the keys that verify them.
"""

from __future__ import annotations

from agentobs.render.common import CredentialRequest, Manifest, Material, Owner

COMPONENT = "audit"
SUFFIX = "audit-key"
KEY = "key"
# Not generated: the user moves `key` here to rotate it (docs/operations.md, "Rotating the audit
# key"); the writer then hands the trail over from this key to the new `key`.
PREVIOUS_KEY = "previous-key"


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
