"""A pass the API server refuses for a passing reason (429 Too Many Requests, a 5xx, unreachable)
is reported (ApplyFailed, as a warning event) and tried again sooner than the routine resync,
waiting twice as long after each failure in a row, and as routinely again once a pass succeeds.
An apply refused with a 429 or 500 used to wait for the routine resync (60 s, up to 500 s with
1,000 resources), and a pass that failed outright was retried every 10 s however long the
trouble lasted."""
from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from agentobs import handlers
from agentobs.kube import KubeError
from agentobs.stack.reconcile import Outcome, reconcile
from agentobs.workqueue import Priority

from recording_kube import RecordingKube

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


class RefusingKube:
    """Applies succeed except those of `kind`, refused with `status`; reads find nothing."""

    def __init__(self, kind: str, status: int) -> None:
        self.kind, self.status = kind, status

    def __getattr__(self, method: str) -> Any:
        def call(*args: Any, **_: Any) -> Any:
            if method == "apply":
                if args[0]["kind"] == self.kind:
                    raise KubeError(self.status, "TooManyRequests" if self.status == 429 else "Invalid", "refused")
                return args[0]
            return [] if method == "list" else None
        return call


def _body() -> dict[str, Any]:
    return {"apiVersion": "agentobs.io/v1alpha1", "kind": "AgentObservability",
            "metadata": {"name": "small", "namespace": "agents", "uid": "uid-small", "generation": 1},
            "spec": {}, "status": {"conditions": []}}


@pytest.mark.parametrize(("status", "retry"), [(429, True), (500, True), (503, True), (422, False), (403, False)])
def test_an_apply_refused_for_a_passing_reason_asks_for_a_retry(status: int, retry: bool) -> None:
    outcome = reconcile(RefusingKube("StatefulSet", status), _body(), lambda: NOW)  # type: ignore[arg-type]
    assert outcome.retry is retry
    degraded = next(c for c in outcome.status.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "ApplyFailed")
    assert "refused" in degraded.message
    assert ("Degraded", "ApplyFailed") in [(t[0], t[1]) for t in outcome.transitions]


def test_failed_passes_are_retried_backing_off_until_one_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler = handlers.Scheduler()
    key = ("agents", "small")
    scheduler.bodies[key] = _body()
    waits: list[float] = []
    scheduler.wake = lambda k, priority=Priority.CHILD, delay=0.0: waits.append(delay)  # type: ignore[method-assign]
    scheduler.client = RecordingKube  # type: ignore[assignment,method-assign]
    monkeypatch.setattr("agentobs.workqueue.random.uniform", lambda low, high: 1.0)
    results: list[Any] = [KubeError(429, "TooManyRequests", "slow down"), Outcome(status=None, retry=True),  # type: ignore[arg-type]
                          KubeError(0, "Unreachable", "ConnectionRefusedError"), RuntimeError("bug"),
                          Outcome(status=None, retry=True), Outcome(status=None, retry=True),  # type: ignore[arg-type]
                          Outcome(status=None, retry=True), Outcome(status=None, retry=True),  # type: ignore[arg-type]
                          Outcome(status=None), Outcome(status=None, retry=True)]  # type: ignore[arg-type]

    def fake_reconcile(*_: Any) -> Outcome:
        result = results.pop(0)
        if isinstance(result, Exception):
            raise result
        return result  # type: ignore[no-any-return]

    monkeypatch.setattr(handlers, "reconcile", fake_reconcile)

    async def passes() -> None:
        while results:
            await scheduler._pass(key)

    asyncio.run(passes())
    # 10 s doubling up to 5 minutes; a pass that succeeds starts again from 10 s.
    assert waits == [10, 20, 40, 80, 160, 300, 300, 300, 10]
    assert key in scheduler.failures
