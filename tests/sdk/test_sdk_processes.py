"""The SDK in processes forked after configure(): pre-fork servers (gunicorn --preload), celery's
prefork pool, multiprocessing's fork start method.

Each scenario runs in a fresh interpreter: forking the test runner itself, after other tests left
gRPC and HTTP-client threads behind, can deadlock the child in those libraries, not in ours."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

# The child exits normally (atexit runs Handle.shutdown()); the parent reports how long that took,
# giving up (and killing the child) after 20 s.
_FORK_SCRIPT = """
import json, os, signal, sys, time
import agentobs_sdk as aobs

handle = aobs.configure({"AGENTOBS_METRICS_PORT": "0", "AGENTOBS_METRICS_LINGER_SECONDS": "10"},
                        json_logs=False)
pid = os.fork()
if pid == 0:
    with aobs.agent_run("child"):
        pass
    sys.exit(0)
start = time.monotonic()
while time.monotonic() - start < 20:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.05)
else:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    status = -1
print(json.dumps({"status": status}))
handle.metrics.stop()
os._exit(0)
"""


def test_child_forked_after_configure_exits_promptly() -> None:
    """A worker forked from a configured process (metrics served, as the webhook injects) used
    to hang forever at exit: shutdown() waited the whole linger for a scrape only the parent can
    answer, then for the parent's /metrics thread, absent in the child, to stop. It now exits
    at once, and says at the fork that its metrics are not served."""
    result = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # Not timed: a child stuck at exit is killed by the script (status not 0), and one that waits
    # for the linger says so in its log (checked below).
    assert report["status"] == 0, f"child did not exit by itself: {report}, {result.stderr[-2000:]}"
    assert "was forked from a process that had called configure()" in result.stderr
    assert "shutdown waits up to" not in result.stderr  # only the parent serves, so only it lingers


_WORKER_SCRIPT = """
import json, multiprocessing, os, sys
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
import agentobs_sdk as aobs

OUT = sys.argv[1]

class FileExporter(SpanExporter):  # each process appends what it exports
    def export(self, spans):
        with open(OUT, "a") as fh:
            for span in spans:
                fh.write(json.dumps([os.getpid(), span.name]) + "\\n")
        return SpanExportResult.SUCCESS

handle = aobs.configure({}, json_logs=False, span_processors=[BatchSpanProcessor(FileExporter())])

def work(i):
    with aobs.agent_run(f"worker-{i}"):
        pass

ctx = multiprocessing.get_context("fork")
procs = [ctx.Process(target=work, args=(i,)) for i in range(2)]
for p in procs:
    p.start()
for p in procs:
    p.join(timeout=60)
pool = ctx.Pool(1)
pool.map(work, [2])
pool.close()  # workers leave their loop and exit as a Process does (terminate() kills them)
pool.join()
handle.shutdown()
print(json.dumps([p.exitcode for p in procs]))
"""


def test_multiprocessing_fork_workers_export_their_spans(tmp_path: Path) -> None:
    """A multiprocessing worker (Process or Pool) forked after configure() ends with os._exit(),
    so the atexit shutdown that flushes the batched spans never ran there: its spans were
    silently lost."""
    out = tmp_path / "spans.jsonl"
    result = subprocess.run([sys.executable, "-c", _WORKER_SCRIPT, str(out)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [0, 0]
    exported = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    names = sorted(name for _, name in exported)
    assert names == ["invoke_agent worker-0", "invoke_agent worker-1", "invoke_agent worker-2"], \
        (exported, result.stderr[-2000:])


_TERMINATED_SCRIPT = _WORKER_SCRIPT.split("ctx = multiprocessing")[0] + """
def work_then_wait(ready):
    work("terminated")
    ready.set()
    __import__("time").sleep(60)  # until terminate()

ctx = multiprocessing.get_context("fork")
ready = ctx.Event()
proc = ctx.Process(target=work_then_wait, args=(ready,))
proc.start()
ready.wait(30)
proc.terminate()
proc.join(30)
with ctx.Pool(1) as pool:  # leaving the block calls terminate()
    pool.map(work, ["pool"])
handle.shutdown()
print(json.dumps([proc.exitcode]))
"""


def test_terminated_multiprocessing_workers_export_their_spans(tmp_path: Path) -> None:
    """`Process.terminate()` and a Pool leaving its `with` block send SIGTERM, which killed the
    worker before its batched spans were exported: they were silently lost."""
    out = tmp_path / "spans.jsonl"
    result = subprocess.run([sys.executable, "-c", _TERMINATED_SCRIPT, str(out)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [-15]  # still dies of SIGTERM
    exported = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    names = sorted(name for _, name in exported)
    assert names == ["invoke_agent worker-pool", "invoke_agent worker-terminated"], \
        (exported, result.stderr[-2000:])
