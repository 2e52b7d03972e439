"""The API server unavailable for a while: the operator must not exit, and must serve again on its
own once it is back (its watches were dropped, its requests refused meanwhile), as the design's
"never crash-loops" asks. The operator reaches the API server through a TCP relay the test cuts:
open connections (the watches) are dropped and new ones refused, then the relay listens again."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentobs.kube import Kube

from cluster_support import OperatorProcess, free_port
from conftest import SESSION_PREFIX, get_resource, make_resource, wait_for, wait_ready


class Relay:
    """Forwards 127.0.0.1:port to the API server; `cut` drops every connection and refuses new
    ones until `restore`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._open -= {source, sink}


@pytest.fixture
def relayed(kubeconfig: str, tmp_path: Path) -> Iterator[tuple[Relay, str]]:
    config = Path(kubeconfig).read_text()
    match = re.search(r"server: https://([\d.]+):(\d+)", config)
    assert match, "the kubeconfig names its server"
    relay = Relay((match.group(1), int(match.group(2))))
    relay.restore()
    path = tmp_path / "kubeconfig"
    path.write_text(config.replace(match.group(0), f"server: https://127.0.0.1:{relay.port}"))
    yield relay, str(path)
    relay.cut()


def test_an_api_outage_is_survived_without_a_restart(kube: Kube, kubectl: Callable[..., Any],
                                                     relayed: tuple[Relay, str], tmp_path: Path) -> None:
    relay, config = relayed
    prefix = f"{SESSION_PREFIX}o{uuid.uuid4().hex[:4]}"
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace)
    op = OperatorProcess({
        "KUBECONFIG": config, "AGENTOBS_BIND_ADDRESS": "127.0.0.1", "AGENTOBS_RESYNC_SECONDS": "3",
        "AGENTOBS_NAMESPACES": f"{prefix}-*", "AGENTOBS_WEBHOOK_PORT": str(free_port()),
        "AGENTOBS_WEBHOOK_CONFIGURATION": f"agentobs-webhook-{prefix}",
        "AGENTOBS_METRICS_PORT": str(free_port()), "AGENTOBS_HEALTH_PORT": str(free_port()),
    }, tmp_path / "operator.log")
    op.start()
    try:
        light = {"logging": {"enabled": False}, "tracing": {"enabled": False}}
        kube.apply(make_resource("steady", namespace, light))
        wait_ready(kube, namespace, "steady", generation=1)

        relay.cut()
        # While it is away: a change the operator cannot see yet, and time for its watches and
        # passes to fail (told apart by the log, not by the clock).
        kube.apply(make_resource("steady", namespace, {**light, "instrumentation": {"samplingRatio": 0.5}}))
        # As long as kopf's own retries of a request (9 attempts, about a minute; with its default
        # settings the 9th gave up): told by the log, not by the clock.
        wait_for("kopf to try a request a 9th time", lambda: re.search(r"Request attempt #9(/9)? failed", op.log()),
                 timeout=180, interval=2.0)
        assert op.process is not None and op.process.poll() is None, "the operator is still running"

        relay.restore()
        wait_ready(kube, namespace, "steady", generation=2, timeout=120)
        # And it still hears of changes made after the outage: its watches were made again.
        kube.apply(make_resource("steady", namespace, light))
        wait_ready(kube, namespace, "steady", generation=3, timeout=120)
        assert op.process is not None and op.process.poll() is None, "never restarted"
        assert (get_resource(kube, namespace, "steady") or {})["status"]["observedGeneration"] == 3
    finally:
        log = op.log()
        op.stop()
        kube.delete("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration", None,
                    f"agentobs-webhook-{prefix}")
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    assert "Traceback" not in log or "pass failed" not in log, log[-3000:]
