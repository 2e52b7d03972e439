"""One reconcile pass: validate, gather material, render, apply, observe, write status.

Level-based and idempotent: every pass renders the whole desired state from the spec and applies
it with server-side apply, so a child deleted or edited by hand is put back, and a pass over an
unchanged cluster changes nothing. Given a `PassClient`, it writes nothing either: children already
in place (by their applied hash, see `agentobs.stack.desired`) are not sent, and the status is patched
only with what differs. What cannot be done is reported in status conditions (and returned, for
events); only an unreachable API server raises, and the scheduler retries that.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from agentobs import metrics
from agentobs.admission.coverage import observe
from agentobs.admission.injection import make_config
from agentobs.api import API_VERSION, KIND
from agentobs.api.formats import resource_name_problem
from agentobs.api.spec import AgentObservabilitySpec
from agentobs.api.status import AgentObservabilityStatus, Endpoints, InjectionStatus
from agentobs.kube import NAMESPACE_TERMINATING, Kube, KubeError, Manifest
from agentobs.render import Owner, certificate_requests, endpoints, make_stack
from agentobs.render.common import MANAGED_BY, selector_labels
from agentobs.render.prometheus import AGENT_NAMESPACES
from agentobs.render.rules import extra_rule_problems
from agentobs.render.tls import make_ca_bundle, tls_secret_name
from agentobs.stack.desired import merge_patch, stamp, whole_patch
from agentobs.stack.material import gather
from agentobs.stack.passclient import PassClient
from agentobs.stack.prune import Key, key_of, prune
from agentobs.stack.status import (
    POD_CAUSES,
    WORKLOAD_KINDS,
    Observation,
    disabled_conditions,
    make_status,
    pod_cause,
    workload_state,
)

log = logging.getLogger(__name__)

# A failed Job (the retention set-up gave up after its own retries, about 40 minutes) is run again
# this long after it failed: long enough for its Failed condition and event to be seen, short
# enough that a log pipeline waiting for the index set-up is not held for the CronJob's daily run.
JOB_RERUN_AFTER = dt.timedelta(minutes=10)

# Resource uid -> the namespaces its instrumentation selected at the last successful look.
_agent_namespaces: dict[str, list[str]] = {}


class NamespaceTerminating(Exception):
    """The resource's namespace is being deleted: the API server refuses every new object in it."""


def namespace_terminating(exc: KubeError) -> bool:
    """Whether the API server refused a create because the namespace is being deleted (the
    NamespaceLifecycle admission plugin's answer)."""
    return exc.status == 403 and exc.reason == NAMESPACE_TERMINATING


@dataclass
class Outcome:
    """What a pass produced, for the caller to log and turn into events."""

    status: AgentObservabilityStatus
    transitions: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    retry: bool = False  # an apply failed for a passing reason: try again before the routine resync


def _validation_summary(exc: ValidationError) -> str:
    """Field paths and messages only: pydantic's default text would echo the input values."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        path = ".".join(str(p) for p in err["loc"])
        parts.append(f"spec.{path}: {err['msg']}")
    return "; ".join(parts)


def _component(manifest: Manifest) -> str:
    labels: dict[str, str] = manifest["metadata"].get("labels", {})
    return labels.get("app.kubernetes.io/component") or str(manifest["kind"]).lower()


def _endpoints(owner: Owner) -> Endpoints:
    return Endpoints.model_validate(endpoints(owner))


# Namespaces whose pods the API server never sends to the webhook (the operator's, kube-system),
# comma-separated.
WEBHOOK_EXCLUDED_EXTRA = "webhook_excluded_namespaces"
# Condition reasons that are worth a Warning event when they first appear, beside the pod causes.
WARNING_REASONS = frozenset({"InvalidSpec", "ApplyFailed", "NamespaceExcluded"})


# The kubelet alternates these two at each pull back-off: one cause, one Event.
_SAME_CAUSE = {"ErrImagePull": "ImagePullBackOff"}


def _transitions(before: list[dict[str, Any]], after: AgentObservabilityStatus) -> list[tuple[str, str, str]]:
    old = {c.get("type"): c.get("status") for c in before}
    out = [(c.type, c.reason, c.message) for c in after.conditions
           if c.type in ("Ready", "Degraded") and old.get(c.type) != c.status
           and (c.type == "Ready" or c.status == "True")]
    # Ready turning False because the stack turned Degraded carries the same reason and message:
    # one Warning says it, not a Warning and a Normal event alike.
    degraded = {(r, m) for t, r, m in out if t == "Degraded"}
    out = [t for t in out if not (t[0] == "Ready" and (t[1], t[2]) in degraded)]
    # A stack that can never instrument a pod, or whose selected pods another resource took, says
    # so once: it is Ready all the same.
    old_reasons = {c.get("type"): c.get("reason") for c in before}
    out += [(c.type, c.reason, c.message) for c in after.conditions
            if c.reason in ("NamespaceExcluded", "PodsInstrumentedElsewhere") and old_reasons.get(c.type) != c.reason]
    # A component held back by something the cluster names (an image it cannot pull, a pod it
    # cannot place) is said once per new cause, where `kubectl describe` and event alerts see it.
    old_causes = {c.get("type"): _SAME_CAUSE.get(str(c.get("reason")), c.get("reason")) for c in before
                  if c.get("status") == "False"}
    out += [(c.type, c.reason, c.message) for c in after.conditions
            if c.status == "False" and c.reason in POD_CAUSES
            and old_causes.get(c.type) != _SAME_CAUSE.get(c.reason, c.reason)]
    return out


def _issued_elsewhere(owner: Owner) -> set[Key]:
    """Secrets cert-manager writes for us: they carry our labels, but are not ours to prune."""
    if owner.spec.tls.issuer_ref is None:
        return set()
    return {("v1", "Secret", owner.namespace, tls_secret_name(owner, c)) for c in certificate_requests(owner)}


def reconcile(kube: Kube, body: dict[str, Any], now: Callable[[], dt.datetime],
              extra: dict[str, Any] | None = None) -> Outcome:
    """Bring the children of one resource to the desired state and write its status."""
    started = time.perf_counter()
    meta = body["metadata"]
    previous = list((body.get("status") or {}).get("conditions") or [])
    obs = Observation(generation=meta.get("generation", 0))
    try:
        spec = AgentObservabilitySpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        obs.invalid_spec = _validation_summary(exc)
        spec = None
    name_problem = resource_name_problem(meta["name"])
    if name_problem is not None:
        # Nothing is applied: half a stack (the Services and StatefulSets refused) never gets Ready.
        obs.invalid_spec = "; ".join(filter(None, [name_problem, obs.invalid_spec]))
        spec = None

    if spec is not None and spec.paused:
        obs.paused = True
    elif spec is not None:
        owner = Owner(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"], spec=spec,
                      generation=obs.generation, extra=dict(extra or {}))
        try:
            _apply_stack(kube, owner, obs, now())
        except NamespaceTerminating:
            # The namespace controller is deleting the children and will delete the resource: a
            # child it took first is not to be put back, nor reported (and counted, and alerted on)
            # as an apply error; no event can be posted there either.
            log.debug("%s/%s: namespace being deleted, nothing applied", meta["namespace"], meta["name"])
            return Outcome(status=AgentObservabilityStatus.model_validate(body.get("status") or {}))

    status = make_status(obs, previous, now(), body.get("status"))
    for cond in status.conditions:
        if cond.type in ("Ready", "Degraded"):
            metrics.RESOURCE_CONDITION.labels(namespace=meta["namespace"], resource=meta["name"],
                                              condition=cond.type).set(1 if cond.status == "True" else 0)
    # Nothing when nothing changed since the status the watch last delivered; else the whole status.
    new = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    patch = merge_patch(body.get("status") or {}, new)
    if patch:
        try:
            kube.patch_status(API_VERSION, KIND, meta["namespace"], meta["name"], whole_patch(new, patch))
        except KubeError as exc:
            if exc.status != 404:
                raise
            # Deleted during the pass (with its namespace, most often): nothing left to tell.
            return Outcome(status=status)
    result = "error" if obs.apply_errors or obs.invalid_spec else "ok"
    metrics.RECONCILES.labels(result=result).inc()
    metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
    transitions = _transitions(previous, status)
    _log_pass(kube, meta, status, sorted(patch) if patch else [], obs)
    if obs.issued:
        transitions.append(("Issued", "Issued", "generated " + ", ".join(obs.issued)))
    if obs.restarted:
        transitions.append(("Rollout", "RolloutForInjection", "restarted " + ", ".join(obs.restarted)))
    if obs.pruned:
        transitions.append(("Pruned", "Pruned", "deleted " + ", ".join(obs.pruned)))
    return Outcome(status=status, transitions=transitions, retry=obs.transient_errors)


def _log_pass(kube: Kube, meta: dict[str, Any], status: AgentObservabilityStatus, changed: list[str],
              obs: Observation) -> None:
    """One line per pass that changed something; a pass that wrote nothing says nothing."""
    written = kube.written if isinstance(kube, PassClient) else []
    if not (written or changed or obs.pruned or obs.restarted):
        return
    ready = next((c for c in status.conditions if c.type == "Ready"), None)
    parts = [f"applied {len(written)}" + (f" ({', '.join(written[:8])}{', ...' if len(written) > 8 else ''})"
                                         if written else "")]
    for verb, what in (("issued", obs.issued), ("pruned", obs.pruned), ("restarted", obs.restarted)):
        if what:
            parts.append(f"{verb} {', '.join(what)}")
    if changed:
        parts.append("status " + ",".join(changed))
    if ready is not None:
        parts.append(f"Ready={ready.status} ({ready.reason})")
    log.info("%s/%s: %s", meta["namespace"], meta["name"], "; ".join(parts))


def _apply_stack(kube: Kube, owner: Owner, obs: Observation, now: dt.datetime) -> None:
    try:
        gathered = gather(kube, owner, now)
    except KubeError as exc:
        if namespace_terminating(exc):
            raise NamespaceTerminating from exc
        obs.tls_message = f"cannot read the stored certificates and credentials: {exc.message}"
        obs.apply_errors["ca"] = obs.tls_message
        obs.transient_errors = exc.transient
        return
    obs.issued = gathered.issued
    if gathered.tls_ready is not None:  # cert-manager: ready once it has issued every Secret
        obs.tls_ready, obs.tls_message = gathered.tls_ready, gathered.tls_message
        obs.tls_reason = "CertificatesPending"
    obs.disabled = disabled_conditions(owner.spec)
    obs.rule_problems = extra_rule_problems(owner)
    config = make_config(owner)
    manifests: list[Manifest] = []
    if config is not None and not config.namespace_selector \
            and owner.namespace in str(owner.extra.get(WEBHOOK_EXCLUDED_EXTRA, "")).split(","):
        obs.excluded_namespace = owner.namespace
    if config is not None:
        try:
            coverage = observe(kube, config, owner.spec.instrumentation.rollout_on_change, now)
        except KubeError as exc:
            log.warning("%s/%s: injection coverage not observed: %s", owner.namespace, owner.name, exc.message)
            # Keep what the last pass found: a passing API error must not roll Prometheus or
            # prune its Roles in the agents' namespaces.
            if owner.uid in _agent_namespaces:
                owner = dataclasses.replace(owner, extra={**owner.extra,
                                                          AGENT_NAMESPACES: _agent_namespaces[owner.uid]})
        else:
            obs.injection = InjectionStatus(selected=coverage.selected, current=coverage.current,
                                            stale=coverage.stale, missing=coverage.missing)
            obs.restarted = coverage.restarted
            obs.injected_elsewhere = coverage.elsewhere
            # Agents outside the resource's namespace mount the CA from a copy in their own.
            manifests += [make_ca_bundle(owner, gathered.material.ca, namespace=ns)
                          for ns in coverage.namespaces if ns != owner.namespace]
            # Prometheus discovers agents in these namespaces (and gets a Role in each).
            _agent_namespaces[owner.uid] = coverage.namespaces
            owner = dataclasses.replace(owner, extra={**owner.extra, AGENT_NAMESPACES: coverage.namespaces})
    manifests = make_stack(owner, gathered.material) + manifests

    jobs: dict[str, Manifest] = {}
    for manifest in map(stamp, manifests):
        component = _component(manifest)
        try:
            applied = kube.apply(manifest)
        except KubeError as exc:
            if namespace_terminating(exc):
                raise NamespaceTerminating from exc
            metrics.APPLY_ERRORS.labels(kind=manifest["kind"]).inc()
            obs.apply_errors.setdefault(component, apply_error_message(manifest, exc))
            obs.transient_errors |= exc.transient
            continue
        if manifest["kind"] in WORKLOAD_KINDS:
            obs.workloads[component] = workload_state(applied)
        if manifest["kind"] == "Job":
            jobs[component] = applied
        if manifest["kind"] == "Secret" and component == "ca":
            obs.tls_ready = True
    obs.causes = {**_job_causes(kube, owner, jobs, now), **_causes(kube, owner, obs)}
    obs.endpoints = _endpoints(owner)
    if not obs.apply_errors:  # prune only once the desired state is in place
        try:
            obs.pruned = prune(kube, owner, {key_of(m) for m in manifests} | _issued_elsewhere(owner))
        except KubeError as exc:
            log.warning("%s/%s: pruning postponed: %s", owner.namespace, owner.name, exc.message)


# What the API server says when a StatefulSet's volumeClaimTemplates change: only a few fields of
# its spec may, and a volume's size or StorageClass are not among them.
_STATEFULSET_FORBIDDEN = "Forbidden: updates to statefulset spec for fields other than"


def apply_error_message(manifest: Manifest, exc: KubeError) -> str:
    """The apply error for the status, with what to do where the API server's text does not say."""
    message = f"{manifest['kind']} {manifest['metadata']['name']}: {exc.message}"
    if manifest["kind"] == "StatefulSet" and _STATEFULSET_FORBIDDEN in exc.message:
        message += (" (a data volume's size or StorageClass cannot change in place: expand the claims, then "
                    "delete the StatefulSet with --cascade=orphan for the operator to re-create it; "
                    "docs/runbooks.md#storage-resize)")
    return message


def _causes(kube: Kube, owner: Owner, obs: Observation) -> dict[str, tuple[str, str]]:
    """For each workload that is not ready, the cause its pods and claims show. Read only then: a
    ready stack costs no extra request."""
    out: dict[str, tuple[str, str]] = {}
    for component, state in obs.workloads.items():
        if state.is_ready:
            continue
        selector = ",".join(f"{k}={v}" for k, v in sorted(selector_labels(owner, component).items()))
        try:
            pods = kube.list("v1", "Pod", owner.namespace, selector)
            claims = kube.list("v1", "PersistentVolumeClaim", owner.namespace, selector)
        except KubeError as exc:
            log.warning("%s/%s: pods of %s not read: %s", owner.namespace, owner.name, component, exc.message)
            continue
        cause = pod_cause(pods, claims)
        if cause is not None:
            out[component] = cause
    return out


def _job_causes(kube: Kube, owner: Owner, jobs: dict[str, Manifest],
                now: dt.datetime) -> dict[str, tuple[str, str]]:
    """Why a Job the stack renders (the retention set-up) cannot do its work: it failed, or its pod
    cannot start (an image not pulled, a crash loop). A Job still running, or done, is no problem;
    its pods are read only while it is not done. A Job that failed `JOB_RERUN_AFTER` ago is deleted,
    so that the next pass runs it again (the watch on Jobs brings that pass at once)."""
    out: dict[str, tuple[str, str]] = {}
    for component, job in jobs.items():
        name, status = job["metadata"]["name"], job.get("status") or {}
        if status.get("succeeded"):
            continue
        failed = next((c for c in status.get("conditions") or []
                       if c.get("type") == "Failed" and c.get("status") == "True"), None)
        if failed is not None:
            message = f"Job {name}: {failed.get('message') or failed.get('reason', '')}"
            rerun = _failed_at(failed, now) + JOB_RERUN_AFTER
            if rerun <= now:
                try:
                    kube.delete("batch/v1", "Job", owner.namespace, name)
                except KubeError as exc:
                    log.warning("%s/%s: failed Job %s not deleted: %s", owner.namespace, owner.name, name,
                                exc.message)
                else:
                    log.info("%s/%s: Job %s failed at %s; running it again", owner.namespace, owner.name,
                             name, failed.get("lastTransitionTime"))
                    message += "; running it again"
            else:
                message += f"; it runs again at {rerun.strftime('%H:%M:%S')} UTC"
            out[component] = ("JobFailed", message)
            continue
        try:
            pods = kube.list("v1", "Pod", owner.namespace, f"job-name={name}")
        except KubeError as exc:
            log.warning("%s/%s: pods of Job %s not read: %s", owner.namespace, owner.name, name, exc.message)
            continue
        cause = pod_cause(pods, [])
        if cause is not None:
            out[component] = (cause[0], f"Job {name}: {cause[1]}")
    return out


def _failed_at(condition: dict[str, Any], now: dt.datetime) -> dt.datetime:
    """When a Job's Failed condition became true; long enough ago to run it again if it does not
    say (the Job controller always does; without it a failed Job would never run again)."""
    try:
        return dt.datetime.fromisoformat(str(condition["lastTransitionTime"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return now - JOB_RERUN_AFTER


__all__ = ["JOB_RERUN_AFTER", "MANAGED_BY", "Outcome", "reconcile"]
