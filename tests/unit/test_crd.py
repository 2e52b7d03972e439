"""The CRD generated from the models is structural and documents every field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from agentobs.api.crd import make_crd
from agentobs.api.spec import AgentObservabilitySpec

ROOT = Path(__file__).resolve().parents[2]


def _walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        out += _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        out += _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        out += _walk(schema["additionalProperties"], f"{path}{{}}")
    return out


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = make_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_committed_crd_is_what_the_models_generate() -> None:
    committed = yaml.safe_load((ROOT / "crds" / "agentobs.io_agentobservabilities.yaml").read_text())
    assert committed == make_crd()


def test_schema_is_structural() -> None:
    for path, node in _walk(_schema()):
        assert not {"$ref", "anyOf", "oneOf", "allOf", "title", "$defs"} & node.keys(), path
        if node.get("properties"):
            assert "additionalProperties" not in node, path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path


def test_every_spec_and_status_field_has_a_description() -> None:
    schema = _schema()
    for root in ("spec", "status"):
        for path, node in _walk(schema["properties"][root], root):
            if path.endswith(("{}", "[]")):
                continue  # map values and list items are described by their parent
            assert node.get("description"), f"{path} has no description"


def test_nested_objects_default_so_the_server_fills_every_default() -> None:
    spec = _schema()["properties"]["spec"]
    assert spec["default"] == {}
    prometheus = spec["properties"]["prometheus"]
    assert prometheus["default"]["replicas"] == 2 and prometheus["default"]["alertmanager"]["replicas"] == 3
    assert prometheus["properties"]["replicas"]["default"] == 2
    es_storage = spec["properties"]["elasticsearch"]["properties"]["storage"]
    assert es_storage["default"]["size"] == "50Gi"


def test_images_are_not_stored_so_they_follow_the_running_operator() -> None:
    """A default the API server writes into a resource would hold its stack on the images of the
    operator that created it; unset, the operator renders its own, and `kubectl explain` names them."""
    images = _schema()["properties"]["spec"]["properties"]["images"]
    assert "default" not in images
    defaults = AgentObservabilitySpec().images.model_dump(by_alias=True)
    for name, prop in images["properties"].items():
        assert "default" not in prop, name
        assert defaults[name] in prop["description"], name
    assert set(images["properties"]) == set(defaults)


def test_cross_field_rules_are_cel_with_field_paths() -> None:
    spec = _schema()["properties"]["spec"]["properties"]
    rules = {name: spec[name].get("x-kubernetes-validations", []) for name in ("prometheus", "elasticsearch", "tls")}
    for name, found in rules.items():
        assert found, f"{name} has no CEL rule"
        for rule in found:
            assert rule["fieldPath"].startswith(".") and name in rule["message"]


def test_renew_before_is_not_stored_so_a_shorter_lifetime_alone_is_valid() -> None:
    """The API server checks the tls rules on the defaulted object: a stored renewBefore default
    would fail every lifetime at or below it that was given alone."""
    tls = _schema()["properties"]["spec"]["properties"]["tls"]
    assert "renewBefore" not in tls["default"]
    assert "default" not in tls["properties"]["renewBefore"]
    assert "a third of certificateLifetime" in tls["properties"]["renewBefore"]["description"]
    for rule in tls["x-kubernetes-validations"]:
        if "self.renewBefore" in rule["rule"]:
            assert rule["rule"].startswith("!has(self.renewBefore) || "), rule


def test_status_subresource_printer_columns_and_short_name() -> None:
    version = make_crd()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert {"Ready", "Components", "Age"} <= columns.keys()
    assert make_crd()["spec"]["names"]["shortNames"] == ["aobs"]
    conditions = _schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
