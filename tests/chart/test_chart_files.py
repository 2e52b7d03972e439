"""The chart's files, without a cluster: the values schema (what it refuses, naming the value, and
that it describes every value), the files `make generate` writes, and the operator image the
chart runs (its entrypoint, user and pinned base).
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import jsonschema
import pytest
import yaml

from chart_support import CHART, Render, Run, container, one, set_args
from cluster_support import ROOT

# ---- values schema ---------------------------------------------------------------------------

REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("spec-field-type", {"stack.spec.prometheus.replicas": "two"}, "/stack/spec/prometheus/replicas"),
    ("spec-unknown-field", {"stack.spec.prometheus.replica": 3}, "/stack/spec/prometheus"),
    ("spec-below-minimum", {"stack.spec.prometheus.replicas": 0}, "/stack/spec/prometheus/replicas"),
    ("negative-replicas", {"operator.replicas": -1}, "/operator/replicas"),
    ("unknown-value", {"operator.replica": 2}, "/operator"),
    ("log-level", {"operator.logLevel": "LOUD"}, "/operator/logLevel"),
    ("plain-http-webhook", {"webhook.url": "http://127.0.0.1:9443/mutate-pods"}, "/webhook/url"),
    ("port-range", {"operator.ports.webhook": 70000}, "/operator/ports/webhook"),
    ("pull-policy", {"operator.image.pullPolicy": "Sometimes"}, "/operator/image/pullPolicy"),
    ("watch-namespace-type", {"operator.watchNamespaces": "team-a"}, "/operator/watchNamespaces"),
    ("no-workers", {"operator.workers": 0}, "/operator/workers"),
    ("zero-resync-rate", {"operator.resyncRate": 0}, "/operator/resyncRate"),
    ("no-malloc-arenas", {"operator.mallocArenas": 0}, "/operator/mallocArenas"),
    ("stack-namespace-not-a-name", {"stack.namespace": "Team_Agents"}, "/stack/namespace"),
    ("collector-image-with-space", {"logCollector.image": "fluent/fluent-bit: 4"}, "/logCollector/image"),
    ("image-tag-with-colon", {"operator.image.tag": "0.1.0:x"}, "/operator/image/tag"),
    ("stack-name-too-long", {"stack.name": "customer-support-agents-production-stack"}, "/stack/name"),
    # Labels and annotations the API server would refuse on the rendered object, named here.
    ("pod-label-key-with-space", {"operator.podLabels": {"team name": "obs"}}, "/operator/podLabels"),
    ("common-label-value-with-space", {"commonLabels": {"team": "platform team"}}, "/commonLabels/team"),
    ("label-value-too-long", {"metrics.serviceMonitor.labels": {"release": "p" * 64}},
     "/metrics/serviceMonitor/labels/release"),
    ("node-selector-key-with-slashes", {"operator.nodeSelector": {"a/b/c": "x"}}, "/operator/nodeSelector"),
    ("annotation-key-with-colon", {"operator.podAnnotations": {"team:owner": "obs"}}, "/operator/podAnnotations"),
]


@pytest.mark.parametrize(("case", "values", "path"), REFUSED, ids=[c[0] for c in REFUSED])
def test_schema_refuses_bad_values_naming_them(helm: Run, case: str, values: dict[str, Any], path: str) -> None:
    result = helm("template", "agentobs", str(CHART), *set_args(values), check=False)
    assert result.returncode != 0, f"{case}: accepted"
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert f"at '{path}'" in result.stderr, result.stderr


def test_schema_accepts_documented_non_defaults(render: Render) -> None:
    """The refusals above come from the values, not from a schema refusing everything."""
    digest = "sha256:" + "a" * 64
    docs = render({"operator.replicas": 3, "operator.logLevel": "DEBUG", "operator.watchNamespaces": ["a", "b"],
                   "operator.resources.limits": {"cpu": 2, "memory": "1Gi"}, "operator.image.digest": digest,
                   "stack.enabled": True, "stack.spec": {"prometheus": {"replicas": 2}, "paused": True},
                   "webhook.url": "https://10.0.0.1:9443/mutate-pods", "metrics.serviceMonitor.interval": "1m30s"})
    assert container(docs)["image"] == f"ghcr.io/agentobs/agentobs-operator@{digest}"


def _schema_errors(values: dict[str, Any]) -> list[str]:
    """Where the chart's schema (draft-07, as helm reads it) refuses these values merged over the
    defaults, as /-paths; no helm needed."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    merged = yaml.safe_load((CHART / "values.yaml").read_text())
    for dotted, value in values.items():
        *parents, last = dotted.split(".")
        node = merged
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    validator = jsonschema.Draft7Validator(schema)
    return ["/" + "/".join(str(p) for p in e.absolute_path) for e in validator.iter_errors(merged)]


@pytest.mark.parametrize(("case", "values", "path"), REFUSED, ids=[c[0] for c in REFUSED])
def test_schema_file_refuses_bad_values_naming_them(case: str, values: dict[str, Any], path: str) -> None:
    errors = _schema_errors(values)
    assert any(e.startswith(path) for e in errors), (case, errors)


def test_schema_file_accepts_the_defaults_and_sensible_settings() -> None:
    assert _schema_errors({}) == []
    assert _schema_errors({"operator.resyncRate": 0.5, "operator.workers": 8, "stack.namespace": "team-a",
                           "logCollector.image": "registry.example.com:5000/fluent/fluent-bit:4.0.3",
                           "operator.image.tag": "0.2.0-rc.1",
                           "operator.podLabels": {"example.com/team": "obs", "tier": ""},
                           "operator.podAnnotations": {"example.com/owner": "Platform team, #obs"},
                           "operator.nodeSelector": {"kubernetes.io/os": "linux"},
                           "operator.serviceAccount.annotations": {
                               "iam.gke.io/gcp-service-account": "agentobs@p.iam.gserviceaccount.com"}}) == []


def _leaves(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, schema)]
    for name, sub in (schema.get("properties") or {}).items():
        out += _leaves(sub, f"{path}.{name}".lstrip("."))
    return out


def test_no_map_value_is_closed_to_every_key() -> None:
    """A map value (labels, annotations) whose schema came from its empty default allowed no key:
    metrics.prometheusRule.labels refused whatever a user put there."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    closed = [p for p, s in _leaves(schema) if s.get("type") == "object" and s.get("additionalProperties") is False
              and not s.get("properties") and not s.get("patternProperties")]
    assert not closed, closed
    assert _schema_errors({"metrics.prometheusRule.labels": {"release": "prom"}}) == []


def test_the_generator_wants_a_schema_for_an_empty_map() -> None:
    with pytest.raises(ValueError, match="empty map"):
        _generator()._schema_of("extraLabels", {}, {"extraLabels": "Labels."}, set())


def test_every_value_is_described_in_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(schema["properties"]) - {"global"} == set(values)
    undescribed = [p for p, s in _leaves(schema) if p and not s.get("description")]
    assert not undescribed, undescribed
    spec = schema["properties"]["stack"]["properties"]["spec"]
    assert spec["properties"]["prometheus"]["additionalProperties"] is False, "typos in stack.spec are refused"


# ---- generated files -------------------------------------------------------------------------

def _generator() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("agentobs_generate", ROOT / "hack" / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_chart_files_are_current() -> None:
    stale = [str(p.relative_to(ROOT)) for p, text in _generator().generated().items()
             if CHART in p.parents and (not p.exists() or p.read_text() != text)]
    assert not stale, f"run `make generate`: {stale}"


def test_descriptions_come_from_the_comment_right_above_each_value() -> None:
    text = ("# file header\n\n# The operator.\noperator:\n  # How many.\n  # Really.\n  replicas: 2\n"
            "  #\n  # not this one\n  image: x\n  # Summary.\n  #\n  #   example: 1\n  tag: ''\nbare: 1\n")
    assert _generator().value_descriptions(text) == {
        "operator": "The operator.", "operator.replicas": "How many. Really.", "operator.tag": "Summary."}


def test_chart_crds_are_the_top_level_crds() -> None:
    top = {p.name: p.read_bytes() for p in (ROOT / "crds").glob("*.yaml")}
    chart = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert top and set(chart) == set(top)
    for name, data in top.items():
        assert chart[name] == data, f"charts/agentobs/crds/{name} differs from crds/{name}: run `make generate`"


# ---- the image -------------------------------------------------------------------------------

def _final_stage(dockerfile: str) -> list[str]:
    lines = [ln.strip() for ln in dockerfile.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    starts = [i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")]
    assert len(starts) >= 2, "a multi-stage build: build the wheel, then install it"
    return lines[starts[-1]:]


def test_image_entrypoint_is_the_console_script_the_chart_runs(render: Render) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    scripts = pyproject["project"]["scripts"]
    assert scripts == {"agentobs-operator": "agentobs.main:main"}
    final = _final_stage((ROOT / "Dockerfile").read_text())
    [entrypoint] = [json.loads(ln.split(None, 1)[1]) for ln in final if ln.upper().startswith("ENTRYPOINT ")]
    assert entrypoint == list(scripts), "ENTRYPOINT is the console script"
    assert not [ln for ln in final if ln.upper().startswith("CMD ")], "no CMD: the operator takes no arguments"
    [user] = [ln.split(None, 1)[1] for ln in final if ln.upper().startswith("USER ")]
    uid = user.split(":")[0]
    assert uid.isdigit() and uid != "0", "numeric non-root user, so runAsNonRoot can be verified"

    docs = render({})
    c = container(docs)
    assert c["command"] == entrypoint and "args" not in c, "the chart runs the image's program, unchanged"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == pyproject["project"]["version"]
    assert c["image"].endswith(f":{chart['appVersion']}")
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)

    import agentobs.main

    assert callable(agentobs.main.main)


def test_base_image_is_pinned() -> None:
    text = (ROOT / "Dockerfile").read_text()
    [image] = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image), image


def test_the_notes_start_an_out_of_cluster_operator_with_its_namespace() -> None:
    """Without AGENTOBS_OPERATOR_NAMESPACE the process NOTES.txt told users to start ran no node log
    collector and kept the webhook's key in memory only, without a word; the chart README's
    command set it."""
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    command = notes[notes.index("KUBECONFIG=..."):notes.index("-m agentobs.main")]
    assert "AGENTOBS_OPERATOR_NAMESPACE={{ $ns }}" in command
    assert "AGENTOBS_NAMESPACES=" in command, "a namespaced install serves its namespaces only"
