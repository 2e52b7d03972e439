"""Leader election on a coordination.k8s.io Lease: with several replicas, one reconciles.

Every replica watches and serves the webhook (admission is stateless); only the holder of the
Lease writes children and status. A holder that stops renewing loses the Lease after its
duration, and another replica takes over. Without election (one replica, out of cluster) the
process is always the leader.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from agentobs.kube import Kube, KubeError

log = logging.getLogger(__name__)

LEASE_API = "coordination.k8s.io/v1"


def _micro(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(stamp: str | None) -> dt.datetime | None:
    if not stamp:
        return None
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@dataclass
class Elector:
    kube: Kube | None
    namespace: str
    name: str
    identity: str
    duration: int = 15
    is_leader: bool = False

    @property
    def enabled(self) -> bool:
        return self.kube is not None

    def step(self, now: dt.datetime) -> bool:
        """Acquire or renew the Lease once; returns whether this replica leads now."""
        if self.kube is None:
            self.is_leader = True
            return True
        try:
            self.is_leader = self._try(self.kube, now)
        except KubeError as exc:
            if exc.status != 409:
                log.warning("leader election: %s", exc.message)
            self.is_leader = False
        return self.is_leader

    def release(self, now: dt.datetime) -> None:
        """Give up the Lease on a clean stop (only if this replica still holds it)."""
        if self.kube is None or not self.is_leader:
            return
        self.is_leader = False
        try:
            lease = self.kube.get(LEASE_API, "Lease", self.namespace, self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"]["holderIdentity"] = ""
            lease["spec"]["renewTime"] = _micro(now)
            self.kube.replace(lease)
            log.info("leader election: %s released the lease", self.identity)
        except KubeError as exc:
            log.warning("leader election: lease not released: %s", exc.message)

    def _try(self, kube: Kube, now: dt.datetime) -> bool:
        lease = kube.get(LEASE_API, "Lease", self.namespace, self.name)
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": self.duration,
                "acquireTime": _micro(now), "renewTime": _micro(now), "leaseTransitions": 0}
        if lease is None:
            kube.create({"apiVersion": LEASE_API, "kind": "Lease",
                         "metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec})
            log.info("leader election: %s leads", self.identity)
            return True
        current = lease.get("spec") or {}
        holder = current.get("holderIdentity")
        renewed = _parse(current.get("renewTime")) or dt.datetime.min.replace(tzinfo=dt.UTC)
        expired = now > renewed + dt.timedelta(seconds=int(current.get("leaseDurationSeconds") or self.duration))
        if holder not in (None, "", self.identity) and not expired:
            return False
        if holder == self.identity:
            spec["acquireTime"] = current.get("acquireTime", spec["acquireTime"])
            spec["leaseTransitions"] = current.get("leaseTransitions", 0)
        else:
            spec["leaseTransitions"] = int(current.get("leaseTransitions") or 0) + 1
            log.info("leader election: %s takes over from %s", self.identity, holder or "nobody")
        lease["spec"] = spec
        kube.replace(lease)
        return True
