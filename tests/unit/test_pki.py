"""CA and certificate issuing, renewal decisions, and that keys stay out of reprs."""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from agentobs import pki

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


def test_ca_signs_serving_certificate_with_sans() -> None:
    ca = pki.make_ca("test", NOW, dt.timedelta(days=365))
    leaf = pki.issue(ca, "prom", ["prom.ns.svc", "prom.ns.svc.cluster.local"], NOW, dt.timedelta(days=90),
                     ip_addresses=["127.0.0.1"])
    assert pki.signed_by(leaf, ca)
    sans = leaf.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["prom.ns.svc", "prom.ns.svc.cluster.local"]
    assert leaf.not_after == NOW + dt.timedelta(days=90)
    other = pki.make_ca("other", NOW, dt.timedelta(days=365))
    assert not pki.signed_by(leaf, other)


def test_leaf_never_outlives_its_ca() -> None:
    ca = pki.make_ca("short", NOW, dt.timedelta(days=10))
    leaf = pki.issue(ca, "x", ["x"], NOW, dt.timedelta(days=90))
    assert leaf.not_after == ca.not_after


def test_renewal_at_the_renew_before_point() -> None:
    ca = pki.make_ca("test", NOW, dt.timedelta(days=90))
    renew_before = dt.timedelta(days=30)
    assert not pki.needs_renewal(ca, NOW + dt.timedelta(days=59), renew_before)
    assert pki.needs_renewal(ca, NOW + dt.timedelta(days=60), renew_before)


def test_load_refuses_garbage_and_repr_hides_the_key() -> None:
    ca = pki.make_ca("test", NOW, dt.timedelta(days=1))
    assert pki.load(ca.cert_pem, ca.key_pem) == ca
    assert pki.load(b"not a cert", ca.key_pem) is None
    assert pki.load(ca.cert_pem, None) is None
    assert "PRIVATE" not in repr(ca) and "redacted" in repr(ca)
