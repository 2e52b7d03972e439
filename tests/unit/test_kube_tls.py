"""Connections to the API server share one TLS context and still verify the server (agentobs.kube).

A loopback HTTPS server with a certificate of our own CA stands in for the API server: what is
tested is the client's TLS, not the API.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import kubernetes.client
import pytest

from agentobs import pki
from agentobs.kube import Kube, KubeError, share_tls_context

NOW = dt.datetime.now(dt.UTC)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": self.path.rsplit("/", 1)[-1], "namespace": "n"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, pki.KeyPair]]:
    """https://127.0.0.1:<port> serving a certificate of a fresh CA; yields (url, ca)."""
    ca = pki.make_ca("unit api server", NOW, dt.timedelta(days=1))
    pair = pki.issue(ca, "localhost", ["localhost"], NOW, dt.timedelta(days=1), ip_addresses=["127.0.0.1"],
                     client=False)
    (tmp_path / "tls.crt").write_bytes(pair.cert_pem)
    (tmp_path / "tls.key").write_bytes(pair.key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}", ca
    finally:
        httpd.shutdown()
        httpd.server_close()


def _kube(url: str, ca: pki.KeyPair, tmp_path: Path) -> tuple[Kube, kubernetes.client.ApiClient]:
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    configuration = kubernetes.client.Configuration(host=url)
    configuration.ssl_ca_cert = str(tmp_path / "ca.crt")
    configuration.connection_pool_maxsize = 4
    api_client = kubernetes.client.ApiClient(configuration)
    share_tls_context(api_client)
    return Kube(api_client), api_client


def test_connections_share_one_context_and_verify_the_server(server: tuple[str, pki.KeyPair],
                                                             tmp_path: Path) -> None:
    url, ca = server
    kube, api_client = _kube(url, ca, tmp_path)
    shared = api_client.rest_client.pool_manager.connection_pool_kw["ssl_context"]
    assert shared.verify_mode == ssl.CERT_REQUIRED

    results: list[str] = []
    barrier = threading.Barrier(3)

    def read(name: str) -> None:
        barrier.wait()  # at once, so the pool opens several connections
        found = kube.get("v1", "ConfigMap", "n", name)
        results.append(found["metadata"]["name"] if found else "")

    threads = [threading.Thread(target=read, args=(f"c{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == ["c0", "c1", "c2"]
    pool = api_client.rest_client.pool_manager.connection_from_url(url)
    connections = [c for c in list(pool.pool.queue) if c is not None]
    assert len(connections) >= 2, "the reads went over more than one connection"
    assert all(c.ssl_context is shared for c in connections)


def test_a_server_of_another_ca_is_refused(server: tuple[str, pki.KeyPair], tmp_path: Path) -> None:
    url, _ = server
    stranger = pki.make_ca("someone else", NOW, dt.timedelta(days=1))
    kube, _ = _kube(url, stranger, tmp_path)
    with pytest.raises(KubeError) as raised:
        kube.get("v1", "ConfigMap", "n", "c0")
    assert raised.value.reason == "Unreachable"
