"""The real Alertmanager on what the operator renders: its config checks, and two peers started
with the rendered files (web TLS and basic auth, mutual TLS on the gossip) form a cluster on
loopback and replicate a silence.

Only addresses are changed from the rendered arguments (loopback ports instead of pod DNS names);
the certificates are real and carry the headless Service name the gossip client verifies.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentobs.api.spec import AgentObservabilitySpec
from agentobs.render import Owner, make_stack

from cluster_support import free_port
from local_programs import LocalPrograms
from rendered_files import lay_out_mounts, real_material, rewrite_paths

NOW = dt.datetime.now(dt.UTC)  # real processes check certificate validity against the real clock
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
AMTOOL = shutil.which("amtool")
pytestmark = pytest.mark.skipif(ALERTMANAGER is None or AMTOOL is None,
                                reason="needs alertmanager: apt-get install prometheus-alertmanager")


class Peers(LocalPrograms):
    """The rendered stack, its Alertmanager files on disk, and a way to call a peer's API."""

    def __init__(self, root: Path, replicas: int) -> None:
        owner = Owner(name="demo", namespace="agents", uid="u", spec=AgentObservabilitySpec.model_validate(
            {"prometheus": {"alertmanager": {"replicas": replicas}}}))
        material = real_material(owner, NOW)
        objects = make_stack(owner, material)
        self.mounts = lay_out_mounts(objects, "StatefulSet", "demo-alertmanager", root)
        sts = next(o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "demo-alertmanager")
        self.args: list[str] = sts["spec"]["template"]["spec"]["containers"][0]["args"]
        self.password = material.credentials["alertmanager-web-auth"]["password"]
        super().__init__(root, material.ca.cert_pem)
        for flag in ("web.config.file", "cluster.tls-config"):  # files that name other files
            path = self.rendered_file(flag)
            path.write_text(rewrite_paths(path.read_text(), self.mounts))

    def rendered_file(self, flag: str) -> Path:
        value = next(a.split("=", 1)[1] for a in self.args if a.startswith(f"--{flag}="))
        return Path(rewrite_paths(value, self.mounts))

    def start(self, web_ports: list[int], cluster_ports: list[int]) -> None:
        for i, (web, gossip) in enumerate(zip(web_ports, cluster_ports, strict=True)):
            args = [rewrite_paths(a, self.mounts) for a in self.args
                    if not a.startswith(("--web.listen-address", "--cluster.listen-address",
                                         "--cluster.advertise-address", "--cluster.peer", "--storage.path"))]
            data = self.root / f"data-{i}"
            data.mkdir()
            args += [f"--web.listen-address=127.0.0.1:{web}", f"--cluster.listen-address=127.0.0.1:{gossip}",
                     f"--cluster.advertise-address=127.0.0.1:{gossip}", f"--storage.path={data}",
                     *(f"--cluster.peer=127.0.0.1:{p}" for p in cluster_ports)]
            assert ALERTMANAGER is not None
            self.spawn(f"peer-{i}", [ALERTMANAGER, *args])

    def call(self, port: int, path: str, body: Any = None, password: str | None = None) -> Any:
        return json.loads(self.https(port, path, password or self.password, body) or b"null")


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[Peers]:
    running = Peers(tmp_path, replicas=2)
    yield running
    running.stop()


def test_amtool_accepts_the_default_config(peers: Peers) -> None:
    assert AMTOOL is not None
    result = subprocess.run([AMTOOL, "check-config", str(peers.rendered_file("config.file"))],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_peers_form_a_cluster_over_mutual_tls_and_replicate_silences(peers: Peers) -> None:
    web, gossip = [free_port(), free_port()], [free_port(), free_port()]
    peers.start(web, gossip)

    def clustered(port: int) -> Any:
        status = peers.call(port, "/api/v2/status")
        return status if status["cluster"]["status"] == "ready" and len(status["cluster"]["peers"]) == 2 else None

    for port in web:
        peers.poll(f"the peer on {port} to see both members", lambda port=port: clustered(port))

    silence = {"matchers": [{"name": "alertname", "value": "Test", "isRegex": False}],
               "startsAt": NOW.isoformat(), "endsAt": (NOW + dt.timedelta(hours=1)).isoformat(),
               "createdBy": "test", "comment": "gossip check"}
    created = peers.call(web[0], "/api/v2/silences", silence)["silenceID"]
    peers.poll("the silence to reach the other peer",
               lambda: any(s["id"] == created for s in peers.call(web[1], "/api/v2/silences")))

    with pytest.raises(urllib.error.HTTPError) as refused:
        peers.call(web[0], "/api/v2/status", password="wrong")
    assert refused.value.code == 401
