"""The upkeep of the image cache (hack/images.py): superseded archives and the layers only they used.

Every change to the operator or the SDK gives the operator and example-agent images new archives
(about 250 MB together) and new layers, and nothing removed the old ones: one day of work left
3.4 GB in the cache, which CI's clones share. After a build, `prune` keeps the KEEP most recently
used archives of each image name (two, so that a checkout can go back and forth between two
branches without rebuilding), then deletes the layers no kept archive uses, the key files that
point at them, and leftovers of interrupted builds.

Nothing younger than MIN_AGE_SECONDS is deleted: a build running at the same time (another clone,
a CI run) may have just written it or be about to pack it. hack/images.py touches an archive or a
layer each time it reuses one, so "used" means used by a build, not only written by one.
"""

from __future__ import annotations

import json
import re
import tarfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

KEEP = 2
MIN_AGE_SECONDS = 3600.0
_ARCHIVE = re.compile(r"^image-(?P<name>.+)-(?P<digest>[0-9a-f]{16})\.tar$")
_LAYER = re.compile(r"^layer-(?P<digest>[0-9a-f]{64})\.tar$")


@dataclass
class Pruned:
    """What `prune` removed, for its one line of output."""

    files: list[Path] = field(default_factory=list)
    bytes: int = 0

    def add(self, path: Path) -> None:
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:  # another prune got there first
            return
        self.files.append(path)
        self.bytes += size


def layers_of(archive: Path) -> set[str]:
    """The layer digests an OCI archive written by hack/images.py refers to."""
    with tarfile.open(archive) as tar:
        def blob(name: str) -> dict[str, object]:
            member = tar.extractfile(name)
            if member is None:
                raise ValueError(f"{archive}: {name} is not a file")
            loaded = json.loads(member.read())
            if not isinstance(loaded, dict):
                raise ValueError(f"{archive}: {name} is not a JSON object")
            return loaded

        digests: set[str] = set()
        for entry in blob("index.json")["manifests"]:  # type: ignore[attr-defined]
            manifest = blob(f"blobs/sha256/{entry['digest'].removeprefix('sha256:')}")
            for layer in manifest["layers"]:  # type: ignore[attr-defined]
                digests.add(layer["digest"].removeprefix("sha256:"))
        return digests


def prune(cache: Path, *, keep: int = KEEP, min_age: float = MIN_AGE_SECONDS,
          now: float | None = None) -> Pruned:
    """Remove from `cache` what no kept archive needs and nothing has used for `min_age` seconds."""
    now = time.time() if now is None else now
    pruned = Pruned()
    if not cache.is_dir():
        return pruned

    def old(path: Path) -> bool:
        try:
            return now - path.stat().st_mtime >= min_age
        except FileNotFoundError:
            return False

    by_name: dict[str, list[Path]] = defaultdict(list)
    for path in cache.glob("image-*.tar"):
        match = _ARCHIVE.match(path.name)
        if match:
            by_name[match["name"]].append(path)
    kept: list[Path] = []
    for archives in by_name.values():
        archives.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        kept += archives[:keep]
        kept += [p for p in archives[keep:] if not old(p)]
        for path in archives[keep:]:
            if old(path):
                pruned.add(path)

    used: set[str] = set()
    for path in kept:
        try:
            used |= layers_of(path)
        except (OSError, KeyError, ValueError, tarfile.TarError):
            # An archive we cannot read keeps every layer: deleting one it needs would break it.
            return pruned
    for path in cache.glob("layer-*.tar"):
        match = _LAYER.match(path.name)
        if match and match["digest"] not in used and old(path):
            pruned.add(path)
    for path in cache.glob("key-*.json"):
        try:
            digest = json.loads(path.read_text())["digest"]
        except (OSError, ValueError, KeyError, TypeError):
            digest = None
        if (digest is None or not (cache / f"layer-{digest}.tar").exists()) and old(path):
            pruned.add(path)
    # Interrupted builds: an archive being packed, a layer being written.
    for pattern in ("*.partial", "tmp*.tar"):
        for path in cache.glob(pattern):
            if old(path):
                pruned.add(path)
    return pruned
