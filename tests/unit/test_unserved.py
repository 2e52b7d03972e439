"""Narrowing the served namespaces (operator.watchNamespaces) left the stacks outside them with a
frozen status and no word anywhere; the operator now names them in its log when it starts."""
from __future__ import annotations

import logging
from typing import Any

import pytest

from agentobs.kube import KubeError
from agentobs.stack.unserved import report, unserved


class ListingKube:
    def __init__(self, keys: list[str], status: int = 0) -> None:
        self.keys, self.status = keys, status

    def list(self, api_version: str, kind: str, namespace: str | None, label_selector: str = "") -> list[Any]:
        assert (kind, namespace) == ("AgentObservability", None)
        if self.status:
            raise KubeError(self.status, "Forbidden", "agentobservabilities is forbidden")
        return [{"metadata": {"namespace": k.split("/")[0], "name": k.split("/")[1]}} for k in self.keys]


KEYS = ["agents-prod/a", "agents-dev/b", "team-x/c", "team-x/d"]


def test_resources_outside_the_served_namespaces_are_named(caplog: pytest.LogCaptureFixture) -> None:
    kube: Any = ListingKube(KEYS)
    assert unserved(kube, ["agents-*"]) == ["team-x/c", "team-x/d"]
    assert unserved(kube, []) == []  # the whole cluster: nothing outside, and no list
    with caplog.at_level(logging.INFO, "agentobs.stack.unserved"):
        report(kube, ["agents-prod"])
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "agents-dev/b, team-x/c, team-x/d" in record.getMessage()
    assert "Serving fewer namespaces" in record.getMessage()


def test_without_permission_to_list_it_says_it_cannot_tell(caplog: pytest.LogCaptureFixture) -> None:
    kube: Any = ListingKube(KEYS, status=403)
    assert unserved(kube, ["agents-prod"]) is None
    with caplog.at_level(logging.INFO, "agentobs.stack.unserved"):
        report(kube, ["agents-prod"])
    [record] = caplog.records
    assert record.levelno == logging.INFO and "cannot be listed" in record.getMessage()


def test_nothing_is_said_when_every_resource_is_served(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "agentobs.stack.unserved"):
        report(ListingKube(KEYS), ["agents-*", "team-x"])  # type: ignore[arg-type]
    assert not caplog.records
