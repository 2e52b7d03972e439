"""The log pipeline as rendered: the cluster's node collector (Fluent Bit) and a resource's Fluentd
aggregator, their parameters against the pinned releases, routing, buffers, ids, dead letters,
TLS, Pod Security, and the index set-up that comes before the first document.

The collector's routing script is run for real in LuaJIT (lupa), the interpreter family Fluent
Bit embeds; the configs are checked against parameter lists vendored from the pinned sources
(`tests/log_configs.py` says which). No Fluent Bit or Fluentd build can run here: that documents
arrive once each is asserted by the kind e2e suite.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from log_configs import (
    PARAMETERS,
    fluent_bit_sections,
    fluentd_directives,
    unknown_fluent_bit_parameters,
    unknown_fluentd_parameters,
)
from lupa import luajit21

from agentobs.api.spec import AgentObservabilitySpec
from agentobs.pki import KeyPair
from agentobs.render import (
    Material,
    Owner,
    certificate_requests,
    collector,
    credential_requests,
    elasticsearch,
    fluentd,
    make_stack,
    retention,
)
from agentobs.render.common import CONFIG_HASH_ANNOTATION

Objects = dict[tuple[str, str], dict[str, Any]]
EXTERNAL = {"url": "https://es.example.org:9243/", "credentialsSecret": "team-es", "caSecret": "team-es-ca"}


def owner_of(spec: dict[str, Any], name: str = "demo", namespace: str = "agents",
             extra: dict[str, Any] | None = None) -> Owner:
    return Owner(name=name, namespace=namespace, uid=f"uid-{namespace}-{name}",
                 spec=AgentObservabilitySpec.model_validate(spec), extra=dict(extra or {}))


def material_for(owner: Owner) -> Material:
    def pair(name: str) -> KeyPair:
        return KeyPair(cert_pem=f"-----{name} CERT-----\n".encode(), key_pem=f"-----{name} KEY-----\n".encode())

    return Material(ca=pair("ca"), certs={c: pair(c) for c in certificate_requests(owner)},
                    credentials={r.suffix: {k: f"SECRET-{r.suffix}-{k}" for k in r.recipe}
                                 for r in credential_requests(owner)})


def render(spec: dict[str, Any], **kwargs: Any) -> Objects:
    owner = owner_of(spec, **kwargs)
    return {(o["kind"], o["metadata"]["name"]): o for o in make_stack(owner, material_for(owner))}


def route(namespace: str, name: str, namespaces: tuple[str, ...], labels: dict[str, str]) -> collector.Route:
    owner = owner_of({}, name=name, namespace=namespace)
    return collector.Route(owner_namespace=namespace, owner_name=name, namespaces=namespaces, pod_labels=labels,
                           host=fluentd.service_host(owner), port=fluentd.FORWARD_PORT,
                           ca_pem=f"-----CA of {namespace}/{name}-----\n",
                           client_cert_pem=f"-----client cert for {namespace}/{name}-----\n",
                           client_key_pem=f"-----client key for {namespace}/{name}-----\n")


ROUTES = [
    route("team-a", "obs", ("team-a",), {"agentobs.io/agent": "true"}),
    route("team-b", "obs", ("team-b", "shared"), {}),
    # Selects team-a's agents too, from another namespace: team-a's own resource wins there.
    route("aaa", "central", ("team-a", "shared"), {"tier": "gold"}),
]


def collector_objects(routes: list[collector.Route] = ROUTES) -> Objects:
    return {(o["kind"], o["metadata"]["name"]): o for o in collector.render("agentobs", routes)}


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"]["spec"])


# --- parameters of the pinned releases -------------------------------------------------------------

def test_the_vendored_parameter_lists_name_their_pinned_sources() -> None:
    assert PARAMETERS["fluent-bit"]["tag"] == f"v{collector.IMAGE_VERSION}"
    assert collector.IMAGE.endswith(f":{collector.IMAGE_VERSION}")
    releases = PARAMETERS["fluentd"]["releases"]
    assert releases["github.com/fluent/fluentd"]["tag"] == "v1.19.3"
    assert releases["github.com/uken/fluent-plugin-elasticsearch"]["tag"] == "v5.4.4"
    assert "v1.19.3-debian-elasticsearch8-1.1" in AgentObservabilitySpec().images.fluentd
    for section in PARAMETERS["fluent-bit"]["sections"].values():
        assert section["sources"] and section["parameters"]
    # Spot checks that the lists are what they claim: options the docs of these releases describe.
    fb = PARAMETERS["fluent-bit"]["sections"]
    assert {"multiline.parser", "db", "offset_key", "path_key"} <= set(fb["input:tail"]["parameters"])
    assert {"require_ack_response", "tls.verify", "tls.ca_file"} <= set(fb["output:forward"]["parameters"])
    genid = PARAMETERS["fluentd"]["sections"]["filter:elasticsearch_genid"]["parameters"]
    assert {"use_record_as_seed", "record_keys", "include_time_in_seed"} <= set(genid)


def test_collector_config_uses_only_fluent_bit_parameters() -> None:
    conf = collector.make_config("agentobs", ROUTES)
    assert [s for s, _ in fluent_bit_sections(conf)] == ["SERVICE", "INPUT", "FILTER", "FILTER", "FILTER",
                                                          "OUTPUT", "OUTPUT", "OUTPUT"]
    assert unknown_fluent_bit_parameters(conf) == []


@pytest.mark.parametrize("spec", [{}, {"elasticsearch": {"external": EXTERNAL}}])
def test_aggregator_config_uses_only_parameters_of_the_pinned_plugins(spec: dict[str, Any]) -> None:
    conf = fluentd.make_fluent_conf(owner_of(spec))
    types = {d.get("@type") for d in fluentd_directives(conf).walk()} - {None}
    assert types == {"forward", "prometheus", "prometheus_output_monitor", "elasticsearch_genid",
                     "record_transformer", "parser", "json", "copy", "relabel", "grep", "elasticsearch",
                     "file"}
    assert unknown_fluentd_parameters(conf) == []


def test_the_parameter_checks_catch_a_misspelling() -> None:
    conf = collector.make_config("agentobs", ROUTES)
    assert unknown_fluent_bit_parameters(conf.replace("Require_ack_response", "Require_ack")) == [
        "output:forward: Require_ack"] * len(ROUTES)
    aggregator = fluentd.make_fluent_conf(owner_of({}))
    assert unknown_fluentd_parameters(aggregator.replace("use_record_as_seed", "use_record_as_id")) == [
        "filter:elasticsearch_genid: use_record_as_id"]
    assert unknown_fluentd_parameters(aggregator.replace("retry_forever", "retry_always")) == [
        "buffer:file: retry_always"] * 3


# --- routing -----------------------------------------------------------------------------------------

def run_routes(routes: list[collector.Route], records: list[dict[str, Any]]) -> list[tuple[int, Any]]:
    """The generated script in LuaJIT: (return code, record as Python) per input record."""
    lua = luajit21.LuaRuntime(unpack_returned_tuples=True)
    lua.execute(collector.make_routes_lua(routes))
    route_fn = lua.globals().route

    def to_lua(value: Any) -> Any:
        return lua.table_from({k: to_lua(v) for k, v in value.items()}) if isinstance(value, dict) else value

    def from_lua(value: Any) -> Any:
        if luajit21.lua_type(value) == "table":
            return {k: from_lua(v) for k, v in value.items()}
        return value

    out = []
    for record in records:
        code, _, result = route_fn("kube.var.log.containers.x.log", 1700000000.5, to_lua(record))
        out.append((code, from_lua(result)))
    return out


def k8s(namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"log": "line", "stream": "stdout", "kubernetes": {"namespace_name": namespace, "pod_name": "p",
                                                              "labels": labels}}


def test_records_route_by_namespace_and_pod_labels() -> None:
    results = run_routes(ROUTES, [
        k8s("team-a", {"agentobs.io/agent": "true"}),
        k8s("team-b", {}),
        k8s("shared", {"tier": "gold"}),  # two routes select it; neither owns the namespace: by name
        k8s("shared", {}),  # only team-b/obs (no labels required)
        k8s("team-a", {"app": "web"}),  # not an agent of any route
        k8s("elsewhere", {"agentobs.io/agent": "true"}),
        {"log": "no metadata"},
    ])
    assert [(code, r.get(collector.ROUTE_KEY)) for code, r in results] == [
        (2, "team-a_obs"), (2, "team-b_obs"), (2, "aaa_central"), (2, "team-b_obs"),
        (-1, None), (-1, None), (-1, None)]


def test_a_resource_of_the_pods_own_namespace_wins() -> None:
    # aaa/central sorts first and selects this pod too; team-a/obs lives in the pod's namespace.
    [(code, record)] = run_routes(ROUTES, [k8s("team-a", {"agentobs.io/agent": "true", "tier": "gold"})])
    assert (code, record[collector.ROUTE_KEY]) == (2, "team-a_obs")
    [(code, record)] = run_routes(ROUTES[2:], [k8s("team-a", {"agentobs.io/agent": "true", "tier": "gold"})])
    assert (code, record[collector.ROUTE_KEY]) == (2, "aaa_central")


def test_label_keys_are_de_dotted_so_elasticsearch_maps_no_leaf_as_an_object() -> None:
    labels = {"app": "planner", "app.kubernetes.io/name": "planner", "agentobs.io/agent": "true"}
    [(code, record)] = run_routes(ROUTES, [k8s("team-a", labels)])
    assert code == 2
    assert record["kubernetes"]["labels"] == {"app": "planner", "app_kubernetes_io/name": "planner",
                                              "agentobs_io/agent": "true"}
    assert record["log"] == "line" and record["stream"] == "stdout"


def test_each_route_has_its_own_tls_output_to_its_aggregator() -> None:
    conf = collector.make_config("agentobs", ROUTES)
    sections = fluent_bit_sections(conf)
    [retag] = [dict(p) for s, p in sections if dict(p).get("Name") == "rewrite_tag"]
    key, pattern, tag, keep = retag["Rule"].split(" ")
    assert (key, keep) == (f"${collector.ROUTE_KEY}", "false")  # moved, not copied
    outputs = [dict(p) for s, p in sections if s == "OUTPUT"]
    assert [o["Alias"] for o in outputs] == ["aaa_central", "team-a_obs", "team-b_obs"]
    for out, r in zip(outputs, sorted(ROUTES, key=lambda r: r.id), strict=True):
        # The tag rewrite_tag gives this route's records is the one the output matches.
        assert re.fullmatch(pattern, r.id) and tag.replace("$1", r.id) == out["Match"]
        assert out["Name"] == "forward" and out["Host"] == f"{r.owner_name}-fluentd.{r.owner_namespace}.svc"
        assert out["Host"] in fluentd.certificates(owner_of({}, r.owner_name, r.owner_namespace))["fluentd"]
        assert (out["tls"], out["tls.verify"], out["tls.verify_hostname"]) == ("On", "On", "On")
        assert out["tls.vhost"] == out["Host"]
        assert out["Require_ack_response"] == "true" and out["Retry_Limit"] == "no_limits"
        assert out["tls.ca_file"] == f"{collector.CA_DIR}/{r.id}.crt"
        assert out["tls.crt_file"] == f"{collector.CLIENT_DIR}/{r.id}.crt"
        assert out["tls.key_file"] == f"{collector.CLIENT_DIR}/{r.id}.key"
    objects = collector_objects()
    clients = objects[("Secret", collector.CLIENTS_SECRET)]["data"]
    for r in ROUTES:  # the client certificate an output presents is the one its stack's CA issued
        assert base64.b64decode(clients[f"{r.id}.crt"]).decode() == r.client_cert_pem
        assert base64.b64decode(clients[f"{r.id}.key"]).decode() == r.client_key_pem
    mounts = {m["name"]: m["mountPath"] for m in pod_spec(objects[("DaemonSet", collector.NAME)])["containers"][0][
        "volumeMounts"]}
    assert mounts["clients"] == collector.CLIENT_DIR
    data = objects[("ConfigMap", collector.NAME)]["data"]
    items = pod_spec(objects[("DaemonSet", collector.NAME)])["volumes"][2]["configMap"]["items"]
    for r in ROUTES:  # the CA file an output names is that route's CA, mounted where it looks
        assert data[f"ca-{r.id}.crt"] == r.ca_pem
        assert {"key": f"ca-{r.id}.crt", "path": f"ca/{r.id}.crt"} in items


def test_collector_reads_only_the_routed_namespaces_and_joins_partial_lines() -> None:
    [tail] = [dict(p) for s, p in fluent_bit_sections(collector.make_config("agentobs", ROUTES)) if s == "INPUT"]
    assert tail["Path"] == ",".join(f"/var/log/containers/*_{ns}_*.log" for ns in ("shared", "team-a", "team-b"))
    assert tail["multiline.parser"] == "cri"
    assert tail["Exclude_Path"] == "/var/log/containers/agentobs-log-collector-*_agentobs_*.log"
    assert (tail["Path_Key"], tail["Offset_Key"]) == ("file", "offset")  # seeds of the document id


def test_collector_positions_and_buffers_are_on_the_node() -> None:
    conf = dict(fluent_bit_sections(collector.make_config("agentobs", ROUTES))[0][1])
    sections = [dict(p) for _, p in fluent_bit_sections(collector.make_config("agentobs", ROUTES))]
    assert conf["storage.path"].startswith(collector.STATE_DIR + "/") and conf["storage.sync"] == "full"
    tail = sections[1]
    assert tail["DB"].startswith(collector.STATE_DIR + "/") and tail["storage.type"] == "filesystem"
    assert sections[4]["Emitter_Storage.type"] == "filesystem"
    pod = pod_spec(collector_objects()[("DaemonSet", collector.NAME)])
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["state"]["hostPath"] == {"path": collector.STATE_DIR, "type": "DirectoryOrCreate"}
    assert not [v for v in pod["volumes"] if "emptyDir" in v]
    assert {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}[collector.STATE_DIR] == "state"


def test_collector_runs_with_the_least_privilege_that_reads_cri_o_files() -> None:
    objects = collector_objects()
    ds = objects[("DaemonSet", collector.NAME)]
    pod = pod_spec(ds)
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    [container] = pod["containers"]
    sc = container["securityContext"]
    assert sc["runAsUser"] == 0 and sc["capabilities"] == {"drop": ["ALL"], "add": ["DAC_READ_SEARCH"]}
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # Probed on an endpoint that answers whatever the outputs do (one stack's outage restarts nothing).
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/v1/uptime"
    assert "Health_Check" not in collector.make_config("agentobs", ROUTES)
    host_paths = {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert host_paths == {"/var/log", collector.STATE_DIR}
    assert next(m for m in container["volumeMounts"] if m["name"] == "varlog")["readOnly"] is True
    assert ds["metadata"]["namespace"] == "agentobs"
    rules = objects[("ClusterRole", f"{collector.NAME}-agentobs")]["rules"]
    assert rules == [{"apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": ["get", "list", "watch"]}]


def test_collector_never_sees_an_elasticsearch_credential() -> None:
    objects = collector.render("agentobs", ROUTES)
    text = repr(objects)
    assert "secretKeyRef" not in text and "elasticsearch" not in text.lower()
    # Its one Secret holds the client certificates of the routes, and nothing else.
    [secret] = [o for o in objects if o["kind"] == "Secret"]
    assert set(secret["data"]) == {f"{r.id}.{ext}" for r in ROUTES for ext in ("crt", "key")}
    for obj in objects:
        assert "agentobs.io/owner" not in obj["metadata"]["labels"]  # no one resource's pruning finds it


def test_routes_roll_the_collector_and_no_route_means_no_collector() -> None:
    def config_hash(routes: list[collector.Route]) -> str:
        ds = collector_objects(routes)[("DaemonSet", collector.NAME)]
        return str(ds["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION])

    assert config_hash(ROUTES) != config_hash(ROUTES[:2]) == config_hash(list(reversed(ROUTES[:2])))
    assert collector.render("agentobs", []) == []
    with pytest.raises(ValueError, match="not a safe tag"):
        collector.render("agentobs", [route("Bad NS", "x", ("a",), {})])


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
