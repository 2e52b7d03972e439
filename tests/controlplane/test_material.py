"""Certificates and generated secrets against the real API server: rotation rolls the workload,
generated values survive reconciles, spec changes and an operator restart, and never leak."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from agentobs import pki
from agentobs.kube import Kube

from conftest import Operator, make_resource, wait_for, wait_ready

STS = ("apps/v1", "StatefulSet")


def _secret(kube: Kube, namespace: str, name: str) -> dict[str, bytes]:
    obj = kube.get("v1", "Secret", namespace, name)
    assert obj is not None, name
    return {k: base64.b64decode(v) for k, v in obj["data"].items()}


def _pod_annotations(kube: Kube, namespace: str, name: str) -> dict[str, str]:
    sts = kube.get(*STS, namespace, name)
    assert sts is not None
    return dict(sts["spec"]["template"]["metadata"]["annotations"])


def test_serving_certificate_carries_service_names_and_chains_to_the_ca(kube: Kube, operator: Operator,
                                                                         namespace: str) -> None:
    kube.apply(make_resource("tls", namespace, {}))
    wait_ready(kube, namespace, "tls")
    ca = _secret(kube, namespace, "tls-ca")
    tls = _secret(kube, namespace, "tls-prometheus-tls")
    pair = pki.KeyPair(tls["tls.crt"], tls["tls.key"])
    assert pki.signed_by(pair, pki.KeyPair(ca["tls.crt"], ca["tls.key"]))
    assert tls["ca.crt"] == ca["ca.crt"]
    text = pair.certificate.extensions
    names = str(text)
    assert f"tls-prometheus.{namespace}.svc" in names and f"*.tls-prometheus-headless.{namespace}.svc" in names


def test_certificate_past_renewal_is_replaced_and_rolls_the_workload(kube: Kube, operator: Operator,
                                                                     namespace: str) -> None:
    kube.apply(make_resource("rot", namespace, {"tls": {"certificateLifetime": "720h", "renewBefore": "240h"}}))
    wait_ready(kube, namespace, "rot")
    before_hash = _pod_annotations(kube, namespace, "rot-prometheus")["agentobs.io/cert-hash"]
    original = _secret(kube, namespace, "rot-prometheus-tls")["tls.crt"]
    ca_data = _secret(kube, namespace, "rot-ca")
    ca = pki.KeyPair(ca_data["tls.crt"], ca_data["tls.key"])
    # Put a certificate in place that is valid but inside its renewal window (5 of 30 days left).
    now = dt.datetime.now(dt.UTC)
    stale = pki.issue(ca, "rot", [f"rot-prometheus.{namespace}.svc"], now - dt.timedelta(days=25),
                      dt.timedelta(days=30))

    def put_stale() -> None:
        kube.apply({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                    "metadata": {"name": "rot-prometheus-tls", "namespace": namespace},
                    "data": {"tls.crt": base64.b64encode(stale.cert_pem).decode(),
                             "tls.key": base64.b64encode(stale.key_pem).decode()}})

    put_stale()

    def renewed() -> bool:
        tls = _secret(kube, namespace, "rot-prometheus-tls")
        pair = pki.KeyPair(tls["tls.crt"], tls["tls.key"])
        if pair.cert_pem == original:
            put_stale()  # a pass that read the Secret before our write put the original back
            return False
        return pair.cert_pem not in (stale.cert_pem, original) and pair.not_after > now + dt.timedelta(days=29)

    wait_for("the certificate in its renewal window to be replaced", renewed)
    tls = _secret(kube, namespace, "rot-prometheus-tls")
    assert pki.signed_by(pki.KeyPair(tls["tls.crt"], tls["tls.key"]), ca)
    wait_for("the pod template to change", lambda: _pod_annotations(kube, namespace, "rot-prometheus")[
        "agentobs.io/cert-hash"] != before_hash)
    wait_ready(kube, namespace, "rot")


def test_generated_secrets_survive_reconciles_spec_changes_and_restart(kube: Kube, operator: Operator,
                                                                       namespace: str) -> None:
    kube.apply(make_resource("keep", namespace, {}))
    wait_ready(kube, namespace, "keep", generation=1)
    first = _secret(kube, namespace, "keep-prometheus-web-auth")
    ca_first = _secret(kube, namespace, "keep-ca")
    assert len(first["password"]) >= 32 and first["password.bcrypt"].startswith(b"$2")

    kube.apply(make_resource("keep", namespace, {"prometheus": {"replicas": 3}}))
    wait_ready(kube, namespace, "keep", generation=2)
    operator.stop()
    operator.start()
    kube.apply(make_resource("keep", namespace, {"prometheus": {"replicas": 2, "retention": "30d"}}))
    wait_ready(kube, namespace, "keep", generation=3)

    assert _secret(kube, namespace, "keep-prometheus-web-auth") == first
    assert _secret(kube, namespace, "keep-ca") == ca_first
    log = operator.log()
    for value in (first["password"], first["password.bcrypt"], ca_first["tls.key"]):
        assert value.decode().strip() not in log


def test_secrets_stay_out_of_status_and_events(kube: Kube, operator: Operator, namespace: str) -> None:
    kube.apply(make_resource("quiet", namespace, {}))
    res = wait_ready(kube, namespace, "quiet")
    secret = _secret(kube, namespace, "quiet-prometheus-web-auth")
    events: list[dict[str, Any]] = kube.list("v1", "Event", namespace)
    assert any(e.get("reason") == "Issued" for e in events), [e.get("reason") for e in events]
    text = str(res.get("status")) + str(events)
    assert secret["password"].decode() not in text and secret["password.bcrypt"].decode() not in text
