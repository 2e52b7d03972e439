"""Leader election on a real Lease: one holder, and a clean stop hands the Lease over at once
(found on the real node: a deleted leader's Lease ran out its duration while a new pod raced the
standing replica for it)."""

from __future__ import annotations

import datetime as dt

from agentobs.kube import Kube
from agentobs.leader import Elector


def test_one_leader_and_a_released_lease_is_taken_at_once(kube: Kube, namespace: str) -> None:
    now = dt.datetime.now(dt.UTC)
    first = Elector(kube, namespace, "leader", "pod-a", duration=3600)
    second = Elector(kube, namespace, "leader", "pod-b", duration=3600)
    assert first.step(now) is True
    assert second.step(now) is False, "two leaders at once"
    assert first.step(now + dt.timedelta(seconds=5)) is True, "the holder keeps its lease"

    first.release(now + dt.timedelta(seconds=6))
    assert first.is_leader is False
    # Long before the hour-long lease would run out, the other replica leads.
    assert second.step(now + dt.timedelta(seconds=7)) is True
    lease = kube.get("coordination.k8s.io/v1", "Lease", namespace, "leader")
    assert lease is not None and lease["spec"]["holderIdentity"] == "pod-b"
    assert lease["spec"]["leaseTransitions"] == 1
    # Releasing what one no longer holds changes nothing.
    first.release(now + dt.timedelta(seconds=8))
    assert kube.get("coordination.k8s.io/v1", "Lease", namespace, "leader")["spec"]["holderIdentity"] == "pod-b"
