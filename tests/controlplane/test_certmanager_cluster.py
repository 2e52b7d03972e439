"""The cert-manager mode against the real API server with cert-manager's own CRDs installed.

No cert-manager controller runs here, so the test plays it: it checks the Certificates the operator
created (accepted by the API server under the real schema), then writes the Secrets a cert-manager
CA issuer would write, and watches the operator react: TLSReady, the CA bundle, the workloads'
cert-hash, pruning that leaves cert-manager's Secrets alone, and the switch back to the operator's CA.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentobs import pki
from agentobs.api.spec import AgentObservabilitySpec
from agentobs.kube import Kube
from agentobs.render import Owner, certificate_requests, make_stack
from agentobs.render.common import CERT_HASH_ANNOTATION
from agentobs.render.tls import PENDING_CERT_HASH

from cluster_support import wait_established
from conftest import ROOT, Operator, condition, get_resource, make_resource, wait_for, wait_ready
from placeholders import placeholder_material

CERTIFICATE = ("cert-manager.io/v1", "Certificate")
CRD_FILES = ("cert-manager.io_certificates.yaml", "cert-manager.io_certificaterequests.yaml",
             "cert-manager.io_issuers.yaml", "cert-manager.io_clusterissuers.yaml")
ISSUER = "stack-ca"
NAME = "cm"
# The field manager cert-manager's issuing controller writes Secrets with.
CERT_MANAGER_MANAGER = "cert-manager-certificates-issuing"


@pytest.fixture(scope="module")
def cert_manager_crds(kubectl: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """cert-manager's CRDs from the pinned module (tools/cert-manager); left installed, like ours."""
    found = subprocess.run([str(ROOT / "tools" / "cert-manager" / "crds.sh")], capture_output=True, text=True,
                           check=False)
    if found.returncode != 0:
        pytest.fail(f"cert-manager CRDs not available:\n{found.stderr[-2000:]}")
    crds = Path(found.stdout.strip())
    for name in CRD_FILES:
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds / name))
    wait_established(kubectl, "certificates.cert-manager.io", "issuers.cert-manager.io")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _secret_data(kube: Kube, namespace: str, name: str) -> dict[str, bytes]:
    obj = kube.get("v1", "Secret", namespace, name)
    assert obj is not None, name
    return {k: base64.b64decode(v) for k, v in obj["data"].items()}


def _tls_condition(kube: Kube, namespace: str) -> dict[str, Any]:
    return condition(get_resource(kube, namespace, NAME), "TLSReady")


def _cert_hashes(kube: Kube, namespace: str, workloads: list[tuple[str, str, str]]) -> dict[str, str] | None:
    """The cert-hash of every workload, or None while one does not exist yet."""
    out = {}
    for api, kind, name in workloads:
        obj = kube.get(api, kind, namespace, name)
        if obj is None:
            return None
        out[name] = obj["spec"]["template"]["metadata"]["annotations"][CERT_HASH_ANNOTATION]
    return out


def _certificates(kube: Kube, namespace: str, names: list[str]) -> list[dict[str, Any]] | None:
    """The Certificates named, or None while one is missing."""
    found = [kube.get(*CERTIFICATE, namespace, name) for name in names]
    return [c for c in found if c] if all(found) else None


def _issue_like_cert_manager(kube: Kube, certificate: dict[str, Any], ca: pki.KeyPair) -> pki.KeyPair:
    """The Secret cert-manager's CA issuer writes for `certificate`: key pair, CA, its annotations,
    and the Certificate's secretTemplate."""
    spec, now = certificate["spec"], dt.datetime.now(dt.UTC)
    pair = pki.issue(ca, spec["dnsNames"][0], spec["dnsNames"], now, dt.timedelta(hours=720))
    template = spec.get("secretTemplate") or {}
    annotations = {**template.get("annotations", {}),
                   "cert-manager.io/certificate-name": certificate["metadata"]["name"],
                   "cert-manager.io/alt-names": ",".join(spec["dnsNames"]),
                   "cert-manager.io/issuer-name": spec["issuerRef"]["name"],
                   "cert-manager.io/issuer-kind": spec["issuerRef"]["kind"],
                   "cert-manager.io/issuer-group": spec["issuerRef"]["group"]}
    kube.apply({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": spec["secretName"], "namespace": certificate["metadata"]["namespace"],
                             "labels": template.get("labels", {}), "annotations": annotations},
                "data": {"tls.crt": _b64(pair.cert_pem), "tls.key": _b64(pair.key_pem), "ca.crt": _b64(ca.cert_pem)}},
               field_manager=CERT_MANAGER_MANAGER)
    return pair


def test_cert_manager_issues_the_stack_certificates(kube: Kube, kubectl: Callable[..., Any], cert_manager_crds: None,
                                                    operator: Operator, namespace: str) -> None:
    # The issuer cert-manager would sign with: a CA issuer over a Secret holding a CA.
    ca = pki.make_ca("cert-manager test CA", dt.datetime.now(dt.UTC), dt.timedelta(days=365))
    kube.apply({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": "stack-ca-key-pair", "namespace": namespace},
                "data": {"tls.crt": _b64(ca.cert_pem), "tls.key": _b64(ca.key_pem)}}, field_manager="test")
    kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": ISSUER, "namespace": namespace},
        "spec": {"ca": {"secretName": "stack-ca-key-pair"}}}))

    spec = {"tls": {"issuerRef": {"name": ISSUER}, "certificateLifetime": "720h", "renewBefore": "240h"}}
    kube.apply(make_resource(NAME, namespace, spec))
    owner = Owner(name=NAME, namespace=namespace, uid="", spec=AgentObservabilitySpec.model_validate(spec))
    requests = certificate_requests(owner)
    secret_names = {component: f"{NAME}-{component}-tls" for component in requests}
    workloads = [(o["apiVersion"], o["kind"], o["metadata"]["name"])
                 for o in make_stack(owner, placeholder_material(owner))
                 if CERT_HASH_ANNOTATION in ((o.get("spec") or {}).get("template") or {}).get("metadata", {}).get(
                     "annotations", {})]
    assert workloads

    # The operator's Certificates, as the API server stored them under cert-manager's schema.
    certificates: list[dict[str, Any]] = wait_for(
        "the Certificates", lambda: _certificates(kube, namespace, list(secret_names.values())))
    by_name = {c["metadata"]["name"]: c for c in certificates}
    for component, dns_names in requests.items():
        cert_spec = by_name[secret_names[component]]["spec"]
        assert cert_spec["secretName"] == secret_names[component]
        assert cert_spec["dnsNames"] == dns_names
        assert cert_spec["issuerRef"] == {"name": ISSUER, "kind": "Issuer", "group": "cert-manager.io"}
        assert (cert_spec["duration"], cert_spec["renewBefore"]) == ("720h", "240h")

    # Before issuance: TLS not ready and naming what is missing; nothing TLS made by the operator;
    # the workloads exist, waiting with the pending cert-hash; the bundle is empty.
    def pending_naming_every_secret() -> dict[str, Any] | None:
        cond = _tls_condition(kube, namespace)
        named = all(s in cond.get("message", "") for s in secret_names.values())
        return cond if cond.get("status") == "False" and named else None

    pending = wait_for("TLSReady False naming the missing Secrets", pending_naming_every_secret)
    assert pending["reason"] == "CertificatesPending"
    assert kube.get("v1", "Secret", namespace, f"{NAME}-ca") is None
    assert all(kube.get("v1", "Secret", namespace, s) is None for s in secret_names.values())
    hashes = wait_for("every workload", lambda: _cert_hashes(kube, namespace, workloads))
    assert set(hashes.values()) == {PENDING_CERT_HASH}
    bundle = kube.get("v1", "ConfigMap", namespace, f"{NAME}-ca-bundle")
    assert bundle is not None and bundle["data"]["ca.crt"] == ""

    # cert-manager issues: TLS ready, the bundle holds the issuer's CA, every workload rolls.
    for certificate in certificates:
        _issue_like_cert_manager(kube, certificate, ca)
    wait_for("TLSReady True", lambda: _tls_condition(kube, namespace).get("status") == "True")
    wait_for("the issuer's CA in the bundle", lambda: (kube.get("v1", "ConfigMap", namespace, f"{NAME}-ca-bundle")
                                                       or {}).get("data", {}).get("ca.crt") == ca.cert_pem.decode())
    def hashes_when(ok: Callable[[dict[str, str]], bool]) -> Callable[[], dict[str, str] | None]:
        return lambda: (h if (h := _cert_hashes(kube, namespace, workloads)) and ok(h) else None)

    issued = wait_for("every cert-hash to leave pending", hashes_when(lambda h: PENDING_CERT_HASH not in h.values()))
    wait_ready(kube, namespace, NAME)

    # Renewal by cert-manager rolls that component's workload.
    prometheus_cert = by_name[secret_names["prometheus"]]
    _issue_like_cert_manager(kube, prometheus_cert, ca)
    renewed = wait_for("the Prometheus cert-hash to change on renewal", hashes_when(
        lambda h: h[f"{NAME}-prometheus"] != issued[f"{NAME}-prometheus"]))
    assert renewed[f"{NAME}-grafana"] == issued[f"{NAME}-grafana"]  # only the renewed component rolls

    # Pruning (here of Fluentd, turned off) leaves cert-manager's Secrets, which carry our labels.
    spec_without_logging = {**spec, "logging": {"enabled": False}}
    kube.apply(make_resource(NAME, namespace, spec_without_logging))
    wait_for("Fluentd pruned", lambda: kube.get("apps/v1", "StatefulSet", namespace, f"{NAME}-fluentd") is None)
    # The certificates of the components still there stay; logging's own (Fluentd's, the collector's
    # client certificate) go with their Certificates.
    still = certificate_requests(Owner(name=NAME, namespace=namespace, uid="",
                                       spec=AgentObservabilitySpec.model_validate(spec_without_logging)))
    assert {"fluentd", "log-collector"} <= set(secret_names) - set(still)
    assert all(kube.get("v1", "Secret", namespace, s) is not None for c, s in secret_names.items() if c in still)
    assert _tls_condition(kube, namespace)["status"] == "True"

    # Back to the operator's CA: Certificates pruned, its CA made, every Secret reissued under it.
    kube.apply(make_resource(NAME, namespace, {"logging": {"enabled": False}}))
    wait_for("the Certificates pruned", lambda: not any(
        kube.get(*CERTIFICATE, namespace, s) for s in secret_names.values()))
    operator_ca_data = wait_for("the operator's CA", lambda: kube.get("v1", "Secret", namespace, f"{NAME}-ca"))
    operator_ca = pki.KeyPair(base64.b64decode(operator_ca_data["data"]["tls.crt"]),
                              base64.b64decode(operator_ca_data["data"]["tls.key"]))

    def reissued_by_operator() -> bool:
        for component, name in secret_names.items():
            if component not in still:  # logging is off here
                continue
            data = _secret_data(kube, namespace, name)
            if not pki.signed_by(pki.KeyPair(data["tls.crt"], data["tls.key"]), operator_ca):
                return False
        return True

    wait_for("every Secret reissued by the operator's CA", reissued_by_operator)
    wait_for("the operator's CA in the bundle", lambda: (kube.get("v1", "ConfigMap", namespace, f"{NAME}-ca-bundle")
                                                         or {}).get("data", {}).get("ca.crt")
             == operator_ca.cert_pem.decode())
    wait_ready(kube, namespace, NAME)
    assert _tls_condition(kube, namespace)["status"] == "True"


def test_switching_from_the_operator_ca_to_cert_manager(kube: Kube, cert_manager_crds: None, operator: Operator,
                                                        namespace: str) -> None:
    kube.apply(make_resource(NAME, namespace, {"logging": {"enabled": False}}))
    wait_ready(kube, namespace, NAME)
    assert kube.get("v1", "Secret", namespace, f"{NAME}-ca") is not None

    spec = {"logging": {"enabled": False}, "tls": {"issuerRef": {"name": ISSUER, "kind": "ClusterIssuer"}}}
    kube.apply(make_resource(NAME, namespace, spec))
    owner = Owner(name=NAME, namespace=namespace, uid="", spec=AgentObservabilitySpec.model_validate(spec))
    names = [f"{NAME}-{component}-tls" for component in certificate_requests(owner)]

    certificates: list[dict[str, Any]] = wait_for("the Certificates", lambda: _certificates(kube, namespace, names))
    assert all(c["spec"]["issuerRef"]["kind"] == "ClusterIssuer" for c in certificates)
    # The operator's CA goes; what it signed is not what the spec's issuer signed, so TLS waits.
    wait_for("the operator's CA pruned", lambda: kube.get("v1", "Secret", namespace, f"{NAME}-ca") is None)
    wait_for("TLSReady False", lambda: _tls_condition(kube, namespace).get("status") == "False")

    ca = pki.make_ca("cert-manager cluster CA", dt.datetime.now(dt.UTC), dt.timedelta(days=365))
    for certificate in certificates:
        _issue_like_cert_manager(kube, certificate, ca)
    wait_for("TLSReady True", lambda: _tls_condition(kube, namespace).get("status") == "True")
    bundle = kube.get("v1", "ConfigMap", namespace, f"{NAME}-ca-bundle")
    assert bundle is not None and bundle["data"]["ca.crt"] == ca.cert_pem.decode()
    wait_ready(kube, namespace, NAME)
