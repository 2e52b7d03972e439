"""Resources in namespaces this operator does not serve, said once at start.

Narrowing the namespaces an operator serves (the chart's `operator.watchNamespaces`,
`AGENTOBS_NAMESPACES`) leaves the resources outside them as they were: their children keep running,
but nothing reconciles them any more. Their status stays at its last value (often `Ready=True`),
their certificates are not renewed, the node log collector drops their routes and the webhook no
longer instruments their agents. Nothing on the resources says so, and this operator must not write
to them (another release may serve those namespaces), so the operator log names them at start.

With literal namespace names the chart binds the operator's namespaced permissions in those
namespaces only, so it cannot list resources elsewhere: it says that it cannot tell.
"""

from __future__ import annotations

import logging

from agentobs.api import API_VERSION, KIND
from agentobs.kube import Kube, KubeError
from agentobs.stack.cache import serves

log = logging.getLogger(__name__)

NAMED = 20  # the log line names this many, then counts the rest


def unserved(kube: Kube, patterns: list[str]) -> list[str] | None:
    """`namespace/name` of the resources outside `patterns`, or None when they cannot be listed."""
    if not patterns:
        return []
    try:
        found = kube.list(API_VERSION, KIND, None)
    except KubeError as exc:
        if exc.status in (403, 404):
            return None
        raise
    keys = (f"{(r.get('metadata') or {}).get('namespace', '')}/{(r.get('metadata') or {}).get('name', '')}"
            for r in found)
    return sorted(k for k in keys if not serves(patterns, k.partition("/")[0]))


def report(kube: Kube, patterns: list[str]) -> None:
    try:
        keys = unserved(kube, patterns)
    except KubeError as exc:
        log.info("could not list AgentObservability resources outside the served namespaces: %s", exc.message)
        return
    served = ",".join(patterns)
    if keys is None:
        log.info("serving namespaces %s; resources in other namespaces cannot be listed with this operator's "
                 "permissions, and none of them is reconciled (see docs/operations.md, 'Serving fewer "
                 "namespaces')", served)
    elif keys:
        named = ", ".join(keys[:NAMED]) + (f" and {len(keys) - NAMED} more" if len(keys) > NAMED else "")
        log.warning("%d AgentObservability resource(s) outside the served namespaces (%s) are not reconciled by "
                    "this operator: %s. Unless another agentobs release serves them, their status stays as last "
                    "written, their certificates are not renewed, their agents' logs are not collected and new "
                    "agent pods are not instrumented: serve their namespaces again or delete them (see "
                    "docs/operations.md, 'Serving fewer namespaces')", len(keys), served, named)
