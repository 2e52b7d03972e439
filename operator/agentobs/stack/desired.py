"""What a pass sends, and whether it needs sending: normalised manifests stamped with a hash of
themselves, the test that a live child already holds them, and the status merge patch. Pure.

Normalising. The API server stores built-in kinds without empty lists and empty maps (Go's
`omitempty`), but a server-side apply that carries one compares a non-nil empty value with the
stored nil, sees a change and bumps `metadata.generation` on every apply (a NetworkPolicy with
`ingress: []` did). So before apply every rendered object loses `None` values, empty lists and
empty maps of the map-typed fields below. An empty map elsewhere is kept: it may be a struct whose
presence means something (`emptyDir: {}`, `podSelector: {}`, `namespaceSelector: {}`, an egress
rule `{}` that admits everything).

Skipping. Each applied object carries `agentobs.io/applied-hash`, the SHA-256 of its normalised
manifest. A child is in place when the watch-fed cache holds it with that hash and the fields the
operator owns (its server-side apply `managedFields` entry) are the ones its last apply left: a
hand edit of an owned field moves that field to another manager, which the watch event shows.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

HASH_ANNOTATION = "agentobs.io/applied-hash"

# Fields whose Go type is a map (so `{}` and absent are the same stored object).
MAP_FIELDS = frozenset({
    "labels", "annotations", "matchLabels", "data", "stringData", "binaryData", "nodeSelector",
    "requests", "limits", "parameters", "capacity", "overhead",
})

Manifest = dict[str, Any]


def normalise(value: Any, key: str = "") -> Any:
    """A copy without None, empty lists, and empty maps under the map-typed `MAP_FIELDS`."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            v = normalise(v, k)
            if v is None or (isinstance(v, list) and not v) or (isinstance(v, dict) and not v and k in MAP_FIELDS):
                continue
            out[k] = v
        return out
    if isinstance(value, list):
        return [normalise(v, key) for v in value if v is not None]
    return value


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def stamp(manifest: Manifest) -> Manifest:
    """The normalised manifest with its own hash annotated (the hash excludes the annotation)."""
    out: Manifest = normalise(copy.deepcopy(manifest))
    annotations = out.setdefault("metadata", {}).setdefault("annotations", {})
    annotations.pop(HASH_ANNOTATION, None)
    if not annotations:
        del out["metadata"]["annotations"]
    value = digest(out)
    out["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = value
    return out


def applied_hash(obj: Manifest | None) -> str | None:
    return (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION)


def owned_fields(obj: Manifest, manager: str) -> str | None:
    """A digest of the fields `manager` holds through server-side apply on the object itself (not a
    subresource), or None when it holds none."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply" and not entry.get("subresource"):
            return digest(entry.get("fieldsV1") or {})
    return None


def whole_patch(new: Any, diff: Any) -> Any:
    """A merge patch that makes any object `new`, given `diff = merge_patch(old, new)`: all of
    `new`, plus the nulls of `diff` for what `old` had and `new` lacks. For a status, `old` is what
    the watch last delivered, which can be older than what is stored: a patch of only the
    differences from it would then mix the findings of two passes (components of one, conditions
    of another)."""
    if not isinstance(new, dict) or not isinstance(diff, dict):
        return new
    out = dict(new)
    for key, value in diff.items():
        if value is None and key not in new:
            out[key] = None
        elif isinstance(value, dict) and isinstance(new.get(key), dict):
            out[key] = whole_patch(new[key], value)
    return out


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) taking `old` to `new`; {} when they are equal. Lists are
    replaced whole, and keys gone from `new` are set to null, so stale entries do not linger."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif isinstance(value, dict) and isinstance(old[key], dict):
            sub = merge_patch(old[key], value)
            if sub != {}:
                patch[key] = sub
        elif value != old[key]:
            patch[key] = value
    return patch
