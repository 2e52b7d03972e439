"""What the scale bench reads while it runs: the API server's request counters, the CPU of the
control plane's programs and of a child process, and the operator's own request metrics; and the
wait for a quiet cluster before a window."""

from __future__ import annotations

import math
import os
import re
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path

from cluster_support import tool_dir

SAMPLE = 5.0  # seconds between two reads of the API server's counters

# What a CronJob's run writes: its Job, the Job's pod, their status and events. At steady state the
# retention CronJobs' runs (daily, at an hour and minute taken from each resource's uid) are most of
# the writes left in both phases, in bursts at the top of a minute; shown apart so the rest can be
# compared.
RUN_RESOURCES = {"jobs", "cronjobs", "pods", "events"}
WRITES = {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}
READS = {"GET", "LIST"}
SAMPLE_LINE = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$')


class Process:
    """A child process with its CPU time and memory read from /proc."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(args, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_mib(self, field: str) -> float:
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return math.nan

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def kubectl(*args: str, check: bool = True) -> str:
    result = subprocess.run([tool_dir("kubernetes") + "/kubectl", *args], capture_output=True, text=True,
                            check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr}")
    return result.stdout


def apiserver_requests() -> Counter[str]:
    """Requests so far by class (write, read, watch), lease traffic apart, the scrape itself left out."""
    totals: Counter[str] = Counter()
    for line in kubectl("get", "--raw", "/metrics").splitlines():
        match = SAMPLE_LINE.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        verb, resource = labels.get("verb", ""), labels.get("resource", "")
        if not resource:
            continue
        cls = "write" if verb in WRITES else "read" if verb in READS else "watch" if verb == "WATCH" else ""
        if cls:
            value = int(float(match["value"]))
            totals[cls + ("-lease" if resource == "leases" else "")] += value
            if cls == "write" and resource in RUN_RESOURCES:
                totals["write-runs"] += value
    return totals


def control_plane_cpu() -> dict[str, float]:
    """CPU seconds so far of each program of this clone's cluster (apiserver, etcd, controllers,
    kwok): whether a stack costs the control plane more as the cluster grows."""
    state = str(Path(os.environ["KUBECONFIG"]).parent) + "/"
    out: dict[str, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if not any(a.startswith(state) or a.startswith(f"--kubeconfig={state}") for a in args):
                continue  # kwok runs from the tool cache, with this cluster's kubeconfig
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        name = Path(args[0]).name
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def operator_requests(port: int) -> Counter[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith(("agentobs_api_requests_total{", "agentobs_queue_depth{")):
            name, value = line.rsplit(" ", 1)
            labels = dict(re.findall(r'(\w+)="([^"]*)"', name))
            if name.startswith("agentobs_queue_depth"):  # routine resyncs come and go at steady state
                out["queued"] += int(float(value)) if labels["priority"] != "resync" else 0
            elif labels["resource"] != "leases":
                verb = labels["verb"]
                out["write" if verb in ("create", "update", "patch", "apply", "delete") else verb] += int(float(value))
    return out


def wait_cluster_quiet(samples: int = 3, timeout: float = 300.0) -> float:
    """Until `samples` consecutive SAMPLE-second spans pass without a write from any client
    (Leases apart); returns the seconds waited.

    A window must not begin while the controllers still work off the ramp (Deployment and
    ReplicaSet status, endpoint slices, budgets, events): whichever phase came first would pay for
    it. At steady state most spans have no such write; the retention CronJobs' Jobs come in bursts
    at the top of each minute."""
    started = time.monotonic()
    prev, quiet = apiserver_requests(), 0
    while quiet < samples and time.monotonic() - started < timeout:
        time.sleep(SAMPLE)
        now = apiserver_requests()
        quiet = quiet + 1 if now["write"] == prev["write"] else 0
        prev = now
    if quiet < samples:
        print(f"  (the cluster did not go quiet in {timeout:.0f} s; measuring anyway)", flush=True)
    return time.monotonic() - started
