"""The baseline of bench_operator_scale.py: a kopf operator that watches the same
AgentObservability resources, in the same namespaces, and does nothing with them.

    python bench/noop_operator.py NAMESPACE_GLOB
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import kopf


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.watching.server_timeout = 270  # as the operator sets it
    settings.networking.request_timeout = 60


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_via_client(**kwargs)


@kopf.on.event("agentobs.io", "v1alpha1", "agentobservabilities")
def seen(**_: Any) -> None:
    """Nothing: the cost of watching alone."""


if __name__ == "__main__":
    asyncio.run(kopf.operator(clusterwide=False, namespaces=[sys.argv[1]], standalone=True))
