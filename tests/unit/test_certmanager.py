"""The cert-manager mode (`spec.tls.issuerRef`): Certificates instead of operator-made Secrets, the
issuer's CA in the bundle, workloads that render before issuance, and what gather reports."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any, cast

import pytest

from agentobs import pki
from agentobs.api.spec import AgentObservabilitySpec
from agentobs.kube import Kube
from agentobs.render import Material, Owner, certificate_requests, make_stack
from agentobs.render.common import CERT_HASH_ANNOTATION, labels
from agentobs.render.tls import PENDING_CERT_HASH
from agentobs.stack.material import gather

from placeholders import placeholder_material

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
ISSUER = {"name": "platform-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
WORKLOAD_KINDS = ("StatefulSet", "Deployment", "DaemonSet")


def _owner(tls: dict[str, Any] | None = None) -> Owner:
    spec = {"tls": tls if tls is not None else {"issuerRef": ISSUER, "certificateLifetime": "720h",
                                                   "renewBefore": "240h"}}
    return Owner(name="demo", namespace="agents", uid="uid-1", spec=AgentObservabilitySpec.model_validate(spec))


def _pending(owner: Owner) -> Material:
    """What gather hands over before cert-manager has issued anything: no certs, an empty CA."""
    credentials = placeholder_material(owner).credentials
    return Material(ca=pki.KeyPair(b"", b""), certs={}, credentials=credentials)


def _by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _cert_hashes(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {o["metadata"]["name"]: o["spec"]["template"]["metadata"]["annotations"][CERT_HASH_ANNOTATION]
            for o in objects if o["kind"] in WORKLOAD_KINDS
            and CERT_HASH_ANNOTATION in o["spec"]["template"]["metadata"].get("annotations", {})}


def test_a_certificate_per_request_fills_the_secret_the_operator_would_have_made() -> None:
    owner = _owner()
    certificates = _by_kind(make_stack(owner, _pending(owner)), "Certificate")
    requests = certificate_requests(owner)
    assert set(certificates) == {f"demo-{component}-tls" for component in requests}
    for component, dns_names in requests.items():
        cert = certificates[f"demo-{component}-tls"]
        assert cert["apiVersion"] == "cert-manager.io/v1"
        assert cert["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
        assert cert["metadata"]["labels"] == labels(owner, component)
        spec = cert["spec"]
        assert spec["secretName"] == f"demo-{component}-tls"
        assert spec["dnsNames"] == dns_names
        assert (spec["duration"], spec["renewBefore"]) == ("720h", "240h")
        assert spec["issuerRef"] == ISSUER
        assert spec["privateKey"]["algorithm"] == "ECDSA" and spec["privateKey"]["size"] == 256
        assert {"server auth", "client auth"} <= set(spec["usages"])
        assert spec["secretTemplate"]["labels"] == labels(owner, component)
        # cert-manager's Secret is not a rendered child: pruning must not take it from cert-manager.
        assert "annotations" not in spec["secretTemplate"], "wanted by reconcile, not retained forever"


def test_issuer_defaults_reach_the_certificate() -> None:
    owner = _owner({"issuerRef": {"name": "team-ca"}})
    cert = _by_kind(make_stack(owner, _pending(owner)), "Certificate")["demo-prometheus-tls"]
    assert cert["spec"]["issuerRef"] == {"name": "team-ca", "kind": "Issuer", "group": "cert-manager.io"}
    assert (cert["spec"]["duration"], cert["spec"]["renewBefore"]) == ("2160h", "720h")


def test_a_lifetime_alone_gives_cert_manager_a_third_of_it_to_renew() -> None:
    owner = _owner({"issuerRef": {"name": "team-ca"}, "certificateLifetime": "25h"})
    cert = _by_kind(make_stack(owner, _pending(owner)), "Certificate")["demo-prometheus-tls"]
    assert (cert["spec"]["duration"], cert["spec"]["renewBefore"]) == ("25h", "8h20m")


def test_no_tls_or_ca_secret_is_rendered_with_cert_manager() -> None:
    owner = _owner()
    objects = make_stack(owner, placeholder_material(owner))
    secrets = _by_kind(objects, "Secret")
    assert "demo-ca" not in secrets
    assert not [name for name, s in secrets.items() if s.get("type") == "kubernetes.io/tls"]
    assert not [name for name in secrets if name.endswith("-tls")]
    assert all("tls.key" not in (s.get("data") or {}) for s in secrets.values())


def test_default_mode_renders_no_certificate_and_the_operator_secrets() -> None:
    owner = _owner({})
    objects = make_stack(owner, placeholder_material(owner))
    assert not _by_kind(objects, "Certificate")
    secrets = _by_kind(objects, "Secret")
    assert "demo-ca" in secrets
    assert {f"demo-{c}-tls" for c in certificate_requests(owner)} <= set(secrets)


def test_workloads_render_before_issuance_and_roll_when_it_happens() -> None:
    owner = _owner()
    pending = make_stack(owner, _pending(owner))
    default = make_stack(_owner({}), placeholder_material(_owner({})))
    workloads = {(o["kind"], o["metadata"]["name"]) for o in pending if o["kind"] in WORKLOAD_KINDS}
    assert workloads == {(o["kind"], o["metadata"]["name"]) for o in default if o["kind"] in WORKLOAD_KINDS}
    pending_hashes = _cert_hashes(pending)
    assert pending_hashes and set(pending_hashes.values()) == {PENDING_CERT_HASH}
    issued = _cert_hashes(make_stack(owner, placeholder_material(owner)))
    assert set(issued) == set(pending_hashes)
    assert all(value != PENDING_CERT_HASH for value in issued.values())


def test_the_ca_bundle_carries_the_material_ca_and_is_empty_while_pending() -> None:
    owner = _owner()
    bundle = _by_kind(make_stack(owner, _pending(owner)), "ConfigMap")["demo-ca-bundle"]
    assert bundle["data"] == {"ca.crt": ""}
    material = placeholder_material(owner)
    bundle = _by_kind(make_stack(owner, material), "ConfigMap")["demo-ca-bundle"]
    assert bundle["data"] == {"ca.crt": material.ca.cert_pem.decode()}


class FakeKube:
    """Secrets by name; gather only reads."""

    def __init__(self, secrets: dict[str, dict[str, Any]] | None = None) -> None:
        self.secrets = dict(secrets or {})
        self.read: list[str] = []

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        assert (api_version, kind, namespace) == ("v1", "Secret", "agents")
        self.read.append(name)
        return self.secrets.get(name)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _issued_secret(ca: pki.KeyPair, dns_names: list[str], issuer: dict[str, str] = ISSUER,
                   with_ca: bool = True) -> dict[str, Any]:
    """What cert-manager's CA issuer writes: the pair, the CA, and annotations naming the issuer."""
    pair = pki.issue(ca, dns_names[0], dns_names, NOW, dt.timedelta(days=30))
    data = {"tls.crt": _b64(pair.cert_pem), "tls.key": _b64(pair.key_pem)}
    if with_ca:
        data["ca.crt"] = _b64(ca.cert_pem)
    return {"metadata": {"annotations": {"cert-manager.io/issuer-name": issuer["name"],
                                         "cert-manager.io/issuer-kind": issuer["kind"],
                                         "cert-manager.io/issuer-group": issuer["group"]}},
            "data": data}


def _all_issued(owner: Owner, ca: pki.KeyPair) -> dict[str, dict[str, Any]]:
    return {f"demo-{c}-tls": _issued_secret(ca, names) for c, names in certificate_requests(owner).items()}


def test_gather_before_issuance_makes_nothing_and_names_the_missing_secrets() -> None:
    owner = _owner()
    kube = FakeKube()
    gathered = gather(cast(Kube, kube), owner, NOW)
    assert gathered.tls_ready is False
    assert gathered.material.certs == {} and gathered.material.ca.cert_pem == b""
    for component in certificate_requests(owner):
        assert f"demo-{component}-tls" in gathered.tls_message
    assert "demo-ca" not in kube.read  # the operator's CA is neither read nor made
    assert not [i for i in gathered.issued if "certificate" in i or i == "CA"]
    assert gathered.material.credentials  # generated credentials do not depend on the TLS mode


def test_gather_after_issuance_reads_the_secrets_and_the_issuer_ca() -> None:
    owner = _owner()
    ca = pki.make_ca("platform", NOW, dt.timedelta(days=365))
    secrets = _all_issued(owner, ca)
    gathered = gather(cast(Kube, FakeKube(secrets)), owner, NOW)
    assert gathered.tls_ready is True and gathered.tls_message == ""
    assert gathered.material.ca.cert_pem == ca.cert_pem
    assert gathered.material.ca.key_pem == b""  # cert-manager keeps the CA key
    for component in certificate_requests(owner):
        stored = base64.b64decode(secrets[f"demo-{component}-tls"]["data"]["tls.crt"])
        assert gathered.material.certs[component].cert_pem == stored


def test_a_partly_issued_stack_is_pending_but_rolls_what_is_there() -> None:
    owner = _owner()
    ca = pki.make_ca("platform", NOW, dt.timedelta(days=365))
    secrets = _all_issued(owner, ca)
    del secrets["demo-grafana-tls"]
    gathered = gather(cast(Kube, FakeKube(secrets)), owner, NOW)
    assert gathered.tls_ready is False
    assert "demo-grafana-tls" in gathered.tls_message and "demo-prometheus-tls" not in gathered.tls_message
    hashes = _cert_hashes(make_stack(owner, gathered.material))
    assert hashes["demo-grafana"] == PENDING_CERT_HASH and hashes["demo-prometheus"] != PENDING_CERT_HASH


@pytest.mark.parametrize("stale", ["another issuer", "no annotations", "missing a name"])
def test_a_secret_not_from_the_spec_issuer_is_pending(stale: str) -> None:
    owner = _owner()
    ca = pki.make_ca("platform", NOW, dt.timedelta(days=365))
    secrets = _all_issued(owner, ca)
    names = certificate_requests(owner)["prometheus"]
    if stale == "another issuer":
        secrets["demo-prometheus-tls"] = _issued_secret(ca, names, {**ISSUER, "name": "old-ca"})
    elif stale == "no annotations":  # what the operator's own CA left before the switch
        secrets["demo-prometheus-tls"]["metadata"] = {}
    else:
        secrets["demo-prometheus-tls"] = _issued_secret(ca, names[:1])
    gathered = gather(cast(Kube, FakeKube(secrets)), owner, NOW)
    assert gathered.tls_ready is False and "demo-prometheus-tls" in gathered.tls_message
    assert "prometheus" in gathered.material.certs  # still what the pods mount


def test_an_issuer_that_gives_no_ca_is_reported() -> None:
    owner = _owner()
    ca = pki.make_ca("platform", NOW, dt.timedelta(days=365))
    secrets = {name: _issued_secret(ca, certificate_requests(owner)[name[5:-4]], with_ca=False)
               for name in _all_issued(owner, ca)}
    gathered = gather(cast(Kube, FakeKube(secrets)), owner, NOW)
    assert gathered.tls_ready is False and "ca.crt" in gathered.tls_message
    assert gathered.material.ca.cert_pem == b""


def test_the_bundle_trusts_every_ca_while_the_issuer_rotates() -> None:
    owner = _owner()
    old, new = (pki.make_ca(n, NOW, dt.timedelta(days=365)) for n in ("old", "new"))
    secrets = _all_issued(owner, old)
    secrets["demo-grafana-tls"] = _issued_secret(new, certificate_requests(owner)["grafana"])
    gathered = gather(cast(Kube, FakeKube(secrets)), owner, NOW)
    bundle = gathered.material.ca.cert_pem
    assert old.cert_pem in bundle and new.cert_pem in bundle
    assert gathered.tls_ready is True


def test_the_operator_ca_mode_leaves_tls_readiness_to_reconcile() -> None:
    owner = _owner({})
    gathered = gather(cast(Kube, FakeKube()), owner, NOW)
    assert gathered.tls_ready is None
    assert "CA" in gathered.issued and set(gathered.material.certs) == set(certificate_requests(owner))
