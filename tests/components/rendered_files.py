"""Lay out on disk what a rendered container would see mounted, for the real programs to read.

Given the whole rendered stack and one workload, every volume mount of its first container is
written under a temporary root at the mount path (ConfigMap and Secret keys as files, honouring
`items`; other volumes as empty directories). Paths in a config file are then rewritten into the
same root, so a program checks exactly the files the pod would get, at the places the config names.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from agentobs.pki import KeyPair
from agentobs.render import Material, Owner, certificate_requests, credential_requests


def real_material(owner: Owner, now: Any) -> Material:
    """A real CA, a real certificate per component and stand-in credential values."""
    import bcrypt

    from agentobs import pki
    from agentobs.api.spec import parse_go_duration

    lifetime = parse_go_duration(owner.spec.tls.certificate_lifetime)
    ca = pki.make_ca("test ca", now, lifetime * 2)
    certs: dict[str, KeyPair] = {
        component: pki.issue(ca, component, names, now, lifetime)
        for component, names in certificate_requests(owner).items()
    }
    credentials: dict[str, dict[str, str]] = {}
    for request in credential_requests(owner):
        values: dict[str, str] = {}
        for key, recipe in request.recipe.items():
            kind, _, arg = recipe.partition(":")
            if kind == "literal":
                values[key] = arg
            elif kind == "random":
                values[key] = f"pw-{request.suffix}-{key}"
            else:
                values[key] = bcrypt.hashpw(values[arg].encode(), bcrypt.gensalt(rounds=4)).decode()
        credentials[request.suffix] = values
    return Material(ca=ca, certs=certs, credentials=credentials)


def _source_files(objects: list[dict[str, Any]], volume: dict[str, Any]) -> dict[str, bytes] | None:
    if "configMap" in volume:
        ref, kind = volume["configMap"], "ConfigMap"
        name = ref["name"]
    elif "secret" in volume:
        ref, kind = volume["secret"], "Secret"
        name = ref["secretName"]
    else:
        return None
    obj = next((o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name), None)
    if obj is None:
        raise LookupError(f"volume {volume['name']} mounts {kind} {name}, which the stack does not render")
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()} if kind == "ConfigMap" else {
        **{k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()},
        **{k: v.encode() for k, v in (obj.get("stringData") or {}).items()},
    }
    if "items" in ref:
        return {item["path"]: data[item["key"]] for item in ref["items"]}
    return data


def lay_out_mounts(objects: list[dict[str, Any]], kind: str, name: str, root: Path) -> dict[str, str]:
    """Write the mounts of workload `kind/name`'s first container under `root`.

    Returns mount path -> the directory standing in for it.
    """
    workload = next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)
    pod = workload["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts: dict[str, str] = {}
    for mount in pod["containers"][0]["volumeMounts"]:
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        files = _source_files(objects, volumes[mount["name"]]) if mount["name"] in volumes else None
        for path, content in (files or {}).items():
            (target / path).parent.mkdir(parents=True, exist_ok=True)
            (target / path).write_bytes(content)
        mounts[mount["mountPath"]] = str(target)
    return mounts


def rewrite_paths(text: str, mounts: dict[str, str]) -> str:
    """Point every absolute path under a mount path in `text` at the mount's stand-in directory.

    One pass, longest mount first, and only where a path starts, so a stand-in directory (which
    contains the mount path) is never rewritten again.
    """
    paths = sorted((m.rstrip("/") for m in mounts), key=len, reverse=True)
    pattern = re.compile(r"(?<![\w./-])(" + "|".join(re.escape(p) for p in paths) + r")/")
    return pattern.sub(lambda m: mounts[m.group(1)].rstrip("/") + "/", text)
