"""Generates the `AgentObservability` CustomResourceDefinition from the pydantic models.

Pydantic emits JSON Schema; the API server wants a structural OpenAPI v3 schema: no `$ref`, no
`anyOf` for optional fields, no `title`, no `additionalProperties: false` beside `properties`.
This module translates one into the other and adds what only Kubernetes knows: defaults for
nested objects (so the API server fills every default and `kubectl get -o yaml` shows the
effective spec), list-map keys for conditions, the status subresource and printer columns.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from agentobs.api import GROUP, KIND, PLURAL, SHORT_NAME, SINGULAR, VERSION, spec
from agentobs.api.formats import COMPUTE_RESOURCE_PATTERN, RESOURCE_NAME_MAX_LENGTH, RESOURCE_NAME_PATTERN
from agentobs.api.spec import AgentObservabilitySpec
from agentobs.api.status import AgentObservabilityStatus

JSONSchema = dict[str, Any]

_DROPPED_KEYS = {"title", "$defs"}
# What each key pattern means, for the message the API server returns with a refused key.
_KEY_KINDS = {
    spec.LABEL_KEY_PATTERN: "label keys (an optional DNS-subdomain prefix and '/', then a name of up to 63 "
                            "letters, digits, '-', '_' or '.', starting and ending alphanumeric)",
    spec.ATTRIBUTE_KEY_PATTERN: "OpenTelemetry attribute keys (a letter or '_', then letters, digits, '_', '.', '-')",
    COMPUTE_RESOURCE_PATTERN: "container resource names (cpu, memory, ephemeral-storage, hugepages-<size>, or an "
                              "extended resource: a domain, '/' and a name, e.g. nvidia.com/gpu)",
    spec.PROM_LABEL_PATTERN: "Prometheus label names (a letter or '_', then letters, digits or '_')",
}


def _resolve(node: JSONSchema, defs: dict[str, JSONSchema]) -> JSONSchema:
    """Inline references and collapse `X | None` into an optional X."""
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**_resolve(target, defs), **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"cannot express union {node['anyOf']} in a structural schema")
        rest = {k: v for k, v in node.items() if k != "anyOf" and not (k == "default" and v is None)}
        return _resolve({**branches[0], **rest}, defs)
    if "allOf" in node and len(node["allOf"]) == 1:
        rest = {k: v for k, v in node.items() if k != "allOf"}
        return _resolve({**node["allOf"][0], **rest}, defs)

    out: JSONSchema = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key in ("propertyNames", "patternProperties"):
            continue  # not structural: folded into additionalProperties and a CEL rule below
        if key == "properties":
            out[key] = {name: _resolve(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _resolve(value, defs)
        elif key == "additionalProperties" and value is False:
            continue  # unknown fields are pruned by the API server instead
        else:
            out[key] = value
    if "patternProperties" in node or "propertyNames" in node:
        names = dict(node.get("propertyNames") or {})
        for pattern, values in (node.get("patternProperties") or {}).items():
            names["pattern"] = pattern
            out["additionalProperties"] = _resolve(values, defs)
        out.setdefault("x-kubernetes-validations", []).append(_key_rule(names))
    if out.get("type") == "object" and out.get("additionalProperties") is True:
        del out["additionalProperties"]
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _key_rule(names: JSONSchema) -> dict[str, str]:
    """A structural schema has no `propertyNames`: check a map's keys with CEL instead."""
    checks = []
    if "maxLength" in names:
        checks.append(f"size(k) <= {names['maxLength']}")
    if "pattern" in names:
        if "'" in names["pattern"]:
            raise ValueError(f"cannot quote key pattern {names['pattern']!r} in CEL")
        checks.append(f"k.matches(r'{names['pattern']}')")
    what = _KEY_KINDS.get(names.get("pattern", ""), f"keys matching {names.get('pattern', '')}")
    limit = f" of at most {names['maxLength']} characters" if "maxLength" in names else ""
    return {"rule": f"self.all(k, {' && '.join(checks) or 'true'})", "message": f"keys must be {what}{limit}"}


def _model_defaults(model: type[BaseModel], schema: JSONSchema) -> None:
    """Give fields built by a default factory a schema default, so the API server fills them.

    A nested model's default is written out in full: the API server checks a default against the
    CEL rules of its schema without first applying the nested defaults.
    """
    props = schema.get("properties", {})
    for name, field in model.model_fields.items():
        alias = field.alias or name
        prop = props.get(alias)
        if prop is None:
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            _model_defaults(annotation, prop)
            if field.default_factory is not None:
                built = field.default_factory()  # type: ignore[call-arg]
                prop["default"] = built.model_dump(by_alias=True, exclude_none=True, mode="json")
        elif field.default_factory is not None and "default" not in prop:
            value = field.default_factory()  # type: ignore[call-arg]
            if value:
                prop["default"] = value


def _list_map_conditions(status_schema: JSONSchema) -> None:
    conditions = status_schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]


def openapi_schema(model: type[BaseModel]) -> JSONSchema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema = _resolve(raw, raw.get("$defs", {}))
    _model_defaults(model, schema)
    return schema


def _without_defaults(schema: JSONSchema) -> None:
    schema.pop("default", None)
    for prop in schema.get("properties", {}).values():
        _without_defaults(prop)


def _name_rule() -> dict[str, str]:
    """The API server refuses a name the children cannot carry, naming the field, rather than the
    operator finding out after the resource is stored. Root rules may read `metadata.name`; the
    API server's validation ratcheting lets a resource stored before the rule keep being updated."""
    if "'" in RESOURCE_NAME_PATTERN:
        raise ValueError("cannot quote the name pattern in CEL")
    # fieldPath: a root rule's error is otherwise reported against no field, which kubectl prints
    # as `<nil>: Invalid value`; the path needs `metadata.name` declared in the schema.
    return {
        "fieldPath": ".metadata.name",
        "rule": f"size(self.metadata.name) <= {RESOURCE_NAME_MAX_LENGTH} && "
                f"self.metadata.name.matches(r'{RESOURCE_NAME_PATTERN}')",
        "message": f"metadata.name must be at most {RESOURCE_NAME_MAX_LENGTH} characters of a-z, 0-9 and '-', "
                   "starting with a letter and ending with a letter or digit: it prefixes the names of the "
                   "stack's Services and StatefulSets",
    }


def make_crd() -> dict[str, Any]:
    spec_schema = openapi_schema(AgentObservabilitySpec)
    spec_schema["default"] = {}
    # Images are defaulted by the operator, not stored: a default the API server wrote into each
    # resource would hold every stack on the images of the operator that created it, through every
    # upgrade (security fixes included). Unset, they follow the running operator; set, they pin.
    _without_defaults(spec_schema["properties"]["images"])
    status_schema = openapi_schema(AgentObservabilityStatus)
    _list_map_conditions(status_schema)

    def column(name: str, path: str, description: str, priority: int = 0,
               type_: str = "string") -> dict[str, Any]:
        col: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path, "description": description}
        if priority:
            col["priority"] = priority
        return col

    ready = '.status.conditions[?(@.type=="Ready")]'
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "agentobs", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": [SHORT_NAME],
                "categories": ["agentobs", "observability"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        column("Ready", f"{ready}.status", "Whether the whole stack is ready."),
                        column("Components", ".status.componentsReady", "Ready components over provisioned."),
                        column("Reason", f"{ready}.reason", "Why the stack is or is not ready.", priority=1),
                        column("OTLP", ".status.endpoints.otlpGrpc", "OTLP gRPC endpoint.", priority=1),
                        column("Prometheus", ".status.endpoints.prometheus", "Prometheus URL.", priority=1),
                        column("Age", ".metadata.creationTimestamp", "Age.", type_="date"),
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": f"{KIND} provisions an observability stack for the AI agents "
                            "of a namespace: Prometheus and Alertmanager, Jaeger on Elasticsearch, Fluentd "
                            "and Grafana, with TLS, and instruments the agent pods it selects. Its name "
                            f"prefixes its children's: at most {RESOURCE_NAME_MAX_LENGTH} characters of a-z, "
                            "0-9 and '-', a letter first (the API server refuses other names; one stored before "
                            "that rule is left Degraded, reason InvalidSpec, with nothing made).",
                            "properties": {
                                "apiVersion": {"type": "string", "description": "API version of the object."},
                                "kind": {"type": "string", "description": "Kind of the object."},
                                "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                            "x-kubernetes-validations": [_name_rule()],
                        }
                    },
                }
            ],
        },
    }
