"""Building blocks of the spec models: the `SpecModel` base (camelCase, unknown fields refused),
`cel()` for cross-field rules the API server evaluates, and the small objects several components
share (a Secret key, container resources, a storage claim, a label selector).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

from agentobs.api.formats import (
    COMPUTE_RESOURCE_PATTERN,
    HOSTNAME_PATTERN,
    HTTPS_URL_MAX_LENGTH,
    HTTPS_URL_PATTERN,
    IMAGE_PATTERN,
    LABEL_KEY_PATTERN,
    LABEL_VALUE_PATTERN,
    OBJECT_KEY_PATTERN,
    QUANTITY_PATTERN,
    ZERO_PATTERN,
    parse_quantity,
)


def cel(*rules: tuple[str, str, str | None]) -> dict[str, Any]:
    """Attach CEL rules `(expression, message, fieldPath)` to a model's generated schema."""
    validations = []
    for rule, message, field_path in rules:
        entry = {"rule": rule, "message": message}
        if field_path:
            entry["fieldPath"] = field_path
        validations.append(entry)
    return {"x-kubernetes-validations": validations}


LabelKey = Annotated[str, Field(pattern=LABEL_KEY_PATTERN, max_length=317)]
LabelValue = Annotated[str, Field(pattern=LABEL_VALUE_PATTERN, max_length=63)]
Image = Annotated[str, Field(pattern=IMAGE_PATTERN, max_length=512)]
# The name of a Secret, StorageClass or issuer (an RFC 1123 subdomain). Checked here so that a
# name the API server would refuse in the rendered pod or claim is refused on the resource,
# naming the spec's field, instead of leaving the stack Degraded with a message about a child.
ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=HOSTNAME_PATTERN)]
HttpsUrl = Annotated[str, Field(max_length=HTTPS_URL_MAX_LENGTH, pattern=HTTPS_URL_PATTERN)]


def _refuse_zero(value: str) -> str:
    if re.fullmatch(ZERO_PATTERN, value):
        raise ValueError("must be more than zero")
    return value


def not_zero(message: str) -> dict[str, Any]:
    """The CEL half of `NOT_ZERO`, for a string field's schema (`json_schema_extra`)."""
    if "'" in ZERO_PATTERN:
        raise ValueError("cannot quote the zero pattern in CEL")
    return cel((f"!self.matches(r'{ZERO_PATTERN}')", message, None))


# The pydantic half: refuses a value of ZERO_PATTERN, naming the field like the CEL rule does.
NOT_ZERO = AfterValidator(_refuse_zero)
# A volume size: a quantity, more than zero (a claim of 0 is refused by the API server, as a child).
Size = Annotated[str, Field(pattern=QUANTITY_PATTERN, max_length=32,
                            json_schema_extra=not_zero("a volume size must be more than zero")), NOT_ZERO]


class SpecModel(BaseModel):
    """Base of every spec object: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")



def with_cel(*rules: tuple[str, str, str | None]) -> ConfigDict:
    """`SpecModel`'s configuration, with these CEL rules (see `cel`) on the model's schema."""
    return SpecModel.model_config | ConfigDict(json_schema_extra=cel(*rules))

class SecretKeyRef(SpecModel):
    """A key in a Secret of the resource's namespace."""

    name: Annotated[ObjectName, Field(description="Name of the Secret.")]
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=OBJECT_KEY_PATTERN,
                              description="Key within the Secret.")]


# A container's resource map: at most a handful of names in practice (cpu, memory,
# ephemeral-storage, a page size, a device or two); the cap also bounds the cost the API server
# estimates for the CEL rules below, which it refuses a CRD over.
_MAX_RESOURCES = 16
ComputeResourceName = Annotated[str, Field(pattern=COMPUTE_RESOURCE_PATTERN, max_length=317)]
Quantity = Annotated[str, Field(pattern=QUANTITY_PATTERN, max_length=32)]


def _not_overcommittable(name: str) -> bool:
    """Huge pages and extended resources (a domain outside kubernetes.io): Kubernetes wants their
    request equal to their limit, and extended ones in whole units."""
    return name.startswith("hugepages-") or ("/" in name and "kubernetes.io/" not in name)


_EXTENDED = "k.contains('/') && !k.contains('kubernetes.io/')"
_FIXED = f"(k.startsWith('hugepages-') || ({_EXTENDED}))"
# A value that is no quantity has its own error from the pattern: the rules skip it rather than
# add a second, about the quantity() call, to the same refusal.
_BOTH = "isQuantity(self.requests[k]) && isQuantity(self.limits[k])"


def _whole_pages(field: str) -> str:
    """CEL: every huge page amount in `field` is a whole number of pages of its key's size (the
    pattern makes `k.substring(10)`, after `hugepages-`, a quantity)."""
    size = "quantity(k.substring(10))"
    return (f"!has(self.{field}) || self.{field}.all(k, !k.startsWith('hugepages-') || "
            f"!isQuantity(self.{field}[k]) || (quantity(self.{field}[k]).isInteger() && {size}.isInteger() "
            f"&& {size}.asInteger() > 0 && quantity(self.{field}[k]).asInteger() % {size}.asInteger() == 0))")


def _no_quota_prefix(field: str) -> str:
    return f"!has(self.{field}) || self.{field}.all(k, !k.startsWith('requests.'))"


class ResourceRequirements(SpecModel):
    """CPU and memory for one container, as Kubernetes quantities."""

    # The rules the API server applies to a pod's resources, checked here so that a mistake is
    # refused on this field instead of by the StatefulSet the operator renders from it.
    model_config = SpecModel.model_config | ConfigDict(json_schema_extra=cel(
        ("!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits) || "
         f"!({_BOTH}) || !quantity(self.requests[k]).isGreaterThan(quantity(self.limits[k])))",
         "a limit must not be below the request of the same resource", ".limits"),
        (f"!has(self.requests) || self.requests.all(k, !{_FIXED} || (has(self.limits) && k in self.limits && "
         f"(!({_BOTH}) || quantity(self.requests[k]).compareTo(quantity(self.limits[k])) == 0)))",
         "huge pages and extended resources cannot be overcommitted: a request needs an equal limit", ".limits"),
        (f"!has(self.requests) || self.requests.all(k, !({_EXTENDED}) || !isQuantity(self.requests[k]) || "
         "quantity(self.requests[k]).isInteger())",
         "extended resources (such as nvidia.com/gpu) are requested in whole units", ".requests"),
        (f"!has(self.limits) || self.limits.all(k, !({_EXTENDED}) || !isQuantity(self.limits[k]) || "
         "quantity(self.limits[k]).isInteger())",
         "extended resources (such as nvidia.com/gpu) are limited in whole units", ".limits"),
        (_whole_pages("requests"), "huge pages are requested in whole pages of the size the name gives "
         "(hugepages-2Mi: 2Mi, 4Mi, ...)", ".requests"),
        (_whole_pages("limits"), "huge pages are limited in whole pages of the size the name gives "
         "(hugepages-2Mi: 2Mi, 4Mi, ...)", ".limits"),
        (_no_quota_prefix("requests"), "a resource name cannot start with 'requests.' (a quota's spelling)",
         ".requests"),
        (_no_quota_prefix("limits"), "a resource name cannot start with 'requests.' (a quota's spelling)",
         ".limits"),
    ))

    requests: dict[ComputeResourceName, Quantity] = Field(
        default_factory=dict, max_length=_MAX_RESOURCES,
        description="Minimum resources reserved, e.g. {cpu: 250m, memory: 1Gi}; names as in a pod (cpu, "
        "memory, ephemeral-storage, hugepages-<size>, or an extended resource such as nvidia.com/gpu).",
    )
    # Validated when left out too: a request of an extended resource with no limit is an error.
    limits: dict[ComputeResourceName, Quantity] = Field(
        default_factory=dict, max_length=_MAX_RESOURCES, validate_default=True,
        description="Maximum resources allowed, e.g. {memory: 2Gi}; none below its request.",
    )

    @field_validator("requests", "limits")
    @classmethod
    def _whole_units(cls, value: dict[str, str]) -> dict[str, str]:
        for name, quantity in value.items():
            if name.startswith("requests."):
                raise ValueError(f"{name}: a resource name cannot start with 'requests.' (a quota's spelling)")
            if "/" in name and "kubernetes.io/" not in name and not parse_quantity(quantity).is_integer():
                raise ValueError(f"{name}: extended resources (such as nvidia.com/gpu) come in whole units")
            if name.startswith("hugepages-"):
                amount, page = parse_quantity(quantity), parse_quantity(name.removeprefix("hugepages-"))
                if not (amount.is_integer() and page.is_integer() and page > 0 and amount % page == 0):
                    raise ValueError(f"{name}: huge pages come in whole pages of the size the name gives")
        return value

    @field_validator("limits")
    @classmethod
    def _limits_cover_requests(cls, limits: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        requests: dict[str, str] = info.data.get("requests") or {}
        for name, request in requests.items():
            limit = limits.get(name)
            if limit is not None and parse_quantity(limit) < parse_quantity(request):
                raise ValueError(f"{name}: a limit must not be below the request of the same resource")
            if _not_overcommittable(name) and (limit is None or parse_quantity(limit) != parse_quantity(request)):
                raise ValueError(f"{name}: huge pages and extended resources cannot be overcommitted: "
                                 "a request needs an equal limit")
        return limits


def resources_field(description: str, *, cpu: str, memory: str, memory_limit: str) -> Any:
    """A `ResourceRequirements` field defaulting to these CPU and memory requests and memory limit.
    As in a pod spec, a value given replaces the default whole (the description says so): a merge
    would leave no way to remove a default limit."""
    return Field(
        default_factory=lambda: ResourceRequirements(
            requests={"cpu": cpu, "memory": memory}, limits={"memory": memory_limit}
        ),
        description=f"{description} Default: requests cpu {cpu}, memory {memory}; limits memory "
                    f"{memory_limit}. A value given replaces the default whole: give requests and limits together.",
    )


class StorageSpec(SpecModel):
    """A persistent volume claim template for a stateful component."""

    size: Size = Field("10Gi", description="Requested volume size, more than zero.")
    storage_class_name: ObjectName | None = Field(
        None, description="StorageClass of the claim; the cluster default when unset."
    )
    keep_on_delete: bool = Field(
        True,
        description="Keep the data volumes when the AgentObservability is deleted "
        "(they hold user data; delete them by hand when they are no longer needed). Deleting its "
        "namespace deletes the claims all the same; the StorageClass reclaim policy then decides "
        "whether the data survives.",
    )


class ElasticsearchStorageSpec(StorageSpec):
    """The data volume of an Elasticsearch node: its own default size, which a spec that sets
    only the StorageClass keeps."""

    size: Size = Field("50Gi", description="Requested volume size, more than zero.")


class BufferStorageSpec(StorageSpec):
    """The buffer volume of a log aggregator replica, with its own default size."""

    size: Size = Field("5Gi", description="Requested volume size, more than zero.")


class LabelSelector(SpecModel):
    """A Kubernetes label selector (matchLabels only; every label must match)."""

    match_labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=32,
        description="Labels an object must carry, all of them, to be selected.",
    )
