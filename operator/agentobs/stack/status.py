"""From what reconcile observed to the resource's status: conditions, counts and endpoints. Pure."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from agentobs.api.spec import AgentObservabilitySpec
from agentobs.api.status import AgentObservabilityStatus, ComponentStatus, Condition, Endpoints, InjectionStatus

# Which condition reports on which rendered component (several workloads may share one).
CONDITION_OF_COMPONENT = {
    "ca": "TLSReady",
    "prometheus": "PrometheusReady",
    "alertmanager": "AlertmanagerReady",
    "elasticsearch": "ElasticsearchReady",
    "es-retention": "ElasticsearchReady",
    "jaeger-collector": "TracingReady",
    "jaeger-query": "TracingReady",
    "fluentd": "LoggingReady",
    "grafana": "GrafanaReady",
}
WORKLOAD_KINDS = ("StatefulSet", "Deployment", "DaemonSet")


@dataclass(frozen=True)
class WorkloadState:
    ready: int
    desired: int
    settled: bool  # the controller has rolled out the latest template

    @property
    def is_ready(self) -> bool:
        return self.settled and self.ready >= self.desired


@dataclass
class Observation:
    """What one reconcile pass saw. Messages here must never contain secret data."""

    generation: int
    workloads: dict[str, WorkloadState] = field(default_factory=dict)
    tls_ready: bool = False
    tls_message: str = ""
    tls_reason: str = ""  # why TLS is not ready, when a more precise word than CertificatesNotReady fits
    apply_errors: dict[str, str] = field(default_factory=dict)  # component -> message
    transient_errors: bool = False  # one of them passes by itself (429, 5xx, unreachable): retry soon
    invalid_spec: str | None = None
    paused: bool = False
    endpoints: Endpoints = field(default_factory=Endpoints)
    issued: list[str] = field(default_factory=list)  # certificates and credentials made this pass
    injection: InjectionStatus | None = None
    injected_elsewhere: dict[str, int] = field(default_factory=dict)  # other resource -> pods it took
    restarted: list[str] = field(default_factory=list)  # workloads rolled out for injection
    pruned: list[str] = field(default_factory=list)  # children deleted as no longer wanted
    disabled: dict[str, str] = field(default_factory=dict)  # condition type -> the switch that turned it off
    causes: dict[str, tuple[str, str]] = field(default_factory=dict)  # component -> (reason, message)
    rule_problems: dict[str, str] = field(default_factory=dict)  # extraRules group -> why it was left out
    # The resource's namespace when the webhook is never called for pods there (the operator's own,
    # kube-system) and it selects no other: it can instrument nothing, however Ready it is.
    excluded_namespace: str = ""


def disabled_conditions(spec: AgentObservabilitySpec) -> dict[str, str]:
    """Component conditions the spec switches off, with the field that does it. Such a component
    is reported `Disabled` and is not required for Ready."""
    off: dict[str, str] = {}
    if not spec.prometheus.enabled:
        off["PrometheusReady"] = "spec.prometheus.enabled is false"
        off["AlertmanagerReady"] = "spec.prometheus.enabled is false"
    elif not spec.prometheus.alertmanager.enabled:
        off["AlertmanagerReady"] = "spec.prometheus.alertmanager.enabled is false"
    if not spec.tracing.enabled:
        off["TracingReady"] = "spec.tracing.enabled is false"
    if not spec.logging.enabled:
        off["LoggingReady"] = "spec.logging.enabled is false"
    if not spec.grafana.enabled:
        off["GrafanaReady"] = "spec.grafana.enabled is false"
    if not spec.store_in_use:
        off["ElasticsearchReady"] = "spec.tracing.enabled and spec.logging.enabled are false"
    return off


def workload_state(obj: dict[str, Any]) -> WorkloadState:
    """Read readiness of a StatefulSet, Deployment or DaemonSet as the API server reports it."""
    kind, spec, status = obj["kind"], obj.get("spec", {}), obj.get("status", {}) or {}
    generation = obj.get("metadata", {}).get("generation", 0)
    observed = status.get("observedGeneration", 0) >= generation
    if kind == "DaemonSet":
        desired = status.get("desiredNumberScheduled", 0)
        ready = status.get("numberReady", 0)
        updated = status.get("updatedNumberScheduled", 0)
    else:
        desired = spec.get("replicas", 1)
        ready = status.get("readyReplicas", 0)
        updated = status.get("updatedReplicas", 0)
    if kind == "StatefulSet" and status.get("updateRevision"):
        observed = observed and status.get("currentRevision") == status.get("updateRevision")
    return WorkloadState(ready=ready, desired=desired, settled=observed and updated >= desired)


# Container waiting reasons that explain a pod that is not ready, most telling first.
_WAITING_CAUSES = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CrashLoopBackOff",
                   "CreateContainerConfigError", "CreateContainerError", "RunContainerError")
# Every reason `pod_cause` gives: a component condition with one of them is worth an Event.
POD_CAUSES = frozenset({"Unschedulable", "VolumeNotBound", *_WAITING_CAUSES})


# The scheduler's word for a pod waiting on a claim of an Immediate-binding class still being
# provisioned: no lack of room, which `Unschedulable` tells the user, but the claim's own state,
# judged below (and gone once it binds: every new stack on such a class passes through it).
_UNBOUND_IMMEDIATE = "unbound immediate PersistentVolumeClaims"


def pod_cause(pods: list[dict[str, Any]], claims: list[dict[str, Any]]) -> tuple[str, str] | None:
    """Why a component's pods are not ready, as the cluster says it: (reason, message) of the first
    telling cause (a claim not bound, a pod the scheduler cannot place, a container that cannot be
    pulled or keeps crashing), or None when nothing but time explains it."""
    pods = sorted(pods, key=lambda p: str(p["metadata"]["name"]))
    # The scheduler first: with WaitForFirstConsumer a claim stays Pending while its pod is not
    # placed, and the scheduler's message says why (resources, taints, or the claim itself).
    for pod in pods:
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" \
                    and cond.get("reason") == "Unschedulable" \
                    and _UNBOUND_IMMEDIATE not in str(cond.get("message", "")):
                return "Unschedulable", f"pod {pod['metadata']['name']}: {cond.get('message', '')}".strip()
    for claim in sorted(claims, key=lambda c: str(c["metadata"]["name"])):
        phase = (claim.get("status") or {}).get("phase")
        if phase not in (None, "Bound"):
            return "VolumeNotBound", f"PersistentVolumeClaim {claim['metadata']['name']} is {phase}"
    for pod in pods:
        name, status = pod["metadata"]["name"], pod.get("status") or {}
        for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _WAITING_CAUSES:
                message = f"pod {name}, container {container.get('name')}: {waiting['reason']}"
                if waiting.get("message"):
                    message += f": {waiting['message']}"
                return str(waiting["reason"]), message[:500]
    return None


def _condition(type_: str, ok: bool, reason: str, message: str, generation: int,
               previous: dict[str, dict[str, Any]], now: str) -> Condition:
    status = "True" if ok else "False"
    before = previous.get(type_)
    since = before["lastTransitionTime"] if before and before.get("status") == status else now
    return Condition(type=type_, status=status, reason=reason, message=message,
                     last_transition_time=since, observed_generation=generation)


def make_status(obs: Observation, previous_conditions: list[dict[str, Any]], now: dt.datetime,
                previous_status: dict[str, Any] | None = None) -> AgentObservabilityStatus:
    stamp = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    previous = {c["type"]: c for c in previous_conditions if "type" in c}

    def cond(type_: str, ok: bool, reason: str, message: str = "") -> Condition:
        return _condition(type_, ok, reason, message, obs.generation, previous, stamp)

    if obs.paused:
        paused = [
            cond("Ready", previous.get("Ready", {}).get("status") == "True", "Paused",
                 "spec.paused is true: children are left as they are"),
            cond("Progressing", False, "Paused", "reconciliation is paused"),
            cond("Degraded", False, "Paused"),
        ]
        carried = [Condition.model_validate(c) for t, c in previous.items()
                   if t not in ("Ready", "Progressing", "Degraded")]
        # The last counts and endpoints stay with the conditions they match: `kubectl get -o wide`
        # of a paused stack still says what it runs and where, not blank columns.
        last = AgentObservabilityStatus.model_validate({k: v for k, v in (previous_status or {}).items()
                                                        if k in ("components", "componentsReady", "endpoints",
                                                                 "injection")})
        return last.model_copy(update={"observed_generation": obs.generation, "conditions": paused + carried})

    # Per component condition: every workload of the component ready, none failed to apply.
    by_condition: dict[str, list[str]] = {}
    components: dict[str, ComponentStatus] = {}
    for component, state in sorted(obs.workloads.items()):
        components[component] = ComponentStatus(ready=state.ready, desired=state.desired)
        cond_type = CONDITION_OF_COMPONENT.get(component, f"{component.title()}Ready")
        problems = by_condition.setdefault(cond_type, [])
        if not state.is_ready:
            cause = obs.causes.get(component)
            problems.append(f"{component}: {state.ready}/{state.desired} ready"
                            + (f" ({cause[1]})" if cause else ""))
    for component, (_reason, message) in sorted(obs.causes.items()):
        if component not in obs.workloads:  # a Job: no replicas to count, only a cause when it cannot run
            cond_type = CONDITION_OF_COMPONENT.get(component, f"{component.title()}Ready")
            by_condition.setdefault(cond_type, []).append(f"{component}: {message}")
    for component, message in obs.apply_errors.items():
        cond_type = CONDITION_OF_COMPONENT.get(component, f"{component.title()}Ready")
        by_condition.setdefault(cond_type, []).append(f"{component}: {message}")

    conditions: list[Condition] = []
    tls_problems = [] if obs.tls_ready else [obs.tls_message or "CA not available"]
    tls_problems += by_condition.pop("TLSReady", [])
    conditions.append(cond("TLSReady", not tls_problems, "CertificatesValid" if not tls_problems
                           else obs.tls_reason or "CertificatesNotReady", "; ".join(tls_problems)))
    for cond_type, problems in sorted(by_condition.items()):
        failed = any(c for c in obs.apply_errors if CONDITION_OF_COMPONENT.get(c) == cond_type)
        # The cluster's own word for why, when it gave one (ECK-style): Unschedulable, ImagePullBackOff...
        causes = [obs.causes[c][0] for c in sorted(obs.causes)
                  if CONDITION_OF_COMPONENT.get(c, f"{c.title()}Ready") == cond_type]
        reason = ("ApplyFailed" if failed else (causes[0] if causes else "PodsNotReady") if problems
                  else "AllReplicasReady")
        conditions.append(cond(cond_type, not problems, reason, "; ".join(problems)))

    ready_count = sum(1 for c in conditions if c.status == "True")
    component_count = len(conditions)
    degraded_reason, degraded_message = "AsExpected", ""
    if obs.invalid_spec is not None:
        degraded_reason, degraded_message = "InvalidSpec", obs.invalid_spec
    elif obs.apply_errors:
        degraded_reason = "ApplyFailed"
        degraded_message = "; ".join(f"{c}: {m}" for c, m in sorted(obs.apply_errors.items()))
    elif obs.rule_problems:
        degraded_reason = "InvalidExtraRules"
        degraded_message = ("left out of the rule file: "
                            + "; ".join(m for _, m in sorted(obs.rule_problems.items())))
    degraded = degraded_reason != "AsExpected"
    not_ready = [c.type for c in conditions if c.status != "True"]
    # After the counts: a component switched off is neither ready nor waited for.
    conditions += [cond(type_, False, "Disabled", message) for type_, message in sorted(obs.disabled.items())
                   if type_ not in by_condition]

    if degraded:
        ready = cond("Ready", False, degraded_reason, degraded_message)
    elif not_ready:
        ready = cond("Ready", False, "ComponentsNotReady", "waiting for " + ", ".join(not_ready))
    else:
        ready = cond("Ready", True, "AllComponentsReady", "every component is ready")
    progressing = cond("Progressing", bool(not_ready) and not degraded,
                       "RollingOut" if not_ready and not degraded else "Reconciled",
                       ", ".join(not_ready) if not degraded else "")
    summary = [ready, progressing, cond("Degraded", degraded, degraded_reason, degraded_message)]
    # Coverage is reported beside, not inside, readiness: agent pods are the user's workloads.
    if obs.excluded_namespace:
        conditions.append(cond("InjectionCoverage", False, "NamespaceExcluded",
                               f"the webhook never instruments pods in namespace {obs.excluded_namespace} "
                               "(the webhook configuration leaves it out): apply the resource in its agents' "
                               "namespace, or select theirs with spec.instrumentation.namespaceSelector"))
    elif obs.injection is not None:
        lacking = obs.injection.stale + obs.injection.missing
        message = (f"{lacking} of {obs.injection.selected} selected pods lack the current injection "
                   f"({obs.injection.missing} without, {obs.injection.stale} with earlier settings)") if lacking else ""
        reason = "AllPodsInstrumented" if not lacking else "PodsNotInstrumented"
        if obs.injected_elsewhere:
            # Overlapping selections: the webhook gave these pods to another resource; say which, or
            # this stack's owner sees no data and no reason.
            others = ", ".join(f"{n} by {key}" for key, n in sorted(obs.injected_elsewhere.items()))
            message = "; ".join(filter(None, [message, (
                f"selected pods instrumented by another resource: {others} (a resource in the pod's own "
                "namespace wins, then the first by namespace/name; the pod annotation agentobs.io/inject: "
                "<namespace>/<name> picks one)")]))
            reason = "PodsInstrumentedElsewhere" if not lacking else reason
        conditions.append(cond("InjectionCoverage", not lacking, reason, message))

    return AgentObservabilityStatus(
        observed_generation=obs.generation,
        injection=obs.injection,
        conditions=summary + conditions,
        components=components,
        components_ready=f"{ready_count}/{component_count}",
        endpoints=obs.endpoints,
    )
