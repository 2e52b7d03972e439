"""The SDK in processes forked after configure(): pre-fork servers (gunicorn --preload), celery's
prefork pool, multiprocessing's fork start method.

Each scenario runs in a fresh interpreter: forking the test runner itself, after other tests left
gRPC and HTTP-client threads behind, can deadlock the child in those libraries, not in ours."""

from __future__ import annotations

import json
import subprocess
import sys

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
print(json.dumps({"seconds": time.monotonic() - start, "status": status}))
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
    assert report["status"] == 0, f"child did not exit by itself: {report}, {result.stderr[-2000:]}"
    assert report["seconds"] < 5, report
    assert "was forked from a process that had called configure()" in result.stderr
    assert "shutdown waits up to" not in result.stderr  # only the parent serves, so only it lingers
