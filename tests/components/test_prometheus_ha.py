"""The real Prometheus pair and a real Alertmanager on what the operator renders: an alert both
replicas fire reaches Alertmanager once, and the readiness probes the pods run answer as they should.

Two Prometheus processes run the rendered config with the rendered web config (TLS, basic auth),
rules (an `extraRules` group that always fires), external labels (each its own `replica`, from
POD_NAME as in the pod) and `alert_relabel_configs`; one Alertmanager runs its rendered config and
web config. What differs from the pods, and why: addresses (loopback ports instead of pod DNS
names), so Kubernetes discovery is replaced by static targets and the TLS server name is given
explicitly; the evaluation interval and the alert resend delay are 1s so the test takes seconds
(a replica's first notification may go out before it discovered Alertmanager, and is dropped);
Alertmanager runs as a single peer (its gossip is `test_alertmanager.py`'s subject). Nothing of
the alerting path is changed.

Prometheus is the pinned v3 build when the tool cache has it, else Debian's 2.42 with
`--enable-feature=expand-external-labels` (v3 expands `${POD_NAME}` itself). The probe checks need
the pinned `promtool` (Debian's has no `check ready`) and Debian's `amtool`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentobs.api.spec import AgentObservabilitySpec
from agentobs.render import Owner, make_stack

from cluster_support import ROOT, free_port
from local_programs import LocalPrograms
from rendered_files import lay_out_mounts, real_material, rewrite_paths

NOW = dt.datetime.now(dt.UTC)  # real processes check certificate validity against the real clock
ALERT = "AgentObsTestAlwaysFiring"
SPEC = {"prometheus": {"extraRules": [{"name": "test", "rules": [
    {"alert": ALERT, "expr": "vector(1)", "labels": {"severity": "info"}}]}]}}
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
AMTOOL = shutil.which("amtool")


def _pinned(program: str) -> str | None:
    """A program of the pinned Prometheus build, if the tool cache has it (never built here)."""
    version = next(line.split()[2] for line in (ROOT / "tools" / "prometheus" / "go.mod").read_text().splitlines()
                   if line.startswith("require "))
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "agentobs" / f"prometheus-{version}"
    path = cache / program
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


PROMETHEUS = _pinned("prometheus") or shutil.which("prometheus")
PROMTOOL = _pinned("promtool")
pytestmark = pytest.mark.skipif(PROMETHEUS is None or ALERTMANAGER is None,
                                reason="needs prometheus and alertmanager: make debs")


class Stack(LocalPrograms):
    """The rendered files on disk, and the processes started from them."""

    def __init__(self, root: Path, spec: dict[str, Any]) -> None:
        self.owner = Owner(name="demo", namespace="agents", uid="u", spec=AgentObservabilitySpec.model_validate(spec))
        material = real_material(self.owner, NOW)
        self.objects = make_stack(self.owner, material)
        super().__init__(root, material.ca.cert_pem)
        self.passwords = {c: material.credentials[f"{c}-web-auth"]["password"] for c in ("prometheus", "alertmanager")}
        self.am_port, self.prom_ports = free_port(), [free_port(), free_port()]

    def _layout(self, component: str) -> tuple[dict[str, str], list[str]]:
        name = f"demo-{component}"
        mounts = lay_out_mounts(self.objects, "StatefulSet", name, self.root / component)
        sts = next(o for o in self.objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == name)
        args = [rewrite_paths(a, mounts) for a in sts["spec"]["template"]["spec"]["containers"][0]["args"]]
        for path in Path(self.root / component).rglob("*.yml"):  # files that name other files
            path.write_text(rewrite_paths(path.read_text(), mounts))
        return mounts, args

    def start_alertmanager(self) -> None:
        self.am_mounts, args = self._layout("alertmanager")
        keep = [a for a in args if a.startswith(("--config.file", "--web.config.file"))]
        data = self.root / "am-data"
        data.mkdir()
        assert ALERTMANAGER is not None
        self.spawn("alertmanager", [ALERTMANAGER, *keep, f"--storage.path={data}",
                                     f"--web.listen-address=127.0.0.1:{self.am_port}", "--cluster.listen-address="])

    def prometheus_config(self, relabel_alerts: bool) -> Path:
        """The rendered config with discovery replaced by loopback targets (see the module text)."""
        mounts, args = self._layout("prometheus")
        path = Path(next(a.split("=", 1)[1] for a in args if a.startswith("--config.file=")))
        config = yaml.safe_load(path.read_text())
        config["global"]["evaluation_interval"] = "1s"
        alerting = config["alerting"]
        if not relabel_alerts:
            del alerting["alert_relabel_configs"]
        [am] = alerting["alertmanagers"]
        del am["kubernetes_sd_configs"], am["relabel_configs"]
        am["static_configs"] = [{"targets": [f"127.0.0.1:{self.am_port}"]}]
        am["tls_config"]["server_name"] = self.owner.service_host("alertmanager")
        config["scrape_configs"] = []  # scraping is not under test here; the rules need no series
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.prom_mounts = mounts
        self.prom_args = args
        return path

    def start_prometheus_pair(self, relabel_alerts: bool) -> None:
        config = self.prometheus_config(relabel_alerts)
        web = next(a.split("=", 1)[1] for a in self.prom_args if a.startswith("--web.config.file="))
        assert PROMETHEUS is not None
        v2 = _pinned("prometheus") != PROMETHEUS  # Debian's 2.x needs the flag for ${POD_NAME}
        for i, port in enumerate(self.prom_ports):
            data = self.root / f"prom-data-{i}"
            data.mkdir()
            self.spawn(f"prometheus-{i}", [
                PROMETHEUS, f"--config.file={config}", f"--web.config.file={web}", f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{port}", "--rules.alert.resend-delay=1s",
                *(["--enable-feature=expand-external-labels"] if v2 else [])],
                env={"POD_NAME": f"demo-prometheus-{i}"})

    def get(self, component: str, port: int, path: str) -> Any:
        body = self.https(port, path, self.passwords[component])
        return json.loads(body) if body.startswith((b"{", b"[")) else body.decode()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = Stack(tmp_path, SPEC)
    yield running
    running.stop()


def _sent(stack: Stack, port: int) -> float:
    """Alerts this Prometheus delivered to Alertmanager (its own counter, read over its web TLS)."""
    text = stack.get("prometheus", port, "/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("prometheus_notifications_sent_total"))


def _alerts_in_alertmanager(stack: Stack, relabel_alerts: bool) -> list[dict[str, Any]]:
    stack.start_alertmanager()
    stack.start_prometheus_pair(relabel_alerts)
    for port in stack.prom_ports:  # both replicas fired and delivered, so both copies had their chance
        stack.poll(f"Prometheus on {port} to deliver alerts", lambda port=port: _sent(stack, port) >= 2)
    alerts = stack.get("alertmanager", stack.am_port, f"/api/v2/alerts?filter=alertname%3D%22{ALERT}%22")
    assert isinstance(alerts, list)
    return alerts


def test_an_alert_both_replicas_fire_arrives_once(stack: Stack) -> None:
    alerts = _alerts_in_alertmanager(stack, relabel_alerts=True)
    assert len(alerts) == 1, json.dumps(alerts, indent=1)
    labels = alerts[0]["labels"]
    assert "replica" not in labels
    assert labels["agentobs"] == "demo" and labels["severity"] == "info"  # the other labels are kept


def test_without_the_relabelling_the_pair_shows_each_alert_twice(stack: Stack) -> None:
    """The control: the same run with `alert_relabel_configs` removed gets one alert per replica."""
    alerts = _alerts_in_alertmanager(stack, relabel_alerts=False)
    assert sorted(a["labels"]["replica"] for a in alerts) == ["demo-prometheus-0", "demo-prometheus-1"]


# --- readiness probes: the exec commands the pods run, against the real servers -------------------

def _probe_argv(stack: Stack, component: str, port: int, mounts: dict[str, str]) -> list[str]:
    sts = next(o for o in stack.objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == f"demo-{component}")
    argv = [rewrite_paths(a, mounts) for a in
            sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["command"]]
    default_port = {"prometheus": 9090, "alertmanager": 9093}[component]
    return [a.replace(f"localhost:{default_port}", f"localhost:{port}") for a in argv]


@pytest.mark.skipif(PROMTOOL is None, reason="needs the pinned promtool (tools/ensure.sh prometheus): Debian's "
                    "has no `check ready`")
def test_prometheus_readiness_probe_passes_with_the_mounted_password_only(stack: Stack) -> None:
    stack.start_alertmanager()
    stack.start_prometheus_pair(relabel_alerts=True)
    port = stack.prom_ports[0]
    argv = _probe_argv(stack, "prometheus", port, stack.prom_mounts)
    assert PROMTOOL is not None
    argv[0] = PROMTOOL
    stack.poll("the probe to pass", lambda: subprocess.run(argv, capture_output=True, check=False).returncode == 0)
    password = Path(stack.prom_mounts["/etc/prometheus/auth"]) / "password"
    password.write_text("wrong")
    refused = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "401" in refused.stdout + refused.stderr


@pytest.mark.skipif(AMTOOL is None, reason="needs amtool: make debs")
def test_alertmanager_readiness_probe_passes_with_the_mounted_password_only(stack: Stack) -> None:
    stack.start_alertmanager()
    mounts = stack.am_mounts
    argv = _probe_argv(stack, "alertmanager", stack.am_port, mounts)
    assert AMTOOL is not None
    argv[0] = AMTOOL
    stack.poll("the probe to pass", lambda: subprocess.run(argv, capture_output=True, check=False).returncode == 0)
    (Path(mounts["/etc/alertmanager/auth"]) / "password").write_text("wrong")
    refused = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert refused.returncode != 0, refused.stdout
