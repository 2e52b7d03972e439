"""The webhook's serving pair is loaded into its TLS context without leaving the key on disk."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from agentobs.admission import webhook
from agentobs.kube import KubeError

SETTINGS = webhook.WebhookSettings(port=0, bind="127.0.0.1", configuration="unit", service="",
                                   operator_namespace="", host="127.0.0.1")


def _served_certificate(context: ssl.SSLContext, ca_pem: bytes) -> bytes:
    """The DER certificate a client is shown by a server using `context` (over loopback)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def accept() -> None:
        conn, _ = server.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    client = ssl.create_default_context(cadata=ca_pem.decode())
    try:
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                client.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    finally:
        thread.join(timeout=10)
        server.close()
    assert der is not None
    return der


@pytest.fixture
def private_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_the_pair_is_served_and_no_key_is_left_on_disk(private_tmp: Path) -> None:
    """The operator used to write the pair to a temporary directory it never removed: every start
    left a private key behind in /tmp, for as long as the machine (or the pod's emptyDir) lived."""
    material = webhook.renew(None, SETTINGS, dt.datetime.now(dt.UTC))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    webhook.load_serving_pair(context, material)

    assert list(private_tmp.iterdir()) == []
    served = _served_certificate(context, material.ca.cert_pem)
    assert served == ssl.PEM_cert_to_DER_cert(material.cert.cert_pem.decode())


def test_a_renewed_pair_replaces_the_served_one_in_place(private_tmp: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    first = webhook.renew(None, SETTINGS, now)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    webhook.load_serving_pair(context, first)
    later = webhook.renew(None, SETTINGS, now)  # as after a rotation: another pair
    assert later.cert.cert_pem != first.cert.cert_pem
    webhook.load_serving_pair(context, later)

    assert list(private_tmp.iterdir()) == []
    served = _served_certificate(context, later.ca.cert_pem)
    assert served == ssl.PEM_cert_to_DER_cert(later.cert.cert_pem.decode())


def test_the_webhook_answers_its_readiness_path_beside_the_review_path() -> None:
    """The chart's readiness probe asks the webhook itself: kopf's /healthz answered before the
    webhook listened, so a new pod took admissions it dropped (uninstrumented) at every rollout."""
    from aiohttp.test_utils import TestClient, TestServer

    from agentobs.admission import server

    async def ask() -> tuple[int, int]:
        async with TestClient(TestServer(server.make_app())) as client:
            ready = await client.get(f"/{server.READY_PATH}")
            review = await client.post(f"/{webhook.WEBHOOK_PATH}", data=b"not json")
            return ready.status, review.status

    assert asyncio.run(ask()) == (200, 400)


def test_upkeep_puts_back_a_ca_bundle_long_before_rotation(monkeypatch: pytest.MonkeyPatch) -> None:
    """`helm uninstall` then `helm install` beside an operator run out of cluster recreated the
    configuration with an empty caBundle; the operator put its CA back only at its hourly rotation
    check, and every agent pod admitted until then went uninstrumented."""
    from types import SimpleNamespace

    from agentobs.admission import server

    published: list[bytes] = []

    class Done(Exception):
        pass

    def publish_ca(_kube: object, _settings: object, ca_pem: bytes) -> None:
        published.append(ca_pem)
        raise Done

    monkeypatch.setattr(server, "CA_CHECK_SECONDS", 0.01, raising=False)
    monkeypatch.setattr(server.webhook, "publish_ca", publish_ca)
    monkeypatch.setattr(server.webhook, "ensure", lambda *a: pytest.fail("no rotation check yet"))
    monkeypatch.setattr(server, "_client", lambda: None)
    material = SimpleNamespace(ca=SimpleNamespace(cert_pem=b"CA"))
    with pytest.raises(Done):
        asyncio.run(asyncio.wait_for(server._upkeep(None, material, None), 5))  # type: ignore[arg-type]
    assert published == [b"CA"]


@pytest.mark.parametrize(("error", "waits"), [
    # The API server away: retried within 30 s of its return, not up to 5 minutes later (pods
    # admitted meanwhile go uninjected).
    (KubeError(0, "Unreachable", "MaxRetryError"), [5, 10, 20, 30, 30, 30, 30]),
    (KubeError(503, "ServiceUnavailable", "etcd"), [5, 10, 20, 30, 30, 30, 30]),
    # Its port taken: no reason to try often.
    (OSError(98, "Address already in use"), [5, 10, 20, 40, 80, 160, 300]),
])
def test_the_webhook_start_is_retried_soon_after_an_api_outage(monkeypatch: pytest.MonkeyPatch,
                                                               error: Exception, waits: list[float]) -> None:
    from agentobs.admission import server

    failures = len(waits)
    waited: list[float] = []

    async def serve(*_: Any) -> None:
        if len(waited) < failures:
            raise error

    async def sleep(delay: float) -> None:
        waited.append(delay)

    monkeypatch.setattr(server, "_serve", serve)
    monkeypatch.setattr(server, "_report_start_failure", lambda *a: None)
    monkeypatch.setattr(server.asyncio, "sleep", sleep)
    asyncio.run(server._serve_until_up(SETTINGS, {}))  # type: ignore[arg-type]
    assert waited == waits
