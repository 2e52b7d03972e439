"""The real Jaeger v2 binary accepts every configuration the operator renders.

`jaeger validate` loads a file the way `jaeger --config` does (decoding every component's section
strictly, so an unknown or misspelt key is an error) and runs each component's own validation,
without starting anything. The collector and query configs of several specs are rendered, the
files they name (certificates, the CA) are written into a temporary directory with real key
material, and the paths in the config are pointed there.

The binary is `AGENTOBS_JAEGER` when set, else the one `tools/ensure.sh jaeger` builds from the
pinned Go module. The operator renders the schema of Jaeger 2.x releases (its default image is
2.10); a binary built from a release candidate (module < v1.63.0, Jaeger 2.0.0-rc*) has other
Elasticsearch keys, so validating against it would only show that the schema changed: the test is
skipped then, saying so.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentobs import pki
from agentobs.api.spec import AgentObservabilitySpec
from agentobs.render import Owner, jaeger

from cluster_support import pinned_program

FIRST_GA_MODULE = (1, 63, 0)  # github.com/jaegertracing/jaeger v1.63.0 is Jaeger 2.0.0
EXTERNAL = {"url": "https://es.example.org:9243", "credentialsSecret": "team-es", "caSecret": "team-es-ca"}
SPECS: dict[str, dict[str, Any]] = {
    "default": {},
    "external": {"elasticsearch": {"external": EXTERNAL}},
    "external-system-roots": {"elasticsearch": {"external": {k: v for k, v in EXTERNAL.items()
                                                             if k != "caSecret"}}},
    "autoscaling": {"tracing": {"collector": {"autoscaling": {"enabled": True, "maxReplicas": 8}}}},
    "long-retention": {"tracing": {"retentionDays": 3650, "queryReplicas": 3}},
}
RENDERERS = {"collector": jaeger.make_collector_config, "query": jaeger.make_query_config}


def _module_version(binary: str) -> tuple[int, ...] | None:
    """The jaeger module version the binary was built from, read from its build info."""
    if shutil.which("go") is None:
        return None
    out = subprocess.run(["go", "version", "-m", binary], capture_output=True, text=True, check=False).stdout
    found = re.search(r"github\.com/jaegertracing/jaeger\s+v(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(n) for n in found.groups()) if found else None


@pytest.fixture(scope="module")
def jaeger_binary() -> str:
    binary = pinned_program("jaeger", "jaeger", "AGENTOBS_JAEGER")
    version = _module_version(binary)
    if version is not None and version < FIRST_GA_MODULE:
        pytest.skip(f"{binary} is built from github.com/jaegertracing/jaeger v{'.'.join(map(str, version))}, a "
                    "Jaeger 2.0.0 release candidate whose Elasticsearch keys differ from the 2.x releases the "
                    "operator deploys; pin tools/jaeger to the image's version (v1.73.0 is Jaeger 2.10.0) or "
                    "set AGENTOBS_JAEGER to a 2.x binary")
    return binary


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real key material where the rendered config expects it, under a temporary root."""
    root = tmp_path_factory.mktemp("jaeger-files")
    now = dt.datetime.now(dt.UTC)
    ca = pki.make_ca("test CA", now, dt.timedelta(days=1))
    serving = pki.issue(ca, "jaeger", ["localhost"], now, dt.timedelta(days=1))
    for directory, contents in [(jaeger.TLS_DIR, {"tls.crt": serving.cert_pem, "tls.key": serving.key_pem,
                                                  "ca.crt": ca.cert_pem}),
                                (jaeger.ES_CA_DIR, {"ca.crt": ca.cert_pem})]:
        target = root / directory.lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        for name, data in contents.items():
            (target / name).write_bytes(data)
    return root


def _relocated(config: dict[str, Any], root: Path) -> str:
    text = yaml.safe_dump(config, sort_keys=False)
    assert jaeger.CONFIG_DIR + "/" in text  # the rewrite below has something to rewrite
    return text.replace(jaeger.CONFIG_DIR + "/", f"{root}{jaeger.CONFIG_DIR}/")


def _validate(binary: str, text: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    path = workdir / "config.yaml"
    path.write_text(text)
    env = {**os.environ, "ES_USERNAME": "jaeger", "ES_PASSWORD": "not-a-real-password"}
    return subprocess.run([binary, "validate", f"--config=file:{path}"], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


@pytest.mark.parametrize("role", sorted(RENDERERS))
@pytest.mark.parametrize("variant", sorted(SPECS))
def test_jaeger_accepts_the_rendered_config(jaeger_binary: str, files: Path, tmp_path: Path, variant: str,
                                            role: str) -> None:
    owner = Owner(name="demo", namespace="agents", uid="u", spec=AgentObservabilitySpec.model_validate(SPECS[variant]))
    config = RENDERERS[role](owner)
    for path in re.findall(r"(/etc/jaeger/\S+)", yaml.safe_dump(config)):
        assert (files / path.lstrip("/")).is_file(), f"the test does not provide {path}"
    result = _validate(jaeger_binary, _relocated(config, files), tmp_path)
    assert result.returncode == 0, f"{variant}/{role} refused:\n{result.stderr[-3000:]}"


def test_validation_refuses_what_jaeger_does_not_know(jaeger_binary: str, files: Path, tmp_path: Path) -> None:
    """The check above can fail: a misspelt storage key is refused, naming the key."""
    config = jaeger.make_collector_config(Owner(name="demo", namespace="agents", uid="u",
                                                spec=AgentObservabilitySpec()))
    storage = config["extensions"]["jaeger_storage"]["backends"][jaeger.STORAGE]["elasticsearch"]
    storage["index_prefx"] = storage["indices"].pop("index_prefix")
    result = _validate(jaeger_binary, _relocated(config, files), tmp_path)
    assert result.returncode != 0
    assert "index_prefx" in result.stderr
