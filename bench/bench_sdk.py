"""Benchmarks of the agent SDK against the bare libraries doing the same work, in one run.

    python bench/bench_sdk.py [--rounds 7] [--dir DIR]

Each pair does the same work on both sides, and the rounds are interleaved (baseline, SDK, SDK,
baseline, ...) so drift on a shared machine hits both alike:

- span:   a raw OTel span (same tracer provider and exporter, same attributes, made current) plus
          the same Prometheus histogram observation -> the `tool_call` helper
- metric: prometheus_client `Histogram.labels(...).observe()` with the same labels and buckets ->
          `AgentMetrics.record_token_usage`
- log:    a json.dumps formatter emitting the same fields (ISO time, level, logger, message,
          trace and span ids, agent id, service, extras) -> `JsonFormatter`
- audit:  os.write + fdatasync of the very line the trail writes (a keyed record, taken from a
          scratch trail; fdatasync is the sync call the trail uses) -> `AuditTrail.append` in
          fsync mode, one record per sync, one thread; the CPU time of both sides is printed too
- group:  8 threads appending to one `AuditTrail` in group-commit mode (throughput, records/s)
          against "single fsyncs at 8 threads": 8 threads each writing that line with its own
          fdatasync, under a lock around write+fdatasync, because records of one chain are
          ordered (each links to the one before, so none can be written before the previous one
          is placed). For information only: the same without the lock (ext4's journal then
          merges concurrent fdatasyncs by itself, so this is the kernel's group commit, not an
          ordered chain) and the trail's own fsync mode at 8 threads. Each round times a few
          runs from a common start (thread creation not timed).

Fast cases are timed in batches (per-operation time = batch time / batch size, one sample per
batch) because a timer call costs about as much as a metric observation; audit appends are timed
one by one. The table gives p50, p99 and mean per operation, and the SDK/baseline ratios, against
the targets of issue 15.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry, Histogram

import agentobs_sdk
from agentobs_sdk import series
from agentobs_sdk.audit import AuditReceipt, AuditTrail, Durability
from agentobs_sdk.audit.store import sync_data
from agentobs_sdk.logs import JsonFormatter

BATCH = 200  # operations per timed sample for the fast cases
THREADS = 8
MEMORY_DIR = "/dev/shm"  # tmpfs: a sync there does not wait for a disk


class NullExporter(SpanExporter):
    """Accepts and drops spans: both sides pay the same batch-processor export path."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


@dataclass
class Samples:
    """Per-operation times in microseconds (or, for throughput cases, records per second)."""

    values: list[float] = field(default_factory=list)

    def pct(self, q: float) -> float:
        ordered = sorted(self.values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)


@dataclass
class Case:
    name: str
    baseline_name: str
    baseline: Callable[[Samples], None]  # runs one round, appending samples
    sdk: Callable[[Samples], None]
    targets: dict[str, float] = field(default_factory=dict)  # "p50"/"p99"/"mean" -> max ratio
    throughput: bool = False  # samples are records/s: higher is better, ratio = sdk / baseline
    base: Samples = field(default_factory=Samples)
    ours: Samples = field(default_factory=Samples)


def batched(op: Callable[[int], None], batches: int) -> Callable[[Samples], None]:
    def run(samples: Samples) -> None:
        for b in range(batches):
            t0 = time.perf_counter()
            op(b)
            samples.values.append((time.perf_counter() - t0) / BATCH * 1e6)
    return run


# --- span ----------------------------------------------------------------------------------------


def span_case(handle: agentobs_sdk.Handle, batches: int) -> Case:
    tracer = handle.tracer
    attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search", "gen_ai.tool.type": "function"}
    registry = CollectorRegistry()
    spec = series.TOOL_CALL_DURATION
    hist = Histogram("raw_tool_duration", "raw", spec.labels, registry=registry, buckets=spec.buckets)

    def raw(_: int) -> None:
        for _ in range(BATCH):
            t0 = time.perf_counter()
            with tracer.start_as_current_span("execute_tool search", kind=SpanKind.INTERNAL, attributes=attrs):
                pass
            hist.labels("bench-agent", "search", "ok").observe(time.perf_counter() - t0)

    def helper(_: int) -> None:
        for _ in range(BATCH):
            with agentobs_sdk.tool_call("search"):
                pass

    return Case("span: tool_call helper", "raw OTel span + histogram", batched(raw, batches),
                batched(helper, batches), {"p50": 1.25, "mean": 1.25})


# --- metric --------------------------------------------------------------------------------------


def metric_case(handle: agentobs_sdk.Handle, batches: int) -> Case:
    registry = CollectorRegistry()
    spec = series.TOKEN_USAGE
    hist = Histogram("raw_token_usage", "raw", spec.labels, registry=registry, buckets=spec.buckets)
    metrics = handle.metrics

    def raw(b: int) -> None:
        for i in range(BATCH):
            hist.labels("input", "chat", "openai", "gpt-4o", "gpt-4o").observe((i + b) & 1023)

    def helper(b: int) -> None:
        for i in range(BATCH):
            metrics.record_token_usage("input", (i + b) & 1023, operation="chat", provider="openai",
                                       request_model="gpt-4o", response_model="gpt-4o")

    return Case("metric: record_token_usage", "raw prometheus_client", batched(raw, batches),
                batched(helper, batches), {"p50": 1.3, "mean": 1.3})


# --- log -----------------------------------------------------------------------------------------


class SameFieldsFormatter(logging.Formatter):
    """A direct json.dumps of the fields JsonFormatter writes, without its safety nets."""

    def format(self, record: logging.LogRecord) -> str:
        ctx = trace.get_current_span().get_span_context()
        return json.dumps({
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
            "trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x"),
            "trace_flags": format(int(ctx.trace_flags), "02x"), "agent_id": "bench-agent", "service": "bench",
            "tool": record.tool, "attempt": record.attempt,  # type: ignore[attr-defined]
        }, ensure_ascii=False)


def log_case(batches: int) -> Case:
    record = logging.LogRecord("agent", logging.INFO, __file__, 1, "step %d done", (3,), None)
    record.tool = "search"
    record.attempt = 2
    bare, ours = SameFieldsFormatter(), JsonFormatter(agent_id="bench-agent", service="bench")

    def run(fmt: logging.Formatter) -> Callable[[int], None]:
        def loop(_: int) -> None:
            with agentobs_sdk.reasoning_step("bench"):
                for _ in range(BATCH):
                    fmt.format(record)
        return loop

    return Case("log: JsonFormatter", "json.dumps, same fields", batched(run(bare), batches),
                batched(run(ours), batches))


# --- audit ---------------------------------------------------------------------------------------

AUDIT_KEY = b"bench-audit-key-0123456789abcdef"  # keyed, as the webhook configures a trail
# CPU time (thread time) of each side of the fsync-mode case: what the SDK adds to the disk wait.
AUDIT_CPU: dict[str, list[float]] = {"raw": [], "sdk": []}


def _open_trail(root: str, durability: Durability) -> AuditTrail:
    return AuditTrail(tempfile.mkdtemp(dir=root), durability=durability, anchor_sink=None,
                      agent_id="bench-agent", key=AUDIT_KEY)


def _append(trail: AuditTrail) -> AuditReceipt:
    return trail.append("tool_call", agent="bench", user="u", result="ok", resource="search",
                 details={"call_id": "c-0001"})


def _record_line(root: str) -> bytes:
    """A line exactly as the trail writes it (same fields, same MAC length), for the raw side."""
    with _open_trail(root, "fsync") as trail:
        segment = os.path.join(trail.directory, _append(trail).file)
    with open(segment, "rb") as fh:
        return fh.read().splitlines(keepends=True)[-1]


def audit_case(root: str, per_round: int, *, memory: bool = False) -> Case:
    """Per-operation interleaving: each iteration times one raw write+sync and one append (order
    alternating), on the same filesystem, so a slow moment of the shared disk hits both alike.

    `memory`: the same on tmpfs, where a sync returns at once, for information: what the SDK's
    own work costs per append when no wait for a disk comes between two appends (its caches stay
    warm), against what it adds beside a real sync."""
    line = _record_line(root)
    cpu = {"raw": [], "sdk": []} if memory else AUDIT_CPU
    pending: list[float] = []  # the SDK's samples of the round the baseline just ran

    def raw(samples: Samples) -> None:
        path = tempfile.mkdtemp(dir=root)
        fd = os.open(os.path.join(path, "raw.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        trail = _open_trail(root, "fsync")
        try:
            for i in range(per_round):
                for side in ((0, 1) if i % 2 == 0 else (1, 0)):
                    c0, t0 = time.thread_time(), time.perf_counter()
                    if side == 0:
                        os.write(fd, line)
                        sync_data(fd)
                        samples.values.append((time.perf_counter() - t0) * 1e6)
                        cpu["raw"].append((time.thread_time() - c0) * 1e6)
                    else:
                        _append(trail)
                        pending.append((time.perf_counter() - t0) * 1e6)
                        cpu["sdk"].append((time.thread_time() - c0) * 1e6)
        finally:
            os.close(fd)
            trail.close()

    def sdk(samples: Samples) -> None:
        samples.values.extend(pending)  # measured side by side with the baseline, above
        pending.clear()

    if memory:
        return Case("audit: append, fsync mode, tmpfs", "(info) same, no disk wait", raw, sdk)
    return Case("audit: append, fsync mode", "raw write+fdatasync, same line", raw, sdk,
                {"p50": 1.1, "p99": 1.1})


def _threaded(work: Callable[[int], None], per_thread: int) -> float:
    """Records per second of THREADS threads each running work(per_thread), timed from a common
    start (thread creation is not timed)."""
    start = threading.Barrier(THREADS + 1)

    def run() -> None:
        start.wait()
        work(per_thread)

    workers = [threading.Thread(target=run) for _ in range(THREADS)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    return THREADS * per_thread / (time.perf_counter() - t0)


def _raw_threaded(root: str, per_thread: int, line: bytes, *, ordered: bool) -> float:
    """THREADS threads writing `line` with one fdatasync each to one file; `ordered`: under a
    lock around write+sync, as records of one chain must be (each is linked to the one before,
    so the next cannot be written before the previous is placed)."""
    path = tempfile.mkdtemp(dir=root)
    fd = os.open(os.path.join(path, "raw.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    lock = threading.Lock() if ordered else contextlib.nullcontext()

    def work(count: int) -> None:
        for _ in range(count):
            with lock:
                os.write(fd, line)
                sync_data(fd)

    try:
        return _threaded(work, per_thread)
    finally:
        os.close(fd)


def _trail_threaded(root: str, per_thread: int, durability: Durability) -> float:
    with _open_trail(root, durability) as trail:
        def work(count: int) -> None:
            for _ in range(count):
                _append(trail)
        return _threaded(work, per_thread)


def group_cases(root: str, per_thread: int, repeats: int) -> list[Case]:
    """Throughput of group commit at THREADS threads against the same threads syncing each
    record: the target's baseline orders the records (a lock around write+fdatasync, as a chain
    needs); the unlocked raw figure and the trail's own fsync mode are shown for information."""
    line = _record_line(root)

    def sampler(run: Callable[[], float]) -> Callable[[Samples], None]:
        def sample(samples: Samples) -> None:
            samples.values.extend(run() for _ in range(repeats))
        return sample

    group = sampler(lambda: _trail_threaded(root, per_thread, "group"))
    name = f"audit: group commit, {THREADS} threads"
    return [
        Case(name, f"write+fdatasync, locked, {THREADS} thr.",
             sampler(lambda: _raw_threaded(root, per_thread, line, ordered=True)), group,
             {"p50": 5.0, "mean": 5.0}, throughput=True),
        Case(name, f"(info) same, unlocked, {THREADS} thr.",
             sampler(lambda: _raw_threaded(root, per_thread, line, ordered=False)), group,
             throughput=True),
        Case(name, f"(info) fsync mode, {THREADS} thr.",
             sampler(lambda: _trail_threaded(root, per_thread, "fsync")), group, throughput=True),
    ]


# --- driver --------------------------------------------------------------------------------------


def run_interleaved(cases: list[Case], rounds: int) -> None:
    for case in cases:  # warm-up, discarded
        case.baseline(Samples())
        case.sdk(Samples())
    for r in range(rounds):
        for case in cases:
            first, second = (case.baseline, case.sdk) if r % 2 == 0 else (case.sdk, case.baseline)
            first(case.base if first is case.baseline else case.ours)
            second(case.base if second is case.baseline else case.ours)


def ratio(case: Case, stat: str) -> float:
    def get(s: Samples) -> float:
        return s.mean if stat == "mean" else s.pct(0.5 if stat == "p50" else 0.99)
    base, ours = get(case.base), get(case.ours)
    return ours / base  # times: lower is better; throughput: higher is better


def report(cases: list[Case], rounds: int, elapsed: float) -> bool:
    print(f"{'case':<34} {'baseline':<36} {'base p50/p99/mean':>24} {'sdk p50/p99/mean':>24}  "
          f"{'ratio p50/p99/mean':>20}  target")
    all_met = True
    for c in cases:
        unit = "rec/s" if c.throughput else "us"
        fmt = "{:.0f}" if c.throughput else "{:.2f}"

        def trio(s: Samples, fmt: str = fmt) -> str:
            return "/".join(fmt.format(v) for v in (s.pct(0.5), s.pct(0.99), s.mean))

        ratios = {stat: ratio(c, stat) for stat in ("p50", "p99", "mean")}
        verdicts = []
        for stat, limit in c.targets.items():
            met = ratios[stat] >= limit if c.throughput else ratios[stat] <= limit
            all_met &= met
            sign = ">=" if c.throughput else "<="
            verdicts.append(f"{stat} {sign} {limit}x {'met' if met else 'MISSED'}")
        print(f"{c.name:<34} {c.baseline_name:<36} {trio(c.base) + ' ' + unit:>24} {trio(c.ours) + ' ' + unit:>24}  "
              f"{'/'.join(f'{ratios[s]:.2f}' for s in ('p50', 'p99', 'mean')):>20}  {', '.join(verdicts) or '-'}")
    if AUDIT_CPU["raw"] and AUDIT_CPU["sdk"]:
        raw, sdk = (Samples(AUDIT_CPU[side]) for side in ("raw", "sdk"))
        print(f"audit fsync mode, CPU (thread time) per operation p50/mean: raw {raw.pct(0.5):.1f}/{raw.mean:.1f} us, "
              f"SDK {sdk.pct(0.5):.1f}/{sdk.mean:.1f} us; the rest of each is waiting for the disk (and for a CPU)")
    by_name = {c.name: c for c in cases}
    disk, memory = by_name.get("audit: append, fsync mode"), by_name.get("audit: append, fsync mode, tmpfs")
    if disk and memory and disk.base.values and memory.base.values:
        added = disk.ours.pct(0.5) - disk.base.pct(0.5)
        own = memory.ours.pct(0.5) - memory.base.pct(0.5)
        print(f"audit fsync mode, p50: the SDK adds {added:.1f} us beside a real sync; the same work adds "
              f"{own:.1f} us on tmpfs, where no wait for the disk comes between appends")
    load = os.getloadavg()[0]
    print(f"({rounds} interleaved rounds; group commit: throughput, ratio = SDK / baseline; total {elapsed:.1f}s; "
          f"python {sys.version.split()[0]}; load average at the end {load:.1f} on {os.cpu_count()} CPUs)")
    return all_met


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dir", default=None, help="directory for the audit files (a real disk, not tmpfs)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    started = time.perf_counter()
    processor = BatchSpanProcessor(NullExporter())
    handle = agentobs_sdk.configure({"OTEL_SERVICE_NAME": "bench", "AGENTOBS_AGENT_ID": "bench-agent"},
                                    json_logs=False, set_global_tracer_provider=False,
                                    span_processors=[processor])
    assert isinstance(handle.tracer_provider, TracerProvider)
    root = tempfile.mkdtemp(prefix="agentobs-bench-", dir=args.dir)
    memory_root = ""
    try:
        cases = [span_case(handle, 25), metric_case(handle, 60), log_case(15), audit_case(root, 60)]
        if os.path.isdir(MEMORY_DIR):
            memory_root = tempfile.mkdtemp(prefix="agentobs-bench-", dir=MEMORY_DIR)
            cases.append(audit_case(memory_root, 60, memory=True))
        cases += group_cases(root, 40, 4)
        # Objects made so far (modules, the tracer, the registries) are set aside from the
        # collector, as a long-running agent's are after start-up; otherwise every full collection
        # walks them all, and the one batch (of either side) that happens to trigger it is 100 ms.
        gc.collect()
        gc.freeze()
        run_interleaved(cases, args.rounds)
    finally:
        handle.shutdown()
        shutil.rmtree(root, ignore_errors=True)
        if memory_root:
            shutil.rmtree(memory_root, ignore_errors=True)
    met = report(cases, args.rounds, time.perf_counter() - started)
    return 1 if args.strict and not met else 0


if __name__ == "__main__":
    sys.exit(main())
