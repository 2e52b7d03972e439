"""The injection contract as a pure function: selection, mutation, idempotence."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agentobs.admission.injection import (
    ConfigIndex,
    InjectionConfig,
    choose,
    inject,
    is_current,
    make_config,
    patch_ops,
    service_name,
)
from agentobs.api.spec import AgentObservabilitySpec
from agentobs.render.common import Owner


def _config(namespace: str = "agents", name: str = "obs", **spec: Any) -> InjectionConfig:
    owner = Owner(name=name, namespace=namespace, uid="u", spec=AgentObservabilitySpec.model_validate(spec))
    config = make_config(owner)
    assert config is not None
    return config


def _pod(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
         containers: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "agents", "labels": labels or {"agentobs.io/agent": "true"},
                         "annotations": annotations or {}},
            "spec": {"containers": containers or [{"name": "agent", "image": "agent:1"}], **spec}}


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_mutation_follows_the_contract() -> None:
    config = _config(instrumentation={"samplingRatio": 0.25, "resourceAttributes": {"team": "search"}})
    pod = inject(_pod(labels={"agentobs.io/agent": "true", "app.kubernetes.io/name": "planner",
                              "agentobs.io/agent-id": "a-7"}), config)
    env = _env(pod["spec"]["containers"][0])
    assert env["OTEL_SERVICE_NAME"] == "planner"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://obs-jaeger-collector.agents.svc:4317"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert env["OTEL_EXPORTER_OTLP_CERTIFICATE"] == "/var/run/agentobs/ca/ca.crt"
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio" and env["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    assert env["OTEL_SEMCONV_STABILITY_OPT_IN"] == "gen_ai_latest_experimental"
    assert env["AGENTOBS_METRICS_PORT"] == "9464"
    attrs = env["OTEL_RESOURCE_ATTRIBUTES"]
    for part in ("k8s.namespace.name=$(AGENTOBS_POD_NAMESPACE)", "k8s.pod.name=$(AGENTOBS_POD_NAME)",
                 "k8s.node.name=$(AGENTOBS_NODE_NAME)", "gen_ai.agent.id=a-7", "$(AGENTOBS_EXTRA_RESOURCE_ATTRIBUTES)"):
        assert part in attrs
    assert env["AGENTOBS_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    names = [e["name"] for e in pod["spec"]["containers"][0]["env"]]
    assert names.index("AGENTOBS_POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES"), "$(VAR) needs VAR first"
    mount = next(m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == "agentobs-ca")
    assert mount["readOnly"] is True
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "agentobs-ca")
    assert volume["configMap"]["name"] == "obs-ca-bundle" and volume["configMap"]["optional"] is True
    # The audit key: the resource's generated Secret, mounted read-only, optional (never blocks a pod).
    assert env["AGENTOBS_AUDIT_KEY_FILE"] == "/var/run/agentobs/audit-key/key"
    key_mount = next(m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == "agentobs-audit-key")
    assert key_mount == {"name": "agentobs-audit-key", "mountPath": "/var/run/agentobs/audit-key", "readOnly": True}
    key_volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "agentobs-audit-key")
    assert key_volume["secret"]["secretName"] == "obs-audit-key" and key_volume["secret"]["optional"] is True
    # A `previous-key` entry the user adds to rotate the key lands beside `key`, where the SDK
    # looks for it (agentobs_sdk.audit.keys.previous_key_for).
    assert key_volume["secret"]["items"] == [{"key": "key", "path": "key"},
                                             {"key": "previous-key", "path": "previous-key"}]
    ann = pod["metadata"]["annotations"]
    assert ann["agentobs.io/injected"] == "agents/obs" and ann["prometheus.io/port"] == "9464"
    assert ann["prometheus.io/scrape"] == "true" and is_current(pod, config)
    assert pod["metadata"]["labels"]["agentobs.io/logs"] == "true"


def test_second_pass_changes_nothing() -> None:
    config = _config()
    once = inject(_pod(initContainers=[{"name": "init", "image": "i"}]), config)
    assert inject(copy.deepcopy(once), config) == once
    assert patch_ops(once, config) == []


def test_never_overrides_what_the_pod_sets() -> None:
    containers = [{"name": "agent", "image": "a", "env": [{"name": "OTEL_SERVICE_NAME", "value": "mine"},
                                                          {"name": "OTEL_TRACES_SAMPLER", "value": "always_on"}]}]
    pod = inject(_pod(containers=containers, annotations={"prometheus.io/port": "8000"}), _config())
    env = _env(pod["spec"]["containers"][0])
    assert env["OTEL_SERVICE_NAME"] == "mine" and env["OTEL_TRACES_SAMPLER"] == "always_on"
    assert [e["name"] for e in pod["spec"]["containers"][0]["env"]].count("OTEL_SERVICE_NAME") == 1
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8000"


def test_init_and_several_containers_and_named_containers() -> None:
    config = _config()
    containers = [{"name": "agent", "image": "a"}, {"name": "sidecar", "image": "s"}]
    pod = inject(_pod(containers=containers, initContainers=[{"name": "init", "image": "i"}]), config)
    assert all("env" in c for c in pod["spec"]["containers"] + pod["spec"]["initContainers"])
    only = inject(_pod(containers=containers, annotations={"agentobs.io/container-names": "agent"}), config)
    assert "env" in only["spec"]["containers"][0] and "env" not in only["spec"]["containers"][1]


@pytest.mark.parametrize(("pod", "expected"), [
    (_pod(annotations={"resource.opentelemetry.io/service.name": "svc"}), "svc"),
    (_pod(labels={"app.kubernetes.io/name": "lbl"}), "lbl"),
    ({"metadata": {"labels": {"pod-template-hash": "abc12"}, "ownerReferences": [
        {"kind": "ReplicaSet", "name": "planner-abc12", "controller": True}]}, "spec": {}}, "planner"),
    ({"metadata": {"ownerReferences": [{"kind": "StatefulSet", "name": "memory", "controller": True}]}}, "memory"),
    (_pod(labels={}), "agent"),
])
def test_service_name_precedence(pod: dict[str, Any], expected: str) -> None:
    assert service_name(pod, "agent") == expected


def test_selection_opt_out_pick_and_determinism() -> None:
    local, other = _config("agents", "b-local"), _config("agents", "a-local")
    remote = _config("platform", "central", instrumentation={"namespaceSelector": {"matchLabels": {"team": "x"}}})
    configs = [remote, local, other]
    assert choose(_pod(), "agents", {"team": "x"}, configs) is other  # own namespace first, then by name
    assert choose(_pod(), "elsewhere", {"team": "x"}, configs) is remote
    assert choose(_pod(), "elsewhere", {}, configs) is None
    assert choose(_pod(annotations={"agentobs.io/inject": "false"}), "agents", {}, configs) is None
    assert choose(_pod(annotations={"agentobs.io/inject": "platform/central"}), "agents", {}, configs) is remote
    assert choose(_pod(labels={"app": "web"}), "agents", {}, configs) is None


def test_the_index_offers_a_pod_only_the_configs_that_can_apply_and_chooses_as_a_scan_would() -> None:
    """Per namespace, plus those selecting namespaces by label, plus the one a pod names."""
    teams = [_config(f"team-{i}", f"s{j}") for i in range(30) for j in range(2)]
    remote = _config("platform", "central", instrumentation={"namespaceSelector": {"matchLabels": {"team": "x"}}})
    index = ConfigIndex()
    for config in [*teams, remote]:
        index.put(config)
    index.put(_config("team-3", "s0", instrumentation={"samplingRatio": 0.5}))  # replaced, not doubled
    index.pop("team-4/s1")
    index.pop("nowhere/none")
    assert len(index) == 60
    everything = list(index)
    offered = index.candidates(_pod(), "team-7")
    assert {c.key for c in offered} == {"team-7/s0", "team-7/s1", "platform/central"}
    named = _pod(annotations={"agentobs.io/inject": "team-9/s1"})
    assert "team-9/s1" in {c.key for c in index.candidates(named, "team-7")}
    for pod in (_pod(), named, _pod(annotations={"agentobs.io/inject": "false"}), _pod(labels={"app": "web"})):
        for namespace in ("team-3", "team-4", "team-7", "elsewhere"):
            for labels in ({}, {"team": "x"}):
                assert (choose(pod, namespace, labels, index.candidates(pod, namespace))
                        is choose(pod, namespace, labels, everything))
    assert choose(_pod(), "team-3", {}, index.candidates(_pod(), "team-3")).digest == (
        _config("team-3", "s0", instrumentation={"samplingRatio": 0.5}).digest)
    assert {c.key for c in index.candidates(_pod(), "team-4")} == {"team-4/s0", "platform/central"}
    # A config that starts or stops selecting namespaces by label moves, and is never offered twice.
    index.put(_config("team-5", "s0", instrumentation={"namespaceSelector": {"matchLabels": {"team": "y"}}}))
    assert [c.key for c in index.candidates(_pod(), "team-5")].count("team-5/s0") == 1
    assert "team-5/s0" in {c.key for c in index.candidates(_pod(), "team-6")}
    index.put(_config("team-5", "s0"))
    assert "team-5/s0" not in {c.key for c in index.candidates(_pod(), "team-6")}
    assert [c.key for c in index.candidates(_pod(), "team-5")].count("team-5/s0") == 1


def test_digest_follows_settings_and_disabled_injects_nothing() -> None:
    assert _config().digest == _config().digest
    assert _config().digest != _config(instrumentation={"samplingRatio": 0.5}).digest
    owner = Owner(name="o", namespace="n", uid="u",
                  spec=AgentObservabilitySpec.model_validate({"instrumentation": {"enabled": False}}))
    assert make_config(owner) is None


def test_the_audit_key_is_a_generated_credential_of_the_resource() -> None:
    from agentobs.render import credential_requests

    owner = Owner(name="obs", namespace="agents", uid="u", spec=AgentObservabilitySpec.model_validate({}))
    (request,) = [r for r in credential_requests(owner) if r.suffix == "audit-key"]
    assert dict(request.recipe) == {"key": "random"}  # made once by material.py, never overwritten
    # `previous-key` is not generated: the user puts the old key there to rotate, under the name
    # the SDK reads beside the key file.
    from agentobs.render import audit_key
    from agentobs_sdk.audit.keys import PREVIOUS_KEY_NAME

    assert audit_key.PREVIOUS_KEY == PREVIOUS_KEY_NAME == "previous-key"
    off = Owner(name="obs", namespace="agents", uid="u",
                spec=AgentObservabilitySpec.model_validate({"instrumentation": {"enabled": False}}))
    assert not [r for r in credential_requests(off) if r.suffix == "audit-key"]
