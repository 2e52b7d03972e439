"""Labels a user adds through values (commonLabels, operator.podLabels, the ServiceMonitor's and
PrometheusRule's labels): merged with the chart's own without writing a key twice, and refused,
naming the value, where they would repeat a key the chart sets (a selector key among them)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from agentobs.api.formats import LABEL_VALUE_PATTERN

from chart_support import CHART, SERVICE_MONITOR_API, Render, Run, set_args

SELECTOR_KEYS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader refusing a mapping that repeats a key (safe_load keeps the last one silently;
    the API server's decoder refuses such a document)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        repeated = {k for k in keys if keys.count(k) > 1}
        assert not repeated, f"repeated keys {repeated} at {node.start_mark}"
        return super().construct_mapping(node, deep=deep)


def _template(helm: Run, values: dict[str, Any], check: bool = True) -> Any:
    return helm("template", "agentobs", str(CHART), "--api-versions", SERVICE_MONITOR_API, *set_args(values),
                check=check)


@pytest.mark.parametrize(("value", "key"), [
    *[("operator.podLabels", key) for key in SELECTOR_KEYS],
    ("operator.podLabels", "app.kubernetes.io/version"),
    ("commonLabels", "app.kubernetes.io/name"),
    ("commonLabels", "helm.sh/chart"),
    ("metrics.serviceMonitor.labels", "app.kubernetes.io/component"),
    ("metrics.prometheusRule.labels", "app.kubernetes.io/instance"),
])
def test_a_label_repeating_one_the_chart_sets_is_refused_naming_the_value(helm: Run, value: str, key: str) -> None:
    """On the operator pods a selector key of the user's would leave the Deployment selecting none
    of its pods; before, the chart wrote the key twice and the API server (or the last value) chose."""
    result = _template(helm, {value: {key: "mine"}}, check=False)
    assert result.returncode != 0, f"{value}.{key} accepted"
    assert f'{value}: the label "{key}"' in result.stderr, result.stderr


def test_user_labels_merge_the_more_specific_winning_and_no_key_written_twice(helm: Run) -> None:
    values = {"commonLabels": {"team": "obs", "cost-center": "42"},
              "operator.podLabels": {"team": "obs-operator", "sidecar.istio.io/inject": "false"},
              "metrics.serviceMonitor.labels": {"release": "prom", "team": "obs-monitoring"},
              "metrics.prometheusRule.labels": {"release": "prom"}}
    docs = [d for d in yaml.load_all(_template(helm, values).stdout, Loader=_UniqueKeyLoader) if d]
    by_kind = {d["kind"]: d for d in docs}
    deployment = by_kind["Deployment"]
    pod = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod["team"] == "obs-operator" and pod["cost-center"] == "42" and pod["sidecar.istio.io/inject"] == "false"
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod.items()
    assert deployment["metadata"]["labels"]["team"] == "obs", "podLabels are the pods' only"
    assert "sidecar.istio.io/inject" not in deployment["metadata"]["labels"]
    monitor = by_kind["ServiceMonitor"]["metadata"]["labels"]
    assert (monitor["team"], monitor["release"], monitor["cost-center"]) == ("obs-monitoring", "prom", "42")
    assert by_kind["PrometheusRule"]["metadata"]["labels"]["release"] == "prom"
    for doc in docs:
        assert doc["metadata"]["labels"]["cost-center"] == "42", (doc["kind"], doc["metadata"]["name"])


@pytest.mark.parametrize("tag", ["1.4.0-", "_nightly.7", "build.", "v1.2.3-" + "a" * 55 + ".b"])
def test_any_valid_image_tag_gives_a_valid_version_label(render: Render, tag: str) -> None:
    """The tag becomes app.kubernetes.io/version; as it was, a tag ending in `-` or `.` (valid for a
    registry), starting with `_`, or cut to 63 characters at a `.`, was a label value the API server
    refuses, on every object of the release."""
    docs = render({"operator.image.tag": tag})
    versions = {d["metadata"]["labels"]["app.kubernetes.io/version"] for d in docs}
    assert len(versions) == 1, versions
    version = versions.pop()
    assert re.fullmatch(LABEL_VALUE_PATTERN, version) and version, version
    assert version in tag, "the tag, trimmed"
