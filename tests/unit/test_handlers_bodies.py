"""The scheduler's bodies: kept packed, read back whole and as fresh copies."""

from __future__ import annotations

import json
import sys

from agentobs.handlers import Bodies


def _body(name: str) -> dict[str, object]:
    conditions = [{"type": t, "status": "True", "reason": "Ready", "message": "all replicas ready" * 3,
                   "lastTransitionTime": "2026-01-01T00:00:00Z"} for t in ("Ready", "TLSReady", "PrometheusReady")]
    return {"apiVersion": "agentobs.io/v1alpha1", "kind": "AgentObservability",
            "metadata": {"name": name, "namespace": "n", "uid": "u-" + name, "generation": 2},
            "spec": {"prometheus": {"replicas": 2, "retention": "15d"}, "logging": {"enabled": False}},
            "status": {"observedGeneration": 2, "conditions": conditions}}


def test_bodies_read_back_what_was_stored() -> None:
    bodies = Bodies()
    bodies[("n", "a")] = _body("a")
    bodies[("n", "b")] = _body("b")
    assert bodies[("n", "a")] == _body("a")
    assert ("n", "b") in bodies and ("n", "c") not in bodies and len(bodies) == 2
    assert [b["metadata"]["name"] for b in bodies.values()] == ["a", "b"]
    assert bodies.get(("n", "c")) is None
    assert bodies.pop(("n", "a"))["metadata"]["uid"] == "u-a"
    assert list(bodies) == [("n", "b")]


def test_a_read_is_a_copy_and_the_stored_form_is_small() -> None:
    bodies = Bodies()
    bodies[("n", "a")] = _body("a")
    read = bodies[("n", "a")]
    read["status"]["conditions"].clear()
    assert bodies[("n", "a")]["status"]["conditions"]  # the caller's change did not reach the store
    packed = bodies._packed[("n", "a")]
    assert isinstance(packed, bytes) and len(packed) < len(json.dumps(_body("a")))
    assert sys.getsizeof(packed) < sys.getsizeof(json.dumps(_body("a")))
