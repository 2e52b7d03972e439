"""The Prometheus exposition endpoint, and knowing when a scrape has collected what was recorded.

prometheus-client's WSGI app served by a threading WSGI server (as `start_http_server` does), with
one addition: the server counts the scrapes it has fully answered (the response written, the
connection closed), so `shutdown()` can wait for one scrape that began after the last recording
before the process exits. That is how a short-lived agent keeps its last figures with a pull-based
Prometheus: the pod stays discoverable (phase Running) while it waits, within its grace period.
"""

from __future__ import annotations

import socketserver
import threading
import time
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds must not write access lines into the agent's logs."""


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Exposition:
    """A running /metrics endpoint for one registry."""

    def __init__(self, registry: CollectorRegistry, port: int, addr: str) -> None:
        self._cv = threading.Condition()
        self._collected = threading.local()
        self._answered = 0  # scrapes whose response was fully sent
        self._started = 0  # scrapes that began collecting
        inner = make_wsgi_app(registry)

        def app(environ: dict[str, Any], start_response: Any) -> Any:
            with self._cv:
                self._started += 1
                self._collected.number = self._started
            return inner(environ, start_response)

        self._server = make_server(addr, port, app, _Server, handler_class=_QuietHandler)
        original = self._server.shutdown_request

        def shutdown_request(request: Any) -> None:
            original(request)
            number = getattr(self._collected, "number", 0)
            if number:
                self._collected.number = 0
                with self._cv:
                    self._answered = max(self._answered, number)
                    self._cv.notify_all()

        self._server.shutdown_request = shutdown_request  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.serve_forever, name="agentobs-metrics",
                                        daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def serving(self) -> bool:
        """False in a process forked from the one that started the server: the fork copied the
        listening socket but not the thread answering it, so every scrape reaches the parent."""
        return self._thread.is_alive()

    def wait_for_scrape(self, timeout: float) -> bool:
        """Block until a scrape that starts after this call has been answered; False on timeout
        (at once where nothing here answers scrapes: no scrape could ever count)."""
        if not self.serving():
            return False
        deadline = time.monotonic() + timeout
        with self._cv:
            after = self._started
            while self._answered <= after:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cv.wait(remaining)
        return True

    def stop(self) -> None:
        if self.serving():
            # shutdown() waits for serve_forever() to return: forever in a forked child, where
            # no thread runs it (a pre-fork server's worker would hang at exit).
            self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
