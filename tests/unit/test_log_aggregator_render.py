"""A resource's Fluentd aggregator as rendered: document ids, file buffers, the dead-letter route,
TLS on its forward input, the credentials only it holds, who may reach it; Pod Security
`restricted` for every workload of a stack (the collector the one exception); and the index
set-up that comes before the first document.

No Fluentd build can run here: that documents arrive is asserted by the kind e2e suite.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from log_configs import fluentd_directives

from agentobs.render import certificate_requests, collector, elasticsearch, fluentd, retention

from log_pipeline import EXTERNAL, collector_objects, owner_of, pod_spec, render

# --- the aggregator ----------------------------------------------------------------------------------

def test_document_ids_are_seeded_by_the_line_and_where_it_was_read() -> None:
    root = fluentd_directives(fluentd.make_fluent_conf(owner_of({})))
    filters = [d for d in root.children if d.name == "filter"]
    genid = filters[0]  # before anything rewrites the record
    assert genid.get("@type") == "elasticsearch_genid"
    assert genid.get("use_record_as_seed") == "true" and genid.get("hash_type") == "sha256"
    assert set((genid.get("record_keys") or "").split(",")) == {"file", "offset", "time", "stream", "log"}
    assert genid.get("include_time_in_seed") == "true"
    outputs = [d for d in root.walk() if d.get("@type") == "elasticsearch"]
    assert len(outputs) == 2
    for out in outputs:
        assert out.get("id_key") == genid.get("hash_id_key") == "_hash"
        assert out.get("remove_keys") == "_hash" and out.get("write_operation") == "create"


def test_buffers_are_files_on_the_replicas_volume_and_retry_forever() -> None:
    objects = render({})
    root = fluentd_directives(objects[("ConfigMap", "demo-fluentd")]["data"]["fluent.conf"])
    buffers = [d for d in root.walk() if d.name == "buffer"]
    assert len(buffers) == 3  # logs, audit, dead letters
    for buffer in buffers:
        assert buffer.get("@type") == "file" and (buffer.get("path") or "").startswith(fluentd.STATE_DIR + "/")
        assert buffer.get("retry_forever") == "true" and buffer.get("overflow_action") == "throw_exception"
        assert buffer.get("total_limit_size") and buffer.get("flush_at_shutdown") == "true"
    sts = objects[("StatefulSet", "demo-fluentd")]
    mounts = {m["mountPath"]: m["name"] for m in pod_spec(sts)["containers"][0]["volumeMounts"]}
    [claim] = sts["spec"]["volumeClaimTemplates"]
    assert mounts[fluentd.STATE_DIR] == claim["metadata"]["name"] == "buffer"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert sts["spec"]["replicas"] == 2 and ("PodDisruptionBudget", "demo-fluentd") in objects
    single = render({"logging": {"replicas": 1, "storage": {"size": "20Gi"}}})
    assert ("PodDisruptionBudget", "demo-fluentd") not in single
    assert single[("StatefulSet", "demo-fluentd")]["spec"]["volumeClaimTemplates"][0]["spec"]["resources"][
        "requests"]["storage"] == "20Gi"


def _limits_mib(spec: dict[str, object]) -> list[int]:
    root = fluentd_directives(fluentd.make_fluent_conf(owner_of(spec)))
    sizes = [d.get("total_limit_size") or "" for d in root.walk() if d.name == "buffer"]
    assert all(re.fullmatch(r"[0-9]+[MG]B", size) for size in sizes), sizes  # Fluentd reads them as MiB, GiB
    return [int(size[:-2]) * (1024 if size.endswith("GB") else 1) for size in sizes]


@pytest.mark.parametrize("size, mib", [("1Gi", 1024), ("5Gi", 5 * 1024), ("20Gi", 20 * 1024), ("500Gi", 500 * 1024)])
def test_the_buffers_share_the_volume_they_live_on(size: str, mib: int) -> None:
    """A fixed buffer size would fill a small volume before Fluentd saw its buffer full (and then
    fail writes instead of pushing back), and leave most of a large one unused."""
    limits = _limits_mib({"logging": {"storage": {"size": size}}})
    assert len(limits) == 3
    assert 0.6 * mib <= sum(limits) <= 0.7 * mib, (size, limits)
    logs, audit, dead_letter = limits
    assert logs > audit > dead_letter


def test_the_default_volume_keeps_the_buffer_sizes_it_always_had() -> None:
    assert _limits_mib({}) == [2048, 1024, 512]  # 2GB, 1GB, 512MB in Fluentd's units
    conf = fluentd.make_fluent_conf(owner_of({}))
    assert [line.split()[-1] for line in conf.splitlines() if "total_limit_size" in line] == ["2GB", "1GB", "512MB"]


def test_refused_records_go_to_a_counted_dead_letter_route() -> None:
    root = fluentd_directives(fluentd.make_fluent_conf(owner_of({})))
    [error] = [d for d in root.children if d.name == "label" and d.arg == "@ERROR"]
    [count] = [d for d in error.children if d.get("@type") == "prometheus"]
    [metric] = count.children
    assert (metric.get("name"), metric.get("type")) == (fluentd.DEAD_LETTER_METRIC, "counter")
    [sink] = [d for d in error.children if d.get("@type") == "file"]
    assert (sink.get("path") or "").startswith(f"{fluentd.STATE_DIR}/dead-letter/")
    for out in [d for d in root.walk() if d.get("@type") == "elasticsearch"]:
        assert out.get("log_es_400_reason") == "true"


def test_the_forward_input_serves_tls_with_the_stacks_certificate() -> None:
    objects = render({})
    root = fluentd_directives(objects[("ConfigMap", "demo-fluentd")]["data"]["fluent.conf"])
    [forward] = [d for d in root.children if d.get("@type") == "forward"]
    [transport] = forward.children
    assert transport.arg == "tls" and forward.get("port") == str(fluentd.FORWARD_PORT)
    # Mutual TLS: a sender must present a certificate of the stack's CA (the collector's).
    assert transport.get("client_cert_auth") == "true"
    assert transport.get("ca_path") == f"{fluentd.TLS_DIR}/ca.crt"
    assert "ca.crt" in objects[("Secret", "demo-fluentd-tls")]["data"]
    assert objects[("Secret", "demo-log-collector-tls")]["data"]["tls.crt"], "the collector's client certificate"
    pod = pod_spec(objects[("StatefulSet", "demo-fluentd")])
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert transport.get("cert_path") == f"{mounts['tls']}/tls.crt"
    assert transport.get("private_key_path") == f"{mounts['tls']}/tls.key"
    tls = next(v for v in pod["volumes"] if v["name"] == "tls")
    assert tls["secret"]["secretName"] == "demo-fluentd-tls" and ("Secret", "demo-fluentd-tls") in objects
    assert "demo-fluentd.agents.svc" in certificate_requests(owner_of({}))["fluentd"]


def test_only_the_aggregator_holds_the_stacks_fluentd_credentials() -> None:
    objects = render({})
    sts = objects[("StatefulSet", "demo-fluentd")]
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for c in pod_spec(sts)["containers"] + pod_spec(sts)[
        "initContainers"] for e in c["env"] if "valueFrom" in e}
    assert refs == {"demo-elasticsearch-fluentd"}
    assert pod_spec(sts)["automountServiceAccountToken"] is False


def test_the_aggregator_admits_forward_only_from_the_collector() -> None:
    policy = render({}, extra={collector.NAMESPACE_EXTRA: "agentobs"})[("NetworkPolicy", "demo-fluentd")]
    forward, metrics = policy["spec"]["ingress"]
    assert forward["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "agentobs"}},
                                "podSelector": {"matchLabels": collector.selector_labels()}}]
    assert forward["ports"] == [{"port": fluentd.FORWARD_PORT, "protocol": "TCP"}]
    assert metrics["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "prometheus"


# --- Pod Security ------------------------------------------------------------------------------------

ALLOWED_VOLUMES = {"configMap", "secret", "emptyDir", "persistentVolumeClaim", "projected", "downwardAPI",
                   "csi", "ephemeral"}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The checks of Pod Security `restricted` (Kubernetes v1.35 policy) on one pod spec."""
    out = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            out.append(flag)
    out += [f"volume {v['name']}" for v in pod.get("volumes", []) if not set(v) - {"name"} <= ALLOWED_VOLUMES]
    pod_sc = pod.get("securityContext") or {}
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation")
        caps = sc.get("capabilities") or {}
        if "ALL" not in caps.get("drop", []) or set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: capabilities")
        if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) or sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            out.append(f"{name}: runAsNonRoot")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile")) or {}
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            out.append(f"{name}: hostPort")
    return out


@pytest.mark.parametrize("spec", [{}, {"elasticsearch": {"external": EXTERNAL}}])
def test_every_workload_of_a_stack_is_admitted_by_restricted(spec: dict[str, Any]) -> None:
    objects = render(spec)
    pods = {k: pod_spec(o) for k, o in objects.items()
            if o["kind"] in ("StatefulSet", "Deployment", "DaemonSet", "Job", "CronJob")}
    assert ("StatefulSet", "demo-fluentd") in pods and any(k[0] == "Job" for k in pods)
    assert {k: restricted_violations(p) for k, p in pods.items() if restricted_violations(p)} == {}


def test_the_collector_is_the_one_exception_and_only_by_what_reading_node_files_takes() -> None:
    pod = pod_spec(collector_objects()[("DaemonSet", collector.NAME)])
    assert sorted(restricted_violations(pod)) == ["fluent-bit: capabilities", "fluent-bit: runAsNonRoot",
                                                  "volume state", "volume varlog"]


# --- index set-up before the first document ----------------------------------------------------------

def test_templates_and_policies_are_put_by_a_job_before_fluentd_writes() -> None:
    owner = owner_of({})
    objects = render({})
    configmap = objects[("ConfigMap", "demo-es-retention")]
    [job] = [o for k, o in objects.items() if k[0] == "Job"]
    assert job["metadata"]["name"] == retention.setup_job_name(owner, configmap)
    assert pod_spec(job) == pod_spec(objects[("CronJob", "demo-es-retention")])  # the same run
    script = configmap["data"]["apply.sh"]
    assert script.index('"_index_template/$policy"') < script.index('"_ilm/policy/$policy"')
    expected = retention.templates_hash(owner)
    for family in retention.AGENT_FAMILIES:
        policy = retention.make_policy(owner, family)
        assert policy["policy"]["_meta"]["templates"] == expected
    [wait] = pod_spec(objects[("StatefulSet", "demo-fluentd")])["initContainers"]
    env = {e["name"]: e.get("value") for e in wait["env"]}
    assert env["TEMPLATES"] == expected
    assert env["POLICIES"].split() == [retention.policy_name(owner, f) for f in retention.AGENT_FAMILIES]
    assert "read_ilm" in elasticsearch.make_roles(owner)[elasticsearch.ROLE_OF_CLIENT["fluentd"]]["cluster"]


def test_a_retention_change_is_a_new_job_and_does_not_roll_fluentd() -> None:
    def names(spec: dict[str, Any]) -> tuple[str, str]:
        objects = render(spec)
        [job] = [k[1] for k in objects if k[0] == "Job"]
        sts = objects[("StatefulSet", "demo-fluentd")]
        return job, repr(pod_spec(sts)["initContainers"])

    before, after = names({}), names({"logging": {"retentionDays": 30}})
    assert before[0] != after[0] and before[1] == after[1]
    # Switching to an external cluster changes the Job's pod (URL, credentials): a new Job too, as
    # a Job's pod template is immutable and an apply of the old name would be refused.
    assert names({"elasticsearch": {"external": EXTERNAL}})[0] != before[0]


def test_label_maps_are_flattened_in_the_templates() -> None:
    template = retention.make_template(owner_of({}), "logs")
    kubernetes = template["template"]["mappings"]["properties"]["kubernetes"]["properties"]
    assert kubernetes["labels"] == {"type": "flattened"}
