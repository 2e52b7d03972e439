"""Real programs the component tests start on loopback from rendered files: each one's output in a
log file under the test's folder, a stop that waits for a clean exit, HTTPS calls trusting the
stack's CA with the operator's basic-auth user, and polling that fails at once, with the logs,
when a program exits.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

WEB_USER = "agentobs"


class LocalPrograms:
    """The processes of one test, with their logs in `root/<name>.log`."""

    def __init__(self, root: Path, ca_pem: bytes) -> None:
        self.root = root
        self.context = ssl.create_default_context(cadata=ca_pem.decode())
        self.context.check_hostname = False  # the certificates name the Services, not 127.0.0.1
        self.processes: list[subprocess.Popen[bytes]] = []

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.root / f"{name}.log").open("wb")
        self.processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                               env={**os.environ, **(env or {})}))

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}"
                         for p in sorted(self.root.glob("*.log")))

    def https(self, port: int, path: str, password: str, body: Any = None) -> bytes:
        """The body of a GET (or, with `body`, a JSON POST) to a program's web server."""
        auth = base64.b64encode(f"{WEB_USER}:{password}".encode()).decode()
        headers = {"Authorization": f"Basic {auth}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(f"https://127.0.0.1:{port}{path}", headers=headers,
                                         data=None if body is None else json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=5, context=self.context) as response:
            return bytes(response.read())

    def poll(self, what: str, check: Any, timeout: float = 60.0) -> Any:
        """`check()`'s first true result; connection errors count as not yet."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                pytest.fail(f"a process exited while waiting for {what}\n{self.logs()}")
            try:
                last = check()
            except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError) as exc:
                last = exc
            if last and not isinstance(last, Exception):
                return last
            time.sleep(0.5)
        pytest.fail(f"timed out waiting for {what}; last: {last!r}\n{self.logs()}")
