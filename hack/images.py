#!/usr/bin/env python3
"""Container images for the real node, assembled without Docker and without a registry.

Each image is a few layers written as deterministic tar files (sorted entries, owner root, time
zero), packed into an OCI image archive and imported into the node's containerd with `ctr`. Tags
are the names the chart and `spec.images` use, so the product runs unchanged on the real node:

  pause          registry.k8s.io/pause:3.10                 static C program (hack/images/pause.c)
  coredns        registry.k8s.io/coredns/coredns:v1.14.7    tools/coredns
  prometheus     quay.io/prometheus/prometheus:v3.5.0       tools/prometheus
  alertmanager   quay.io/prometheus/alertmanager:v0.28.1    tools/alertmanager
  jaeger         cr.jaegertracing.io/jaegertracing/jaeger:2.13.0   tools/jaeger
  operator       ghcr.io/agentobs/agentobs-operator:<chart appVersion>  what the Dockerfile describes
  example-agent  ghcr.io/agentobs/example-agent:<chart appVersion>      examples/agent on the SDK
  opensearch-standin  agentobs.local/opensearch-standin:2.19.6   the tests' Elasticsearch-API stand-in
                 (OpenSearch from Maven Central, Debian's JRE and nginx: hack/standin.py)

The Python images run Debian's python3.11, unpacked from its packages (`apt-get download`, the
same client as the machine's), with the operator or the SDK and their dependencies installed by
pip beside it. Go programs are copied with the shared libraries `ldd` names.

  hack/images.py build [NAME ...]             write the archives (cached by content) and print them
  hack/images.py import --address SOCK [NAME ...]   build, then import into containerd (k8s.io)

Either then prunes the cache of archives and layers that newer builds superseded (image_cache.py).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import image_cache

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "agentobs" / "images"
PYTHON = "/usr/bin/python3.11"
# Debian's python3.11 and the libraries its modules and the wheels we install (grpcio,
# cryptography, pydantic-core) load; perl, dpkg and the like that the packages' scripts would
# want are left out: nothing runs them in a container.
PYTHON_DEBS = [
    "gcc-12-base", "libbz2-1.0", "libc6", "libcom-err2", "libcrypt1", "libdb5.3", "libexpat1", "libffi8",
    "libgcc-s1", "libgdbm6", "libgssapi-krb5-2", "libk5crypto3", "libkeyutils1", "libkrb5-3",
    "libkrb5support0", "liblzma5", "libncursesw6", "libnsl2", "libpython3.11-minimal",
    "libpython3.11-stdlib", "libreadline8", "libsqlite3-0", "libssl3", "libstdc++6", "libtinfo6",
    "libtirpc-common", "libtirpc3", "libuuid1", "media-types", "python3.11-minimal", "zlib1g",
]
NONROOT = "65532:65532"


def run(*cmd: str | Path, cwd: Path | None = None) -> str:
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, check=True, capture_output=True, text=True)
    return out.stdout


def tool_dir(tool: str) -> Path:
    return Path(run(ROOT / "tools" / "ensure.sh", tool).strip())


def chart_version() -> str:
    text = (ROOT / "charts" / "agentobs" / "Chart.yaml").read_text()
    match = re.search(r'^appVersion:\s*"?([^"\n]+)"?', text, re.M)
    assert match, "Chart.yaml has no appVersion"
    return match.group(1).strip()


# -- layers -------------------------------------------------------------------------------------

@dataclass
class Layer:
    """One layer: a deterministic tar of a directory tree, cached by the digest of its bytes."""

    path: Path
    digest: str
    size: int


def _tar_filter(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def layer_from_tree(tree: Path) -> Layer:
    CACHE.mkdir(parents=True, exist_ok=True)
    with (tempfile.NamedTemporaryFile(dir=CACHE, suffix=".tar", delete=False) as tmp,
          tarfile.open(fileobj=tmp, mode="w", format=tarfile.PAX_FORMAT) as tar):
        for path in sorted(tree.rglob("*"), key=lambda p: p.relative_to(tree).as_posix()):
            tar.add(path, arcname=path.relative_to(tree).as_posix(), recursive=False, filter=_tar_filter)
    digest = hashlib.sha256(Path(tmp.name).read_bytes()).hexdigest()
    final = CACHE / f"layer-{digest}.tar"
    os.replace(tmp.name, final)
    return Layer(final, digest, final.stat().st_size)


def cached_layer(key: str, build: Callable[[Path], None]) -> Layer:
    """A layer built by `build(tree)` once per `key` (a digest of everything that goes into it)."""
    index = CACHE / f"key-{key}.json"
    if index.exists():
        meta = json.loads(index.read_text())
        path = CACHE / f"layer-{meta['digest']}.tar"
        if path.exists():
            os.utime(path)  # used: image_cache.prune keeps what builds use
            return Layer(path, meta["digest"], path.stat().st_size)
    with tempfile.TemporaryDirectory(dir=CACHE.parent if CACHE.parent.exists() else None) as tmp:
        tree = Path(tmp) / "rootfs"
        tree.mkdir()
        build(tree)
        layer = layer_from_tree(tree)
    index.write_text(json.dumps({"digest": layer.digest}))
    return layer


def digest_of(*parts: str | bytes | Path) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            if part.is_dir():
                for p in sorted(part.rglob("*")):
                    if p.is_file() and "__pycache__" not in p.parts:
                        h.update(p.relative_to(part).as_posix().encode())
                        h.update(p.read_bytes())
            else:
                h.update(part.read_bytes())
        else:
            h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def base_files(tree: Path) -> None:
    """/etc/passwd, group, nsswitch and a sticky /tmp: what programs expect of any image."""
    (tree / "etc").mkdir(exist_ok=True)
    (tree / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
        "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
    (tree / "etc" / "group").write_text("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")
    (tree / "etc" / "nsswitch.conf").write_text("hosts: files dns\n")
    tmp = tree / "tmp"
    tmp.mkdir(exist_ok=True)
    tmp.chmod(0o1777)


def copy_program(binary: Path, tree: Path, dest: str) -> None:
    """The program and the shared libraries it loads, at the paths the loader looks for them."""
    target = tree / dest.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary.resolve(), target)
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    for lib in re.findall(r"(/\S+)\s+\(0x", out):
        lib_target = tree / lib.lstrip("/")
        lib_target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(lib).resolve(), lib_target)


def go_program_layer(tool: str, program: str, dest: str, data_dirs: Iterable[str] = (),
                     companions: dict[str, str] | None = None) -> Layer:
    """A Go program of tools/ at `dest`, with `companions` (program: path) as the upstream image has."""
    binary = tool_dir(tool) / program
    extra = {tool_dir(tool) / name: path for name, path in (companions or {}).items()}

    def build(tree: Path) -> None:
        base_files(tree)
        copy_program(binary, tree, dest)
        for source, path in extra.items():
            copy_program(source, tree, path)
        for d in data_dirs:
            path = tree / d.lstrip("/")
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, 65534, 65534)
            path.chmod(0o775)

    return cached_layer(digest_of("go", tool, program, dest, *data_dirs, binary, *extra, *extra.values()), build)


# -- Debian packages ----------------------------------------------------------------------------

def debian_layer(packages: list[str], digest_parts: Iterable[str], finish: Callable[[Path], None]) -> Layer:
    """Debian packages unpacked (no maintainer scripts), then `finish(tree)`: the caller's own
    touches and a check, in a chroot, that what it needs starts. The .debs are downloaded once."""
    debs_dir = CACHE / "debs"
    debs_dir.mkdir(parents=True, exist_ok=True)
    if not all(any(debs_dir.glob(f"{name}_*.deb")) for name in packages):
        run("apt-get", "download", *packages, cwd=debs_dir)
    debs = sorted(p for p in debs_dir.glob("*.deb") if p.name.split("_")[0] in packages)

    def build(tree: Path) -> None:
        for deb in debs:
            run("dpkg-deb", "-x", deb, tree)
        base_files(tree)
        finish(tree)

    return cached_layer(digest_of(*digest_parts, *[d.name for d in debs]), build)


# -- Python -------------------------------------------------------------------------------------

def debian_python_layer() -> Layer:
    def finish(tree: Path) -> None:
        (tree / "usr" / "bin" / "python3").symlink_to("python3.11")
        # Debian's python looks for its landmark files relative to the binary: prove it starts.
        run("chroot", tree, PYTHON, "-c", "import ssl, json, sqlite3, ctypes, zlib, lzma, bz2, uuid")

    return debian_layer(PYTHON_DEBS, ["debian-python"], finish)


def pip_layer(name: str, requirements: list[str], sources: list[Path]) -> Layer:
    """Packages installed by pip with the image's own Python version, into /opt/agentobs/lib."""

    def build(tree: Path) -> None:
        venv = CACHE / "build-venv"
        if not (venv / "bin" / "pip").exists():
            run(PYTHON, "-m", "venv", venv)
            run(venv / "bin" / "pip", "install", "--quiet", "--upgrade", "pip")
        target = tree / "opt" / "agentobs" / "lib"
        run(venv / "bin" / "pip", "install", "--quiet", "--no-compile", "--no-warn-script-location",
            "--target", target, *requirements)
        shutil.rmtree(target / "bin", ignore_errors=True)

    return cached_layer(digest_of("pip", name, *requirements, *sources), build)


def launcher_layer(name: str, scripts: dict[str, str], files: dict[str, Path] | None = None) -> Layer:
    def build(tree: Path) -> None:
        bindir = tree / "usr" / "local" / "bin"
        bindir.mkdir(parents=True)
        for script, module in scripts.items():
            path = bindir / script
            path.write_text(f"#!{PYTHON}\nimport sys\nfrom {module} import main\nsys.exit(main())\n")
            path.chmod(0o755)
        for dest, src in (files or {}).items():
            out = tree / dest.lstrip("/")
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out)
            out.chmod(0o644)

    sources = [str(v) for v in (files or {}).values()]
    return cached_layer(digest_of("launcher", name, json.dumps(scripts),
                                  *[Path(s) for s in sources]), build)


# -- images -------------------------------------------------------------------------------------

@dataclass
class Image:
    name: str
    layers: list[Layer]
    entrypoint: list[str]
    cmd: list[str] = field(default_factory=list)
    user: str = NONROOT
    workdir: str = "/"
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/local/bin:/usr/bin:/bin"])


def write_archive(image: Image) -> Path:
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": image.entrypoint, "Cmd": image.cmd or None, "User": image.user,
                   "WorkingDir": image.workdir, "Env": image.env},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer.digest}" for layer in image.layers]},
        "history": [{"created_by": "hack/images.py"} for _ in image.layers],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = hashlib.sha256(config_bytes).hexdigest()
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{config_digest}", "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": f"sha256:{layer.digest}", "size": layer.size} for layer in image.layers],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
    index = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": f"sha256:{manifest_digest}", "size": len(manifest_bytes),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": image.name,
                            "org.opencontainers.image.ref.name": image.name.rsplit(":", 1)[1]},
        }],
    }
    out = CACHE / f"image-{re.sub(r'[^A-Za-z0-9.-]', '_', image.name)}-{manifest_digest[:16]}.tar"
    if out.exists():
        os.utime(out)
        return out
    tmp = out.with_suffix(".partial")
    with tarfile.open(tmp, "w") as tar:
        def add_bytes(name: str, data: bytes) -> None:
            info = _tar_filter(tarfile.TarInfo(name))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add_bytes("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes("index.json", json.dumps(index).encode())
        add_bytes(f"blobs/sha256/{config_digest}", config_bytes)
        add_bytes(f"blobs/sha256/{manifest_digest}", manifest_bytes)
        for layer in image.layers:
            tar.add(layer.path, arcname=f"blobs/sha256/{layer.digest}", filter=_tar_filter)
    os.replace(tmp, out)
    return out


def python_image(name: str, requirements: list[str], sources: list[Path], scripts: dict[str, str],
                 files: dict[str, Path] | None = None, cmd: list[str] | None = None) -> Image:
    layers = [debian_python_layer(), pip_layer(name, requirements, sources),
              launcher_layer(name, scripts, files)]
    entry = [f"/usr/local/bin/{next(iter(scripts))}"]
    return Image(name, layers, entrypoint=entry, cmd=cmd or [], workdir="/tmp",  # noqa: S108 (the image's own /tmp)
                 env=["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHONPATH=/opt/agentobs/lib",
                      "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1"])


def pause_image() -> Image:
    def build(tree: Path) -> None:
        run("gcc", "-static", "-O2", "-s", "-o", tree / "pause", ROOT / "hack" / "images" / "pause.c")

    layer = cached_layer(digest_of("pause", ROOT / "hack" / "images" / "pause.c"), build)
    return Image("registry.k8s.io/pause:3.10", [layer], entrypoint=["/pause"], user="65535:65535")


def build_image(name: str) -> Image:
    version = chart_version()
    if name == "pause":
        return pause_image()
    if name == "coredns":
        return Image("registry.k8s.io/coredns/coredns:v1.14.7",
                     [go_program_layer("coredns", "coredns", "/coredns")], entrypoint=["/coredns"])
    if name == "prometheus":
        return Image("quay.io/prometheus/prometheus:v3.5.0",
                     [go_program_layer("prometheus", "prometheus", "/bin/prometheus", ["/prometheus"],
                                       {"promtool": "/bin/promtool"})],
                     entrypoint=["/bin/prometheus"], user="65534:65534", workdir="/prometheus")
    if name == "alertmanager":
        return Image("quay.io/prometheus/alertmanager:v0.28.1",
                     [go_program_layer("alertmanager", "alertmanager", "/bin/alertmanager",
                                       ["/alertmanager"], {"amtool": "/bin/amtool"})],
                     entrypoint=["/bin/alertmanager"], user="65534:65534", workdir="/alertmanager")
    if name == "jaeger":
        return Image("cr.jaegertracing.io/jaegertracing/jaeger:2.13.0",
                     [go_program_layer("jaeger", "jaeger", "/cmd/jaeger/jaeger-linux")],
                     entrypoint=["/cmd/jaeger/jaeger-linux"], user="10001:10001")
    if name == "operator":
        sources = [ROOT / "pyproject.toml", ROOT / "operator"]
        return python_image(f"ghcr.io/agentobs/agentobs-operator:{version}", [str(ROOT)], sources,
                            {"agentobs-operator": "agentobs.main"})
    if name == "example-agent":
        sources = [ROOT / "sdk"]
        return python_image(f"ghcr.io/agentobs/example-agent:{version}", [str(ROOT / "sdk")], sources,
                            {"example-agent": "example_agent"},
                            files={"/opt/agentobs/lib/example_agent.py":
                                   ROOT / "examples" / "agent" / "example_agent.py"})
    if name == "opensearch-standin":
        import standin  # imports this module's helpers; loaded only for this image
        return standin.image()
    raise SystemExit(f"images.py: no image {name!r}; known: {', '.join(ALL)}")


ALL = ["pause", "coredns", "prometheus", "alertmanager", "jaeger", "operator", "example-agent", "opensearch-standin"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["build", "import"])
    parser.add_argument("names", nargs="*", default=ALL)
    parser.add_argument("--address", help="containerd socket (import)")
    parser.add_argument("--ctr", default="ctr")
    args = parser.parse_intermixed_args()
    for name in args.names:
        image = build_image(name)
        archive = write_archive(image)
        if args.action == "import":
            if not args.address:
                parser.error("import needs --address")
            subprocess.run([args.ctr, "--address", args.address, "-n", "k8s.io", "images", "import",
                            str(archive)],
                           check=True, stdout=subprocess.DEVNULL)
        print(f"{image.name}\t{archive}", flush=True)
        sys.stdout.flush()
    pruned = image_cache.prune(CACHE)
    if pruned.files:
        print(f"images.py: removed {len(pruned.files)} superseded files ({pruned.bytes / 2**20:.0f} MiB) "
              f"from {CACHE}", file=sys.stderr)


if __name__ == "__main__":
    main()
