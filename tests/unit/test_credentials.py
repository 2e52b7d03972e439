"""Generated credentials: what is stored is kept, what is missing is made, and a hash's cost fits
its password (the lowest for the operator's own random ones, the usual for one stored by a person)."""

from __future__ import annotations

import base64
from typing import Any

import bcrypt

from agentobs.api.spec import AgentObservabilitySpec
from agentobs.render import CredentialRequest, Owner
from agentobs.render.tls import basic_auth_recipe
from agentobs.stack.material import GENERATED_COST, STORED_COST, ensure_credentials

OWNER = Owner("r", "n", "uid", AgentObservabilitySpec())
REQUEST = CredentialRequest("prometheus", "prometheus-web-auth", basic_auth_recipe("admin"))


class StoredSecret:
    """The one read `ensure_credentials` makes: the Secret, as the API server would return it."""

    def __init__(self, data: dict[str, str] | None) -> None:
        self.data = data
        self.reads: list[tuple[str, str, str | None, str]] = []

    def get(self, api: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        self.reads.append((api, kind, namespace, name))
        if self.data is None:
            return None
        return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in self.data.items()}}


def cost(hashed: str) -> int:
    return int(hashed.split("$")[2])


def test_a_generated_password_is_hashed_at_the_lowest_cost_and_checks() -> None:
    kube = StoredSecret(None)
    values, created = ensure_credentials(kube, OWNER, REQUEST)  # type: ignore[arg-type]
    assert created and kube.reads == [("v1", "Secret", "n", "r-prometheus-web-auth")]
    assert values["username"] == "admin" and len(values["password"]) >= 32
    assert cost(values["password.bcrypt"]) == GENERATED_COST < STORED_COST
    assert bcrypt.checkpw(values["password"].encode(), values["password.bcrypt"].encode())


def test_a_stored_password_without_its_hash_gets_the_usual_cost() -> None:
    values, created = ensure_credentials(StoredSecret({"username": "admin", "password": "hunter2"}),  # type: ignore[arg-type]
                                         OWNER, REQUEST)
    assert created and values["password"] == "hunter2"
    assert cost(values["password.bcrypt"]) == STORED_COST
    assert bcrypt.checkpw(b"hunter2", values["password.bcrypt"].encode())


def test_stored_values_are_kept_whole() -> None:
    stored = {"username": "admin", "password": "p" * 32, "password.bcrypt": "$2b$10$" + "x" * 53}
    values, created = ensure_credentials(StoredSecret(stored), OWNER, REQUEST)  # type: ignore[arg-type]
    assert not created and values == stored
