"""hack/image_cache.py: what a prune of the real node's image cache removes and what it keeps."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0
HOUR = 3600.0


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("agentobs_image_cache", ROOT / "hack" / "image_cache.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


image_cache = _load()


def _aged(path: Path, age: float) -> Path:
    os.utime(path, (NOW - age, NOW - age))
    return path


def _write_layer(cache: Path, content: bytes, age: float) -> str:
    digest = hashlib.sha256(content).hexdigest()
    path = cache / f"layer-{digest}.tar"
    path.write_bytes(content)
    _aged(path, age)
    key = cache / f"key-{hashlib.sha256(b'key' + content).hexdigest()}.json"
    key.write_text(json.dumps({"digest": digest}))
    _aged(key, age)
    return digest


def _write_archive(cache: Path, name: str, layers: list[str], age: float) -> Path:
    """An OCI archive laid out as hack/images.py writes it (index, manifest, no layer bodies)."""
    manifest = json.dumps({"layers": [{"digest": f"sha256:{d}"} for d in layers]}).encode()
    manifest_digest = hashlib.sha256(manifest).hexdigest()
    index = json.dumps({"manifests": [{"digest": f"sha256:{manifest_digest}"}]}).encode()
    path = cache / f"image-{name}-{manifest_digest[:16]}.tar"
    with tarfile.open(path, "w") as tar:
        for member, data in (("index.json", index), (f"blobs/sha256/{manifest_digest}", manifest)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return _aged(path, age)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    path = tmp_path / "images"
    path.mkdir()
    return path


def test_superseded_archives_and_the_layers_only_they_use_go_the_rest_stays(cache: Path) -> None:
    base = _write_layer(cache, b"python", 30 * HOUR)  # shared by every operator build
    old_code = _write_layer(cache, b"operator v1", 30 * HOUR)
    mid_code = _write_layer(cache, b"operator v2", 20 * HOUR)
    new_code = _write_layer(cache, b"operator v3", 2 * HOUR)
    prom = _write_layer(cache, b"prometheus", 30 * HOUR)
    v1 = _write_archive(cache, "operator_0.1.0", [base, old_code], 30 * HOUR)
    v2 = _write_archive(cache, "operator_0.1.0", [base, mid_code], 20 * HOUR)
    v3 = _write_archive(cache, "operator_0.1.0", [base, new_code], 2 * HOUR)
    only_prom = _write_archive(cache, "prometheus_v3", [prom], 30 * HOUR)
    partial = cache / "image-operator_0.1.0-0123456789abcdef.partial"
    partial.write_bytes(b"half")
    _aged(partial, 5 * HOUR)

    pruned = image_cache.prune(cache, now=NOW)

    assert not v1.exists(), "the oldest of three operator archives is superseded"
    assert v2.exists() and v3.exists(), "the two most recently used archives of a name stay"
    assert only_prom.exists(), "an image's only archive stays however old"
    assert not (cache / f"layer-{old_code}.tar").exists(), "a layer only the removed archive used goes"
    for digest in (base, mid_code, new_code, prom):
        assert (cache / f"layer-{digest}.tar").exists(), "layers of kept archives stay"
    keys = {json.loads(p.read_text())["digest"] for p in cache.glob("key-*.json")}
    assert keys == {base, mid_code, new_code, prom}, "the key file of a removed layer goes with it"
    assert not partial.exists(), "an archive an interrupted build left half-written goes"
    assert pruned.bytes > 0 and v1 in pruned.files


def test_nothing_recent_is_removed_another_build_may_be_using_it(cache: Path) -> None:
    """A concurrent build writes its layers before its archive: young files are never deleted."""
    base = _write_layer(cache, b"python", 30 * HOUR)
    archives = [_write_archive(cache, "agent_0.1.0", [base, _write_layer(cache, b"agent %d" % age, age)], age)
                for age in (30 * HOUR, 20 * HOUR, 10 * HOUR)]
    _aged(archives[0], 10)  # reused a moment ago by a build (images.py touches what it reuses)
    fresh = _write_layer(cache, b"being packed", 5)  # no archive refers to it yet

    image_cache.prune(cache, now=NOW)

    assert archives[0].exists(), "an archive a build just reused is among the most recently used"
    assert not archives[1].exists()
    assert archives[2].exists()
    assert (cache / f"layer-{fresh}.tar").exists(), "a layer written a moment ago stays, unreferenced"


def test_an_archive_it_cannot_read_keeps_every_layer(cache: Path) -> None:
    lone = _write_layer(cache, b"orphan", 30 * HOUR)
    broken = cache / "image-broken_1-0123456789abcdef.tar"
    broken.write_bytes(b"not a tar file at all")
    _aged(broken, 30 * HOUR)

    image_cache.prune(cache, now=NOW)

    assert (cache / f"layer-{lone}.tar").exists(), "without knowing what a kept archive needs, no layer goes"


def test_an_absent_cache_is_not_an_error(tmp_path: Path) -> None:
    assert image_cache.prune(tmp_path / "never-built", now=NOW).files == []
