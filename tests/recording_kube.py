"""A stand-in for `agentobs.kube.Kube` that records every call and finds nothing, for tests of a
reconcile pass that must not reach the API (an invalid spec applies nothing)."""

from __future__ import annotations

from typing import Any


class RecordingKube:
    """Records every call; reads find nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, method: str) -> Any:
        def call(*args: Any, **_: Any) -> None:
            self.calls.append((method, args))
        return call
