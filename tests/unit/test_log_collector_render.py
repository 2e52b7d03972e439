"""The node collector of the log pipeline (Fluent Bit) as rendered: the parameters of both log
configurations against the pinned releases, routing of records to each resource's aggregator,
its TLS outputs, positions and buffers, privileges, and what it never holds.

The collector's routing script is run for real in LuaJIT (lupa), the interpreter family Fluent
Bit embeds; the configs are checked against parameter lists vendored from the pinned sources
(`tests/log_configs.py` says which). No Fluent Bit or Fluentd build can run here: that documents
arrive once each is asserted by the kind e2e suite.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
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
from agentobs.render import collector, fluentd
from agentobs.render.common import CONFIG_HASH_ANNOTATION

from log_pipeline import EXTERNAL, ROUTES, collector_objects, owner_of, pod_spec, route

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


# --- what is left after uninstall -------------------------------------------------------------------

def _delete_commands(notes: str) -> list[tuple[bool, set[str]]]:
    """(namespaced, kinds) of each `kubectl ... delete KINDS -l ...=agentobs-log-collector` line."""
    found = []
    for line in notes.splitlines():
        if "delete" in line and f"app.kubernetes.io/instance={collector.NAME}" in line:
            kinds = re.search(r"delete ([a-z,]+) -l", line)
            assert kinds, line
            found.append((" -n " in line, set(kinds.group(1).split(","))))
    return found


def test_the_uninstall_notes_delete_every_kind_of_collector_object() -> None:
    """The collector outlives an operator uninstalled before the stacks; the notes' commands are how
    it goes. One left out was the Secret of client keys every stack's Fluentd accepts."""
    text = (Path(__file__).resolve().parents[2] / "charts/agentobs/templates/NOTES.txt").read_text()
    listed = dict(_delete_commands(text))
    assert set(listed) == {True, False}, "a command for the release namespace and one cluster-wide"
    for obj in collector.render("agentobs", ROUTES):
        namespaced = "namespace" in obj["metadata"]
        assert obj["kind"].lower() in listed.get(namespaced, set()), (obj["kind"], listed)
