"""Benchmarks of the agent SDK against the bare libraries it wraps, measured in one run.

    python bench/bench_sdk.py [--scale 1.0] [--dir DIR]

Pairs (baseline -> SDK):
- span:    a raw OTel span with the same attributes -> the `tool_call` helper (span + metrics)
- metric:  a raw prometheus_client histogram observe -> `AgentMetrics.record_token_usage`
- log:     a bare json.dumps formatter -> `JsonFormatter` (inside an active span)
- audit:   raw os.write + os.fsync of a same-sized line -> `AuditTrail.append` in fsync mode,
           and in group-commit mode with 8 appending threads (per-record cost)

Each case is timed with time.perf_counter over a fixed number of operations, best of 3 rounds;
the table reports microseconds per operation and the SDK/baseline ratio.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry, Histogram

import agentobs_sdk
from agentobs_sdk import series
from agentobs_sdk.audit import AuditTrail
from agentobs_sdk.logs import JsonFormatter

ROUNDS = 3


@dataclass
class Row:
    name: str
    baseline: str
    base_us: float
    sdk_us: float

    @property
    def ratio(self) -> float:
        return self.sdk_us / self.base_us if self.base_us else float("inf")


def best_per_op(fn: Callable[[int], None], n: int) -> float:
    """Microseconds per operation: best of ROUNDS runs of `fn(n)` (after one warm-up run)."""
    fn(max(1, n // 10))
    best = float("inf")
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def bench_span(handle: agentobs_sdk.Handle, n: int) -> Row:
    tracer = handle.tracer
    attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search", "gen_ai.tool.type": "function"}

    def raw(k: int) -> None:
        for _ in range(k):
            with tracer.start_as_current_span("execute_tool search", attributes=attrs):
                pass

    def helper(k: int) -> None:
        for _ in range(k):
            with agentobs_sdk.tool_call("search"):
                pass

    return Row("span: tool_call helper", "raw OTel span", best_per_op(raw, n), best_per_op(helper, n))


def bench_metric(handle: agentobs_sdk.Handle, n: int) -> Row:
    registry = CollectorRegistry()
    hist = Histogram("raw_token_usage", "raw", series.TOKEN_USAGE.labels, registry=registry,
                     buckets=series.TOKEN_USAGE.buckets)
    metrics = handle.metrics

    def raw(k: int) -> None:
        for i in range(k):
            hist.labels("input", "chat", "openai", "gpt-4o", "gpt-4o").observe(i & 1023)

    def helper(k: int) -> None:
        for i in range(k):
            metrics.record_token_usage("input", i & 1023, operation="chat", provider="openai",
                                       request_model="gpt-4o", response_model="gpt-4o")

    return Row("metric: record_token_usage", "raw prometheus_client", best_per_op(raw, n), best_per_op(helper, n))


class BareJsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"ts": record.created, "level": record.levelname, "logger": record.name,
                           "message": record.getMessage()})


def bench_log(n: int) -> Row:
    record = logging.LogRecord("agent", logging.INFO, __file__, 1, "step %d done", (3,), None)
    record.tool = "search"
    record.attempt = 2
    bare, ours = BareJsonFormatter(), JsonFormatter(agent_id="bench-agent", service="bench")

    def run(fmt: logging.Formatter) -> Callable[[int], None]:
        def loop(k: int) -> None:
            with agentobs_sdk.reasoning_step("bench"):
                for _ in range(k):
                    fmt.format(record)
        return loop

    return Row("log: JsonFormatter", "bare json.dumps formatter", best_per_op(run(bare), n), best_per_op(run(ours), n))


def bench_audit(root: str, n: int) -> list[Row]:
    sample = {"ts": "2025-01-01T00:00:00.000000Z", "agent": "bench", "action": "tool_call", "user": "u",
              "result": "ok", "resource": "search", "details": {"i": 0}, "seq": 1, "prev": "0" * 64, "hash": "f" * 64}
    line = (json.dumps(sample, sort_keys=True, separators=(",", ":")) + "\n").encode()

    def raw(k: int) -> None:
        path = tempfile.mkdtemp(dir=root)
        fd = os.open(os.path.join(path, "raw.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            for _ in range(k):
                os.write(fd, line)
                os.fsync(fd)
        finally:
            os.close(fd)

    def trail_fsync(k: int) -> None:
        with AuditTrail(tempfile.mkdtemp(dir=root), durability="fsync") as trail:
            for i in range(k):
                trail.append("tool_call", agent="bench", user="u", result="ok", resource="search", details={"i": i})

    def trail_group(k: int, threads: int = 8) -> None:
        with AuditTrail(tempfile.mkdtemp(dir=root), durability="group") as trail:
            def work(count: int) -> None:
                for i in range(count):
                    trail.append("tool_call", agent="bench", user="u", result="ok", resource="search",
                                 details={"i": i})
            per = max(1, k // threads)
            workers = [threading.Thread(target=work, args=(per,)) for _ in range(threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()

    base = best_per_op(raw, n)
    return [
        Row("audit: append, fsync mode", "raw write+fsync", base, best_per_op(trail_fsync, n)),
        Row("audit: append, group commit x8 threads", "raw write+fsync", base, best_per_op(trail_group, n)),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply iteration counts")
    parser.add_argument("--dir", default=None, help="directory for the audit benchmark files")
    args = parser.parse_args()

    def scaled(n: int) -> int:
        return max(10, int(n * args.scale))

    started = time.perf_counter()
    handle = agentobs_sdk.configure({"OTEL_SERVICE_NAME": "bench", "AGENTOBS_AGENT_ID": "bench-agent"},
                                    json_logs=False, set_global_tracer_provider=False)
    assert isinstance(handle.tracer_provider, TracerProvider)
    root = tempfile.mkdtemp(prefix="agentobs-bench-", dir=args.dir)
    try:
        rows = [bench_span(handle, scaled(20_000)), bench_metric(handle, scaled(100_000)),
                bench_log(scaled(50_000)), *bench_audit(root, scaled(2_000))]
    finally:
        handle.shutdown()
        shutil.rmtree(root, ignore_errors=True)

    name_w = max(len(r.name) for r in rows)
    base_w = max(len(r.baseline) for r in rows)
    print(f"{'case':<{name_w}}  {'baseline':<{base_w}}  {'base us/op':>10}  {'sdk us/op':>10}  {'ratio':>6}")
    for r in rows:
        print(f"{r.name:<{name_w}}  {r.baseline:<{base_w}}  {r.base_us:>10.2f}  {r.sdk_us:>10.2f}  {r.ratio:>5.2f}x")
    total = time.perf_counter() - started
    print(f"(best of {ROUNDS} rounds each; total {total:.1f}s; python {sys.version.split()[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
