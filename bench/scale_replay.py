"""The control plane's own share of the time to Ready: the objects the operator makes for N stacks,
applied by a plain client and waited on until every workload is ready, in the same run as the
operator's phase.

    python bench/scale_replay.py PREFIX SIZE PER_NAMESPACE WORKERS   (the applying side, a child)

The time to Ready of the operator's phase is mostly the control plane's work on two shared cores
(the controllers, the scheduler, kwok and the API server act on every object the operator writes),
so whether it grows linearly cannot be read from it alone. This phase does the same work with
nothing of the operator but its pure rendering: for each stack it creates the resource (so the
children have a live owner, as the garbage collector requires), generates the same certificates
and credentials, and server-side applies the same rendered children with as many threads as the
operator has workers. Then no watch of children, no status, no resync, no webhook. The bench
watches the workloads (StatefulSets, Deployments, DaemonSets) until all are ready, as the
operator's Ready requires. The ratio of the two phases' growth from one size to the next says how much of
the growth is the operator's.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agentobs.api.spec import AgentObservabilitySpec
from agentobs.kube import Kube, KubeError
from agentobs.render import make_stack
from agentobs.render.common import MANAGED_BY, Owner
from agentobs.stack.desired import stamp
from agentobs.stack.material import gather
from agentobs.stack.status import workload_state

# What the operator's Ready waits for (stack/status.py); a Job (the retention set-up) is applied
# but, as for the operator, not waited on.
WORKLOADS = (("apps/v1", "StatefulSet"), ("apps/v1", "Deployment"), ("apps/v1", "DaemonSet"))
SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"


def namespace_of(prefix: str, i: int, namespaces: int) -> str:
    return f"{prefix}-{i % namespaces}"


def apply_stack(kube: Kube, name: str, namespace: str, spec_body: dict[str, Any], labels: dict[str, str]) -> int:
    """Create one resource and apply its children as the operator renders them; the number of
    workloads it has."""
    created = kube.apply({"apiVersion": "agentobs.io/v1alpha1", "kind": "AgentObservability",
                          "metadata": {"name": name, "namespace": namespace, "labels": labels}, "spec": spec_body})
    spec = AgentObservabilitySpec.model_validate(spec_body)
    owner = Owner(name=name, namespace=namespace, uid=created["metadata"]["uid"], spec=spec,
                  generation=created["metadata"].get("generation", 1))
    now = dt.datetime.now(dt.UTC)
    manifests = [stamp(m) for m in make_stack(owner, gather(kube, owner, now).material)]
    for manifest in manifests:
        kube.apply(manifest)
    return sum(1 for m in manifests if (m["apiVersion"], m["kind"]) in WORKLOADS)


def is_ready(obj: dict[str, Any]) -> bool:
    state = workload_state(obj)
    return state.settled and state.ready >= state.desired


class WorkloadWatch:
    """Readiness of every workload in namespaces starting with `prefix-`, one watch per kind across
    all namespaces (a list, then events), so the cost does not grow with the time waited."""

    def __init__(self, kube: Kube, prefix: str) -> None:
        self.kube, self.prefix = kube, prefix + "-"
        self.ready: dict[tuple[str, str, str], bool] = {}
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.stopped = False
        self.threads = [threading.Thread(target=self._follow, args=kind, daemon=True) for kind in WORKLOADS]
        for t in self.threads:
            t.start()

    def count(self) -> int:
        with self.lock:
            return sum(self.ready.values())

    def wait_for(self, expected: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: sum(self.ready.values()) >= expected, timeout)

    def stop(self) -> None:
        self.stopped = True

    def _note(self, event: str, obj: dict[str, Any], kind: str) -> None:
        meta = obj.get("metadata") or {}
        if not str(meta.get("namespace", "")).startswith(self.prefix):
            return
        key = (kind, meta["namespace"], meta["name"])
        obj.setdefault("kind", kind)
        with self.changed:
            if event == "DELETED":
                self.ready.pop(key, None)
            else:
                self.ready[key] = is_ready(obj)
            self.changed.notify_all()

    def _follow(self, api_version: str, kind: str) -> None:
        version = ""
        while not self.stopped:
            try:
                if not version:
                    cont = ""
                    while True:
                        items, version, cont = self.kube.list_page(api_version, kind, None, SELECTOR,
                                                                   limit=500, continue_=cont)
                        for item in items:
                            self._note("ADDED", item, kind)
                        if not cont:
                            break
                for event, obj in self.kube.watch(api_version, kind, None, SELECTOR, version, timeout_seconds=60):
                    if event == "ERROR":
                        version = ""
                        break
                    version = (obj.get("metadata") or {}).get("resourceVersion", version)
                    if event in ("ADDED", "MODIFIED", "DELETED"):
                        self._note(event, obj, kind)
                    if self.stopped:
                        return
            except KubeError:
                version = ""


def main() -> None:
    prefix, size, per_namespace, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    spec_body, labels = json.loads(sys.stdin.read()), {"bench.agentobs.io/run": prefix}
    namespaces = max(1, -(-size // per_namespace))
    kube, started = Kube(), time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        counts = list(pool.map(lambda i: apply_stack(kube, f"s{i}", namespace_of(prefix, i, namespaces),
                                                     spec_body, labels), range(size)))
    times = os.times()
    print(json.dumps({"workloads": sum(counts), "seconds": time.monotonic() - started,
                      "cpu": times.user + times.system}), flush=True)


if __name__ == "__main__":
    main()
