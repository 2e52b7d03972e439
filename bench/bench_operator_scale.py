"""Operator scale benchmark on the local control plane: N stacks, time until all are Ready, and
the steady state (requests per second, CPU, RSS) against a do-nothing kopf operator that watches
the same resources, in the same run, rounds interleaved.

    AGENTOBS_BENCH_SIZES=200,1000 AGENTOBS_BENCH_WINDOW=60 AGENTOBS_BENCH_ROUNDS=2 \\
        python bench/bench_operator_scale.py

Defaults (what `make bench` runs): size 50, a 30 s window, 2 rounds (about 7 minutes on 2 cores,
and then the deletion of its namespace is waited for, so a second size starts on a quiet cluster).
The cluster is the project's (`hack/cluster.sh up`, reused when running). The benchmark adds kwok
nodes of its own with room for every pod (deleted at the end), and stacks with `LIGHT_SPEC`: the
smallest stack the API allows (Prometheus and Alertmanager one replica each, Jaeger's collector at
its minimum of two, one query and one Grafana replica, an external Elasticsearch, logging off,
requests of 1m CPU and 1Mi memory: 6 pods and 45 objects per stack), `AGENTOBS_BENCH_PER_NAMESPACE`
(default 200) stacks per namespace at every size: 1,000 stacks are five namespaces of 200. The
density is held, not the number of namespaces, because several Kubernetes controllers match each
pod change against every object of a kind in the pod's namespace (the disruption controller its
budgets, the endpoint-slice controller and the scheduler's default spreading its Services): with
more stacks per namespace each pod costs the control plane more, whatever the operator does. The
operator runs with its defaults (4 workers, resync max(60 s, N / 2 per second)), limited to the
benchmark's namespaces, as is the baseline.

Before the operator's phase at each size, a replay phase (scale_replay.py; off with
AGENTOBS_BENCH_REPLAY=0) applies the same rendered children of as many stacks with a plain client
and waits until every workload is ready: the control plane's own time for the same objects on the
same two cores. Time to Ready is mostly the control plane's work, so its growth from one size to
the next is read against the replay's: the last line gives both and their quotient, the growth of
the operator's own share.

Requests come from the API server's `apiserver_request_total` (all clients: the controller
manager, scheduler and kwok make the same background in both phases, so the ratio is that of the
totals), sampled every 5 s over each window (mean, p50, p99 of the 5 s rates), and, for the
operator alone, from its own `agentobs_api_requests_total`. Each window starts once no client has
written anything but Leases for 15 s, so neither phase inherits the controllers' work on the ramp.
Writes to Jobs, pods and events are also shown apart: at steady state they are the retention
CronJobs' runs, the same in both phases but bursty, so a 60 s window's share depends on its minute.
CPU is user+system time of the process over the window; RSS is the process's peak (VmHWM) and its
RSS at the end of the window.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from agentobs.kube import Kube, KubeError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from scale_probes import (  # noqa: E402
    SAMPLE,
    Process,
    apiserver_requests,
    control_plane_cpu,
    kubectl,
    operator_requests,
    wait_cluster_quiet,
)

from cluster_support import free_port, start_cluster, tool_dir  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from scale_replay import WorkloadWatch  # noqa: E402

SIZES = [int(s) for s in os.environ.get("AGENTOBS_BENCH_SIZES", "50").split(",") if s]
WINDOW = float(os.environ.get("AGENTOBS_BENCH_WINDOW", "30"))
ROUNDS = int(os.environ.get("AGENTOBS_BENCH_ROUNDS", "2"))
PER_NAMESPACE = int(os.environ.get("AGENTOBS_BENCH_PER_NAMESPACE", "200"))
OPERATOR_WORKERS = 4  # the operator's default (AGENTOBS_WORKERS); the replay applies with as many threads
REPLAY = os.environ.get("AGENTOBS_BENCH_REPLAY", "1") != "0"
BENCH_LABEL = "bench.agentobs.io/run"  # on every resource a run creates, for its watch
NODE_CAPACITY = {"cpu": "1000", "memory": "4Ti", "pods": "1000"}  # room for every pod of the stacks
TINY = {"requests": {"cpu": "1m", "memory": "1Mi"}, "limits": {"memory": "16Mi"}}
LIGHT_SPEC: dict[str, Any] = {
    "prometheus": {"highAvailability": False, "replicas": 1, "resources": TINY,
                   "storage": {"size": "1Mi"}, "alertmanager": {"replicas": 1, "resources": TINY}},
    "tracing": {"collector": {"replicas": 2, "resources": TINY}, "queryResources": TINY},
    "elasticsearch": {"external": {"url": "https://es.bench.invalid:9200", "credentialsSecret": "es"}},
    "logging": {"enabled": False},
    "grafana": {"resources": TINY},
}
def start_operator(prefix: str, log: Path) -> tuple[Process, int]:
    port = free_port()
    env = {"AGENTOBS_BIND_ADDRESS": "127.0.0.1", "AGENTOBS_NAMESPACES": f"{prefix}-*",
           "AGENTOBS_METRICS_PORT": str(port), "AGENTOBS_HEALTH_PORT": str(free_port()),
           "AGENTOBS_WEBHOOK_PORT": str(free_port()), "AGENTOBS_WEBHOOK_CONFIGURATION": f"agentobs-webhook-{prefix}"}
    proc = Process([sys.executable, "-m", "agentobs.main"], env, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            operator_requests(port)
            return proc, port
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the operator did not start; see {log}")


def wait_quiet(port: int, quiet: float = 10.0, timeout: float = 1800.0) -> float:
    """Until no new resource or changed child waits in the operator's queue and it has written
    nothing for `quiet` seconds (routine resyncs keep coming: they are the steady state)."""
    started = time.monotonic()
    last, since = operator_requests(port), time.monotonic()
    while time.monotonic() - started < timeout:
        time.sleep(1.0)
        now = operator_requests(port)
        if now["write"] != last["write"] or now["queued"]:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return time.monotonic() - started
    raise RuntimeError("the operator did not settle")


def make_nodes(prefix: str, stacks: int) -> list[str]:
    names = [f"{prefix}-node-{i}" for i in range(max(1, math.ceil(stacks * 6 / 900)))]
    for name in names:
        manifest = json.dumps({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"type": "kwok", "kubernetes.io/hostname": name},
                         "annotations": {"kwok.x-k8s.io/node": "fake"}},
            "status": {"allocatable": NODE_CAPACITY, "capacity": NODE_CAPACITY}})
        subprocess.run([tool_dir("kubernetes") + "/kubectl", "apply", "-f", "-"], input=manifest, text=True,
                       capture_output=True, check=True)
    return names


def _is_ready(res: dict[str, Any]) -> bool:
    conditions = (res.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def wait_ready(kube: Kube, selector: str, size: int, started: float, operator: Process) -> None:
    """Until `size` resources carrying `selector` are Ready, followed through one watch.

    A watch, not a list every few seconds: a poll reads every resource each time, so its cost
    grows with the number of stacks times the time they take, and the API server and this
    process (on the same two cores as the operator) would spend more per stack at 1,000 than at
    200 on the measurement itself."""
    ready: dict[tuple[str, str], bool] = {}
    version, last_report = "", 0.0
    timeout = float(os.environ.get("AGENTOBS_BENCH_READY_TIMEOUT", "3600"))

    def key(res: dict[str, Any]) -> tuple[str, str]:
        return res["metadata"]["namespace"], res["metadata"]["name"]

    while True:
        try:
            if not version:  # first, or the watch's version expired: start from a list
                ready.clear()
                cont = ""
                while True:
                    items, version, cont = kube.list_page("agentobs.io/v1alpha1", "AgentObservability", None,
                                                          selector, limit=500, continue_=cont)
                    ready.update((key(r), _is_ready(r)) for r in items)
                    if not cont:
                        break
            for kind, res in kube.watch("agentobs.io/v1alpha1", "AgentObservability", None, selector, version,
                                        timeout_seconds=60):
                if kind == "ERROR":  # 410 Gone: list again
                    version = ""
                    break
                version = res.get("metadata", {}).get("resourceVersion", version)
                if kind == "DELETED":
                    ready.pop(key(res), None)
                elif kind in ("ADDED", "MODIFIED"):
                    ready[key(res)] = _is_ready(res)
                if sum(ready.values()) >= size:
                    return
                elapsed = time.monotonic() - started
                if elapsed - last_report >= 60:  # progress, for runs that take long
                    last_report = elapsed
                    print(f"  {elapsed:5.0f} s: {sum(ready.values())}/{size} Ready, operator RSS "
                          f"{operator.memory_mib('VmRSS'):.0f} MiB (peak {operator.memory_mib('VmHWM'):.0f}), "
                          f"CPU {operator.cpu_seconds():.0f} s", flush=True)
        except KubeError as exc:  # 429 while a CRD's storage is re-initialised, a 5xx, no connection
            if not (exc.status in (0, 429) or exc.status >= 500):
                raise
            print(f"  (watch interrupted: {exc.status} {exc.message})", flush=True)
            time.sleep(1.0)
        if sum(ready.values()) >= size:
            return
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            raise RuntimeError(f"only {sum(ready.values())}/{size} Ready after {elapsed:.0f} s")


def window(proc: Process, port: int | None) -> dict[str, Any]:
    """Sample the API server every SAMPLE seconds for WINDOW seconds while `proc` runs, once the
    cluster is quiet."""
    waited = wait_cluster_quiet()
    rates: dict[str, list[float]] = {"write": [], "read": [], "write-nolease": [], "write-other": []}
    cpu0, ops0 = proc.cpu_seconds(), operator_requests(port) if port else Counter()
    prev, t_prev = apiserver_requests(), time.monotonic()
    first, t_first = prev, t_prev
    while time.monotonic() - t_first < WINDOW:
        time.sleep(SAMPLE)
        now, t_now = apiserver_requests(), time.monotonic()
        span = t_now - t_prev
        rates["write"].append((now["write"] + now["write-lease"] - prev["write"] - prev["write-lease"]) / span)
        rates["write-nolease"].append((now["write"] - prev["write"]) / span)
        rates["write-other"].append((now["write"] - now["write-runs"] - prev["write"] + prev["write-runs"]) / span)
        rates["read"].append((now["read"] + now["read-lease"] - prev["read"] - prev["read-lease"]) / span)
        prev, t_prev = now, t_now
    span = t_prev - t_first
    ops = (operator_requests(port) - ops0) if port else Counter()
    return {"rates": rates, "waited": waited, "cpu": (proc.cpu_seconds() - cpu0) / span,
            "rss": proc.memory_mib("VmRSS"), "hwm": proc.memory_mib("VmHWM"),
            "watch": (prev["watch"] - first["watch"]) / span,
            "own": {k: v / span for k, v in ops.items() if k != "queued"}}


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p50, p99 = (ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in (0.5, 0.99))
    return f"mean {statistics.fmean(values):7.2f}  p50 {p50:7.2f}  p99 {p99:7.2f}"


def bench(kube: Kube, size: int, logs: Path) -> dict[str, Any]:
    prefix = f"bench{uuid.uuid4().hex[:5]}"
    namespaces = [f"{prefix}-{i}" for i in range(max(1, math.ceil(size / PER_NAMESPACE)))]
    nodes = make_nodes(prefix, size)
    for namespace in namespaces:
        kubectl("create", "namespace", namespace)
    operator: Process | None
    operator, port = start_operator(prefix, logs / f"operator-{size}-0.log")
    result: dict[str, Any] = {"size": size, "namespaces": len(namespaces), "nodes": len(nodes)}
    try:
        api0, own0, cpu0 = apiserver_requests(), operator_requests(port), operator.cpu_seconds()
        plane0 = control_plane_cpu()
        started = time.monotonic()
        for i in range(size):
            kube.apply({"apiVersion": "agentobs.io/v1alpha1", "kind": "AgentObservability",
                        "metadata": {"name": f"s{i}", "namespace": namespaces[i % len(namespaces)],
                                     "labels": {BENCH_LABEL: prefix}},
                        "spec": LIGHT_SPEC})
        result["create_seconds"] = time.monotonic() - started
        wait_ready(kube, f"{BENCH_LABEL}={prefix}", size, started, operator)
        result["ready_seconds"] = time.monotonic() - started
        # Work per stack until all were Ready: whether the time per stack grows because each stack
        # costs more requests or CPU, or because each request costs the control plane more.
        api, own = apiserver_requests() - api0, operator_requests(port) - own0
        result["converge"] = {"writes": api["write"] / size, "operator_writes": own["write"] / size,
                              "operator_reads": (own["get"] + own["list"]) / size,
                              "operator_cpu": (operator.cpu_seconds() - cpu0) / size,
                              "control_plane_cpu": {k: (v - plane0.get(k, 0.0)) / size
                                                    for k, v in control_plane_cpu().items()}}
        result["startup_hwm"] = operator.memory_mib("VmHWM")
        result["settle_seconds"] = wait_quiet(port)
        rounds: dict[str, list[dict[str, Any]]] = {"operator": [], "baseline": []}
        for r in range(ROUNDS):
            for who in (("operator", "baseline") if r % 2 == 0 else ("baseline", "operator")):
                if who == "operator":
                    if operator is None:
                        operator, port = start_operator(prefix, logs / f"operator-{size}-{r}.log")
                        result.setdefault("restart_settle_seconds", []).append(wait_quiet(port))
                    rounds["operator"].append(window(operator, port))
                else:
                    if operator is not None:
                        operator.stop()
                        operator = None
                    noop = Process([sys.executable, str(ROOT / "bench" / "noop_operator.py"), f"{prefix}-*"], {},
                                   logs / f"noop-{size}-{r}.log")
                    time.sleep(15.0)  # its initial listing
                    try:
                        rounds["baseline"].append(window(noop, None))
                    finally:
                        noop.stop()
        result["rounds"] = rounds
    finally:
        if operator is not None:
            operator.stop()
        kubectl("delete", "mutatingwebhookconfiguration", f"agentobs-webhook-{prefix}", "--ignore-not-found",
                check=False)
        clean_up(namespaces, nodes)
    return result


def clean_up(namespaces: list[str], nodes: list[str]) -> None:
    for namespace in namespaces:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    for node in nodes:
        kubectl("delete", "node", node, "--wait=false", check=False)
    # The namespace controller's deletes would swamp the next phase's measurements.
    deadline = time.monotonic() + float(os.environ.get("AGENTOBS_BENCH_CLEANUP_TIMEOUT", "1800"))
    while time.monotonic() < deadline and any(
            kubectl("get", "namespace", n, "--ignore-not-found", "-o", "name", check=False).strip()
            for n in namespaces):
        time.sleep(10.0)


def replay(kube: Kube, size: int, logs: Path) -> dict[str, Any]:
    """The same children applied by a plain client, no operator (scale_replay.py): the control
    plane's own time to Ready for `size` stacks, in namespaces and on nodes of its own."""
    prefix = f"replay{uuid.uuid4().hex[:5]}"
    namespaces = [f"{prefix}-{i}" for i in range(max(1, math.ceil(size / PER_NAMESPACE)))]
    nodes = make_nodes(prefix, size)
    for namespace in namespaces:
        kubectl("create", "namespace", namespace)
    watch = WorkloadWatch(kube, prefix)
    log = logs / f"replay-{size}.log"
    try:
        plane0, started = control_plane_cpu(), time.monotonic()
        with log.open("w") as out:
            done = subprocess.run([sys.executable, str(ROOT / "bench" / "scale_replay.py"), prefix, str(size),
                                   str(PER_NAMESPACE), str(OPERATOR_WORKERS)], input=json.dumps(LIGHT_SPEC),
                                  text=True, stdout=subprocess.PIPE, stderr=out, check=True)
        applied = json.loads(done.stdout.strip().splitlines()[-1])
        timeout = float(os.environ.get("AGENTOBS_BENCH_READY_TIMEOUT", "3600"))
        if not watch.wait_for(applied["workloads"], timeout):
            raise RuntimeError(f"replay: {watch.count()}/{applied['workloads']} workloads ready after {timeout} s")
        ready = time.monotonic() - started
        plane = {k: (v - plane0.get(k, 0.0)) / size for k, v in control_plane_cpu().items()}
        return {"applied_seconds": applied["seconds"], "ready_seconds": ready, "client_cpu": applied["cpu"] / size,
                "control_plane_cpu": plane}
    finally:
        watch.stop()
        clean_up(namespaces, nodes)


def report(result: dict[str, Any]) -> None:
    size, rounds = result["size"], result["rounds"]
    print(f"\n== {size} stacks ({result['namespaces']} namespaces, {result['nodes']} extra kwok nodes) ==")
    print(f"created in {result['create_seconds']:.1f} s; all Ready after {result['ready_seconds']:.1f} s "
          f"({result['ready_seconds'] / size * 1000:.0f} ms per stack); settled (no writes, empty queue) "
          f"{result['settle_seconds']:.1f} s later; operator peak RSS until then {result['startup_hwm']:.0f} MiB")
    conv = result["converge"]
    print(f"per stack until Ready: {conv['writes']:.1f} API writes from all clients (Leases apart), "
          f"{conv['operator_writes']:.1f} of them the operator's, {conv['operator_reads']:.2f} operator reads, "
          f"{conv['operator_cpu'] * 1000:.0f} ms operator CPU")
    plane = conv["control_plane_cpu"]
    print(f"control-plane CPU per stack until Ready: {sum(plane.values()) * 1000:.0f} ms (" +
          ", ".join(f"{k} {v * 1000:.0f}" for k, v in sorted(plane.items(), key=lambda kv: -kv[1])) + ")")
    if result.get("restart_settle_seconds"):
        print("after a restart the operator settled in " +
              ", ".join(f"{s:.1f} s" for s in result["restart_settle_seconds"]))
    for metric, label in (("write", "API writes/s (all clients)"), ("write-nolease", "  of which not Leases"),
                          ("write-other", "  nor Jobs, pods, events"),
                          ("read", "API reads/s (all clients)")):
        op = [v for w in rounds["operator"] for v in w["rates"][metric]]
        base = [v for w in rounds["baseline"] for v in w["rates"][metric]]
        ratio = statistics.fmean(op) / statistics.fmean(base) if statistics.fmean(base) else math.nan
        print(f"{label:28} operator {summary(op)} | baseline {summary(base)} | ratio {ratio:.2f}")
    for key, label in (("cpu", "CPU (cores)"), ("rss", "RSS at window end (MiB)"), ("hwm", "peak RSS (MiB)"),
                       ("watch", "watch requests/s")):
        op = [w[key] for w in rounds["operator"]]
        base = [w[key] for w in rounds["baseline"]]
        print(f"{label:28} operator {statistics.fmean(op):8.3f} | baseline {statistics.fmean(base):8.3f} | "
              f"ratio {statistics.fmean(op) / statistics.fmean(base) if statistics.fmean(base) else math.nan:.2f}")
    print("windows in the order run (non-Lease writes/s, mean; seconds waited for a quiet cluster first): " +
          ", ".join(f"{who} {statistics.fmean(w['rates']['write-nolease']):.2f} ({w['waited']:.0f} s)"
                    for who, w in _in_order(rounds)))
    own: Counter[str] = Counter()
    for w in rounds["operator"]:
        own.update(w["own"])
    print("operator's own requests/s over its windows: " +
          (", ".join(f"{k} {v / len(rounds['operator']):.3f}" for k, v in sorted(own.items())) or "none"))


def report_replay(size: int, rep: dict[str, Any], operator_ready: float) -> None:
    plane = rep["control_plane_cpu"]
    print(f"the same objects without the operator (plain client, {OPERATOR_WORKERS} threads): applied in "
          f"{rep['applied_seconds']:.1f} s, all workloads ready after {rep['ready_seconds']:.1f} s "
          f"({rep['ready_seconds'] / size * 1000:.0f} ms per stack; the operator's phase took "
          f"{operator_ready / rep['ready_seconds']:.2f}x); client CPU {rep['client_cpu'] * 1000:.0f} ms per stack; "
          f"control-plane CPU per stack {sum(plane.values()) * 1000:.0f} ms (" +
          ", ".join(f"{k} {v * 1000:.0f}" for k, v in sorted(plane.items(), key=lambda kv: -kv[1])) + ")")


def _in_order(rounds: dict[str, list[dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for r in range(len(rounds["operator"])):
        order = ("operator", "baseline") if r % 2 == 0 else ("baseline", "operator")
        out += [(who, rounds[who][r]) for who in order if r < len(rounds[who])]
    return out


def main() -> None:
    start_cluster()
    subprocess.run([tool_dir("kubernetes") + "/kubectl", "apply", "--server-side", "--force-conflicts", "-f",
                    str(ROOT / "crds")], check=True, capture_output=True)
    kube = Kube()
    logs = Path(os.environ.get("AGENTOBS_BENCH_LOGS", "/tmp/agentobs-bench"))
    logs.mkdir(parents=True, exist_ok=True)
    print(f"operator scale: sizes {SIZES}, {ROUNDS} rounds of {WINDOW:.0f} s each, logs in {logs}")
    started = time.monotonic()
    replays: dict[int, dict[str, Any]] = {}
    readies: dict[int, float] = {}
    for size in SIZES:
        if REPLAY:  # first, on a quiet cluster, as the operator's phase starts on one
            replays[size] = replay(kube, size, logs)
        result = bench(kube, size, logs)
        readies[size] = result["ready_seconds"]
        report(result)
        if size in replays:
            report_replay(size, replays[size], result["ready_seconds"])
    if len(replays) > 1:
        small, large = min(replays), max(replays)
        growth = (readies[large] / large) / (readies[small] / small)
        alone = (replays[large]["ready_seconds"] / large) / (replays[small]["ready_seconds"] / small)
        print(f"\ntime to Ready per stack, {large} against {small}: with the operator {growth:.2f}x, the same "
              f"objects applied without it {alone:.2f}x; the operator's own share grows {growth / alone:.2f}x")
    print(f"\ntotal {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
