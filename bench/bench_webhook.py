"""Webhook benchmarks: in-process mutation latency, and pod creation through the API server with
and without the webhook, measured in the same run.

    python bench/bench_webhook.py [--pods 10000] [--api-pods 150] [--skip-api]

In process: choosing the resource and building the JSON patch the API server receives (what the
webhook does per pod besides HTTP), over pods of varied shapes; the baseline is a JSON round trip
of the same pod (the decoding and encoding any webhook pays); and choosing among 1,000 resources
from the webhook's index against a scan of them all. Through the API server (the local
cluster, `hack/cluster.sh up`): create latency of selected agent pods while the operator's webhook
is registered, then with the configuration removed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from agentobs.admission.injection import ConfigIndex, choose, make_config, patch_ops
from agentobs.api.spec import AgentObservabilitySpec
from agentobs.render.common import Owner

ROOT = Path(__file__).resolve().parent.parent


def make_pods(count: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    pods = []
    for i in range(count):
        containers = [{"name": f"c{j}", "image": f"img{j}:1",
                       "env": [{"name": f"V{k}", "value": "x" * rng.randint(1, 40)} for k in range(rng.randint(0, 12))],
                       "volumeMounts": [{"name": "data", "mountPath": "/data"}] if rng.random() < 0.5 else []}
                      for j in range(rng.randint(1, 4))]
        labels = {"agentobs.io/agent": "true", "app.kubernetes.io/name": f"agent-{i % 50}"}
        if rng.random() < 0.2:
            labels["pod-template-hash"] = "abc12"
        pod: dict[str, Any] = {
            "metadata": {"name": f"p{i}", "namespace": "agents", "labels": labels,
                         "annotations": {f"note{k}": "y" * 20 for k in range(rng.randint(0, 6))}},
            "spec": {"containers": containers, "volumes": [{"name": "data", "emptyDir": {}}]},
        }
        if rng.random() < 0.3:
            pod["spec"]["initContainers"] = [{"name": "init", "image": "init:1"}]
        if rng.random() < 0.1:
            pod["metadata"]["annotations"]["agentobs.io/inject"] = "false"
        pods.append(pod)
    return pods


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_in_process(count: int) -> None:
    owner = Owner(name="obs", namespace="agents", uid="u", spec=AgentObservabilitySpec())
    config = make_config(owner)
    assert config is not None
    pods = make_pods(count)
    base, hook = [], []
    for pod in pods:
        t0 = time.perf_counter()
        json.loads(json.dumps(pod))
        t1 = time.perf_counter()
        chosen = choose(pod, "agents", {}, [config])
        if chosen is not None:
            json.dumps(patch_ops(pod, chosen))
        t2 = time.perf_counter()
        base.append(t1 - t0)
        hook.append(t2 - t1)
    print(f"in-process mutation over {count} pods (µs)")
    print(f"  {'':28} {'p50':>8} {'p99':>8} {'mean':>8}")
    for name, values in (("baseline: JSON round trip", base), ("choose + JSON patch", hook)):
        print(f"  {name:28} {percentile(values, .5) * 1e6:8.1f} {percentile(values, .99) * 1e6:8.1f}"
              f" {statistics.fmean(values) * 1e6:8.1f}")
    print(f"  ratio p50 {percentile(hook, .5) / percentile(base, .5):.2f}x, "
          f"p99 {percentile(hook, .99) / percentile(base, .99):.2f}x")


def bench_many_resources(count: int, resources: int) -> None:
    """Choosing among `resources` resources, one per namespace: from the index (what the webhook
    does) against a scan of every config (what it did before), alternating per pod."""
    configs = []
    for i in range(resources):
        config = make_config(Owner(name="obs", namespace=f"team-{i}", uid=f"u{i}", spec=AgentObservabilitySpec()))
        assert config is not None
        configs.append(config)
    index = ConfigIndex()
    for config in configs:
        index.put(config)
    rng = random.Random(11)
    scan, indexed = [], []
    for n, pod in enumerate(make_pods(count)):
        namespace = f"team-{rng.randrange(resources)}"
        for which in ((0, 1) if n % 2 == 0 else (1, 0)):
            t0 = time.perf_counter()
            if which == 0:
                chosen = choose(pod, namespace, {}, configs)
            else:
                chosen = choose(pod, namespace, {}, index.candidates(pod, namespace))
            elapsed = time.perf_counter() - t0
            (scan if which == 0 else indexed).append(elapsed)
            assert chosen is None or chosen.namespace == namespace
    print(f"choosing the resource for {count} pods among {resources} resources, one per namespace (µs)")
    print(f"  {'':28} {'p50':>8} {'p99':>8} {'mean':>8}")
    for name, values in (("baseline: scan every config", scan), ("index of the namespace", indexed)):
        print(f"  {name:28} {percentile(values, .5) * 1e6:8.1f} {percentile(values, .99) * 1e6:8.1f}"
              f" {statistics.fmean(values) * 1e6:8.1f}")
    print(f"  ratio p50 {percentile(indexed, .5) / percentile(scan, .5):.3f}x, "
          f"p99 {percentile(indexed, .99) / percentile(scan, .99):.3f}x")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_api(count: int) -> None:
    out = subprocess.run([str(ROOT / "hack" / "cluster.sh"), "up"], capture_output=True, text=True, check=True)
    os.environ["KUBECONFIG"] = out.stdout.strip().splitlines()[-1].removeprefix("export KUBECONFIG=")
    from agentobs.kube import Kube

    kube = Kube()
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    configuration = f"agentobs-webhook-{ns}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    kubectl = subprocess.run([str(ROOT / "tools" / "ensure.sh"), "kubernetes"], capture_output=True, text=True,
                             check=True).stdout.strip() + "/kubectl"
    subprocess.run([kubectl, "apply", "--server-side", "-f", str(ROOT / "crds")], check=True, capture_output=True)
    env = {**os.environ, "AGENTOBS_NAMESPACES": ns, "AGENTOBS_BIND_ADDRESS": "127.0.0.1",
           "AGENTOBS_METRICS_PORT": str(_free_port()), "AGENTOBS_HEALTH_PORT": str(_free_port()),
           "AGENTOBS_WEBHOOK_PORT": str(_free_port()), "AGENTOBS_WEBHOOK_CONFIGURATION": configuration}
    operator = subprocess.Popen([sys.executable, "-m", "agentobs.main"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    mwc = ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None, configuration)
    try:
        kube.apply({"apiVersion": "agentobs.io/v1alpha1", "kind": "AgentObservability",
                    "metadata": {"name": "obs", "namespace": ns}, "spec": {}})
        deadline = time.monotonic() + 120
        while kube.get(*mwc) is None and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(3)  # let the index see the resource

        def create(tag: str) -> list[float]:
            times = []
            for i in range(count):
                pod = {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": f"{tag}-{i}", "namespace": ns, "labels": {"agentobs.io/agent": "true"}},
                       "spec": {"containers": [{"name": "agent", "image": "a"}]}}
                t0 = time.perf_counter()
                created = kube.create(pod)
                times.append(time.perf_counter() - t0)
                if tag == "with" and i == 0:
                    assert "agentobs.io/injected" in created["metadata"].get("annotations", {}), "webhook not active"
            return times

        with_hook = create("with")
        operator.terminate()
        operator.wait(timeout=20)
        kube.delete(*mwc)
        without = create("without")
        print(f"pod create through the API server, {count} pods each (ms)")
        print(f"  {'':28} {'p50':>8} {'p99':>8} {'mean':>8}")
        for name, values in (("without webhook", without), ("with webhook (mutating)", with_hook)):
            print(f"  {name:28} {percentile(values, .5) * 1e3:8.2f} {percentile(values, .99) * 1e3:8.2f}"
                  f" {statistics.fmean(values) * 1e3:8.2f}")
        print(f"  ratio p50 {percentile(with_hook, .5) / percentile(without, .5):.2f}x, "
              f"p99 {percentile(with_hook, .99) / percentile(without, .99):.2f}x")
    finally:
        if operator.poll() is None:
            operator.kill()
        kube.delete(*mwc)
        kube.delete("v1", "Namespace", None, ns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--api-pods", type=int, default=150)
    parser.add_argument("--skip-api", action="store_true", help="only the in-process benchmark")
    args = parser.parse_args()
    bench_in_process(args.pods)
    bench_many_resources(min(args.pods, 2_000), 1_000)
    if not args.skip_api:
        bench_api(args.api_pods)


if __name__ == "__main__":
    main()
