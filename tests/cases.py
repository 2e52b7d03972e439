"""Invalid specs shared by the unit tests (pydantic) and the control-plane tests (the API server).

Each case: (id, spec, the field path the error must name).
"""

from __future__ import annotations

from typing import Any

# A valid OIDC block, for the cases that break one of its fields.
_OIDC: dict[str, Any] = {
    "issuerUrl": "https://sso.example.com", "authUrl": "https://sso.example.com/auth",
    "tokenUrl": "https://sso.example.com/token", "userinfoUrl": "https://sso.example.com/userinfo",
    "clientId": "grafana", "clientSecret": {"name": "grafana-oidc", "key": "secret"},
}

INVALID_SPECS: list[tuple[str, dict[str, Any], str]] = [
    ("ha-single-replica", {"prometheus": {"replicas": 1}}, "spec.prometheus.replicas"),
    ("bad-retention", {"prometheus": {"retention": "10 days"}}, "spec.prometheus.retention"),
    ("even-es-nodes", {"elasticsearch": {"nodes": 4}}, "spec.elasticsearch.nodes"),
    ("one-es-node", {"elasticsearch": {"nodes": 1}}, "spec.elasticsearch.nodes"),
    ("external-without-url", {"elasticsearch": {"external": {"credentialsSecret": "es-creds"}}},
     "spec.elasticsearch.external.url"),
    ("external-without-credentials", {"elasticsearch": {"external": {"url": "https://es.example:9200"}}},
     "spec.elasticsearch.external.credentialsSecret"),
    ("sampling-above-one", {"instrumentation": {"samplingRatio": 1.5}}, "spec.instrumentation.samplingRatio"),
    ("renew-after-expiry", {"tls": {"certificateLifetime": "24h", "renewBefore": "48h"}}, "spec.tls.renewBefore"),
    ("lifetime-under-an-hour", {"tls": {"certificateLifetime": "30m"}}, "spec.tls.certificateLifetime"),
    ("renew-before-under-5m", {"tls": {"renewBefore": "1m"}}, "spec.tls.renewBefore"),
    ("autoscaling-inverted", {"tracing": {"collector": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}},
     "spec.tracing.collector.autoscaling.maxReplicas"),
    # Stricter input (issue 12, item 7).
    ("image-with-spaces", {"images": {"grafana": "grafana/grafana: latest"}}, "spec.images.grafana"),
    ("image-uppercase-path", {"images": {"prometheus": "quay.io/Prometheus/prometheus:v3"}}, "spec.images.prometheus"),
    ("host-with-underscore", {"grafana": {"ingressHost": "grafana_team.example.com"}}, "spec.grafana.ingressHost"),
    ("label-key-with-space", {"instrumentation": {"podSelector": {"matchLabels": {"agent kind": "llm"}}}},
     "spec.instrumentation.podSelector.matchLabels"),
    ("namespace-label-value-too-long",
     {"instrumentation": {"namespaceSelector": {"matchLabels": {"team": "x" * 64}}}},
     "spec.instrumentation.namespaceSelector.matchLabels"),
    ("log-label-key-bad-prefix", {"logging": {"podLabels": {"-bad.example/app": "a"}}}, "spec.logging.podLabels"),
    ("attribute-key-starts-with-digit", {"instrumentation": {"resourceAttributes": {"1team": "search"}}},
     "spec.instrumentation.resourceAttributes"),
    ("attribute-value-with-comma", {"instrumentation": {"resourceAttributes": {"team": "a,b"}}},
     "spec.instrumentation.resourceAttributes"),
    ("es-heap-above-limit", {"elasticsearch": {"heap": "3g", "resources": {"limits": {"memory": "2Gi"}}}},
     "spec.elasticsearch.heap"),
    ("es-heap-equal-to-limit", {"elasticsearch": {"heap": "2048m", "resources": {"limits": {"memory": "2Gi"}}}},
     "spec.elasticsearch.heap"),
    ("rule-group-without-name", {"prometheus": {"extraRules": [{"rules": [{"alert": "A", "expr": "up == 0"}]}]}},
     "spec.prometheus.extraRules[0].name"),
    ("rule-group-without-rules", {"prometheus": {"extraRules": [{"name": "team"}]}},
     "spec.prometheus.extraRules[0].rules"),
    ("rule-without-expr", {"prometheus": {"extraRules": [{"name": "team", "rules": [{"alert": "A"}]}]}},
     "spec.prometheus.extraRules[0].rules[0].expr"),
    ("rule-alert-and-record", {"prometheus": {"extraRules": [{"name": "team", "rules": [
        {"alert": "A", "record": "a:b", "expr": "up"}]}]}}, "spec.prometheus.extraRules[0].rules[0]"),
    ("rule-bad-for", {"prometheus": {"extraRules": [{"name": "team", "rules": [
        {"alert": "A", "expr": "up", "for": "five minutes"}]}]}}, "spec.prometheus.extraRules[0].rules[0].for"),
    ("rule-groups-same-name", {"prometheus": {"extraRules": [
        {"name": "team", "rules": [{"alert": "A", "expr": "up"}]},
        {"name": "team", "rules": [{"alert": "B", "expr": "up"}]}]}}, "spec.prometheus.extraRules"),
    # Names the rendered pods and claims carry: refused on the resource, not as a Degraded child.
    ("admin-secret-not-a-name", {"grafana": {"adminSecret": "Grafana_Admin"}}, "spec.grafana.adminSecret"),
    ("receivers-key-with-slash", {"prometheus": {"alertmanager": {"receiversSecret": {
        "name": "alertmanager", "key": "config/alertmanager.yml"}}}},
     "spec.prometheus.alertmanager.receiversSecret.key"),
    ("storage-class-with-space", {"prometheus": {"storage": {"storageClassName": "fast ssd"}}},
     "spec.prometheus.storage.storageClassName"),
    ("es-credentials-uppercase", {"elasticsearch": {"external": {"url": "https://es.example:9200",
                                                                  "credentialsSecret": "ES-Creds"}}},
     "spec.elasticsearch.external.credentialsSecret"),
    ("issuer-name-with-underscore", {"tls": {"issuerRef": {"name": "team_ca"}}}, "spec.tls.issuerRef.name"),
    # Grafana compares each item with the provider's groups claim as it is: an empty or padded item
    # matches nobody.
    ("oidc-group-empty", {"grafana": {"oidc": _OIDC | {"allowedGroups": ["sre", ""]}}},
     "spec.grafana.oidc.allowedGroups"),
    ("oidc-group-padded", {"grafana": {"oidc": _OIDC | {"allowedGroups": [" sre"]}}},
     "spec.grafana.oidc.allowedGroups"),
    ("oidc-group-too-long", {"grafana": {"oidc": _OIDC | {"allowedGroups": ["g" * 257]}}},
     "spec.grafana.oidc.allowedGroups"),
    ("oidc-groups-too-many", {"grafana": {"oidc": _OIDC | {"allowedGroups": [f"g{i}" for i in range(101)]}}},
     "spec.grafana.oidc.allowedGroups"),
    ("negative-model-price", {"instrumentation": {"modelPrices": {"gpt-4o": {"input": -1, "output": 1}}}},
     "spec.instrumentation.modelPrices"),
    # Container resources as a pod takes them: refused on the spec's field, not by the StatefulSet
    # the operator renders (which left the stack Degraded with a message about the child).
    ("resource-name-uppercase", {"prometheus": {"resources": {"requests": {"CPU": "1"}}}},
     "spec.prometheus.resources.requests"),
    ("resource-name-abbreviated", {"grafana": {"resources": {"limits": {"mem": "1Gi"}}}},
     "spec.grafana.resources.limits"),
    ("resource-name-trailing-space", {"tracing": {"collector": {"resources": {
        "requests": {"nvidia.com/gpu ": "1"}, "limits": {"nvidia.com/gpu ": "1"}}}}},
     "spec.tracing.collector.resources.requests"),
    ("resource-hugepages-without-size", {"elasticsearch": {"resources": {"limits": {"hugepages-": "1Gi"}}}},
     "spec.elasticsearch.resources.limits"),
    ("resource-quantity-with-space", {"logging": {"resources": {"requests": {"memory": "1 Gi"}}}},
     "spec.logging.resources.requests"),
    ("resource-quantity-lowercase-unit", {"tracing": {"queryResources": {"limits": {"memory": "1gi"}}}},
     "spec.tracing.queryResources.limits"),
    ("resource-quantity-too-long", {"grafana": {"resources": {"requests": {"cpu": "1" * 33}}}},
     "spec.grafana.resources.requests"),
    ("resources-too-many", {"grafana": {"resources": {"limits": {f"example.com/r{i}": "1" for i in range(17)}}}},
     "spec.grafana.resources.limits"),
    ("limit-below-request", {"prometheus": {"resources": {"requests": {"memory": "4Gi"}, "limits": {"memory": "2Gi"}}}},
     "spec.prometheus.resources.limits"),
    ("cpu-limit-below-request", {"prometheus": {"alertmanager": {"resources": {
        "requests": {"cpu": "1"}, "limits": {"cpu": "500m"}}}}}, "spec.prometheus.alertmanager.resources.limits"),
    ("extended-request-without-limit", {"grafana": {"resources": {"requests": {"nvidia.com/gpu": "1"}}}},
     "spec.grafana.resources.limits"),
    ("extended-fraction", {"grafana": {"resources": {"requests": {"nvidia.com/gpu": "0.5"},
                                                     "limits": {"nvidia.com/gpu": "0.5"}}}},
     "spec.grafana.resources.requests"),
    # Zero where it means nothing: Prometheus reads a zero retention or interval as unset and keeps
    # its default (15d, 1m); a zero volume or heap fails only once the stack is made.
    ("retention-zero-days", {"prometheus": {"retention": "0d"}}, "spec.prometheus.retention"),
    ("retention-zero-seconds", {"prometheus": {"retention": "00s"}}, "spec.prometheus.retention"),
    ("scrape-interval-zero", {"prometheus": {"scrapeInterval": "0s"}}, "spec.prometheus.scrapeInterval"),
    ("rule-group-interval-zero", {"prometheus": {"extraRules": [{"name": "team", "interval": "0m", "rules": [
        {"alert": "A", "expr": "up"}]}]}}, "spec.prometheus.extraRules[0].interval"),
    ("prometheus-storage-zero", {"prometheus": {"storage": {"size": "0Gi"}}}, "spec.prometheus.storage.size"),
    ("es-storage-zero-no-unit", {"elasticsearch": {"storage": {"size": "0"}}}, "spec.elasticsearch.storage.size"),
    ("buffer-storage-zero-decimal", {"logging": {"storage": {"size": "0.0Mi"}}}, "spec.logging.storage.size"),
    ("es-heap-zero", {"elasticsearch": {"heap": "0g"}}, "spec.elasticsearch.heap"),
    ("es-heap-zero-megabytes", {"elasticsearch": {"heap": "000m"}}, "spec.elasticsearch.heap"),
    # Strings that go into Grafana's environment or a Certificate, bounded and without whitespace.
    ("oidc-client-id-too-long", {"grafana": {"oidc": _OIDC | {"clientId": "c" * 257}}}, "spec.grafana.oidc.clientId"),
    ("oidc-client-id-padded", {"grafana": {"oidc": _OIDC | {"clientId": "grafana "}}}, "spec.grafana.oidc.clientId"),
    ("oidc-client-id-line-break", {"grafana": {"oidc": _OIDC | {"clientId": "gra\nfana"}}},
     "spec.grafana.oidc.clientId"),
    ("oidc-issuer-url-with-space", {"grafana": {"oidc": _OIDC | {"issuerUrl": "https://sso.example.com /realms/a"}}},
     "spec.grafana.oidc.issuerUrl"),
    ("oidc-auth-url-too-long", {"grafana": {"oidc": _OIDC | {"authUrl": "https://sso.example.com/" + "a" * 2030}}},
     "spec.grafana.oidc.authUrl"),
    ("oidc-token-url-no-host", {"grafana": {"oidc": _OIDC | {"tokenUrl": "https:///token"}}},
     "spec.grafana.oidc.tokenUrl"),
    ("oidc-userinfo-url-trailing-newline",
     {"grafana": {"oidc": _OIDC | {"userinfoUrl": "https://sso.example.com/userinfo\n"}}},
     "spec.grafana.oidc.userinfoUrl"),
    ("external-es-url-with-tab", {"elasticsearch": {"external": {"url": "https://es.example:9200\t",
                                                                  "credentialsSecret": "es-creds"}}},
     "spec.elasticsearch.external.url"),
    ("issuer-group-uppercase", {"tls": {"issuerRef": {"name": "ca", "group": "Cert-Manager.io"}}},
     "spec.tls.issuerRef.group"),
    ("hugepages-not-whole-pages", {"prometheus": {"resources": {
        "requests": {"hugepages-2Mi": "3Mi"}, "limits": {"hugepages-2Mi": "3Mi"}}}},
     "spec.prometheus.resources.requests"),
    ("hugepages-limit-not-whole-pages", {"grafana": {"resources": {"limits": {"hugepages-1Gi": "1536Mi"}}}},
     "spec.grafana.resources.limits"),
    ("hugepages-page-size-zero", {"grafana": {"resources": {"limits": {"hugepages-0": "0"}}}},
     "spec.grafana.resources.limits"),
    ("resource-name-quota-prefix", {"grafana": {"resources": {"limits": {"requests.example.com/gpu": "1"}}}},
     "spec.grafana.resources.limits"),
    ("issuer-group-with-version", {"tls": {"issuerRef": {"name": "ca", "group": "cert-manager.io/v1"}}},
     "spec.tls.issuerRef.group"),
    ("issuer-group-too-long", {"tls": {"issuerRef": {"name": "ca", "group": "a." * 126 + "io"}}},
     "spec.tls.issuerRef.group"),
]

# Valid specs at the edge of the rules above: both pydantic and the API server store them as given.
VALID_BOUNDARY_SPECS: list[tuple[str, dict[str, Any]]] = [
    ("resources-every-kind-of-name", {"elasticsearch": {"resources": {
        "requests": {"cpu": "1500m", "memory": "2Gi", "ephemeral-storage": "1Gi", "hugepages-2Mi": "64Mi",
                     "nvidia.com/gpu": "1", "example.com/foo_bar.v2": "2"},
        "limits": {"cpu": "1.5", "memory": "2Gi", "ephemeral-storage": "2Gi", "hugepages-2Mi": "64Mi",
                   "nvidia.com/gpu": "1", "example.com/foo_bar.v2": "2"}}}}),
    ("resources-limit-equal-in-other-units", {"prometheus": {"resources": {
        "requests": {"cpu": "1", "memory": "1024Mi"}, "limits": {"cpu": "1000m", "memory": "1Gi"}}}}),
    ("hugepages-whole-pages-in-other-units", {"prometheus": {"resources": {
        "requests": {"cpu": "1", "hugepages-1Gi": "2048Mi", "hugepages-2Mi": "4194304"},
        "limits": {"cpu": "1", "hugepages-1Gi": "2Gi", "hugepages-2Mi": "4Mi"}}}}),
    ("resources-limit-only", {"grafana": {"resources": {"limits": {"memory": "1Gi", "nvidia.com/gpu": "2"}}}}),
    ("resources-request-only", {"grafana": {"resources": {"requests": {"cpu": "100m"}}}}),
    ("positive-periods-sizes-and-heap", {
        "prometheus": {"retention": "1h", "scrapeInterval": "500ms", "storage": {"size": "0.5Gi"},
                       "extraRules": [{"name": "team", "interval": "10s", "rules": [
                           {"alert": "A", "expr": "up == 0", "for": "0s", "keep_firing_for": "0s"}]}]},
        "elasticsearch": {"heap": "256m", "storage": {"size": "100Gi"}},
        "logging": {"storage": {"size": "1"}}}),
    ("oidc-and-issuer-at-their-bounds", {
        "grafana": {"oidc": _OIDC | {
            "clientId": "c" * 256, "issuerUrl": "https://sso.example.com:8443/realms/team",
            "authUrl": "https://sso.example.com/auth?prompt=login&" + "a" * 1990,
            "tokenUrl": "https://login.example.com/tenant-id/oauth2/v2.0/token",
            "userinfoUrl": "https://sso.example.com/userinfo"}},
        "tls": {"issuerRef": {"name": "ca", "kind": "ClusterIssuer", "group": "awspca.cert-manager.io"}}}),
    ("oidc-client-id-with-inner-space-and-empty-issuer-group", {
        "grafana": {"oidc": _OIDC | {"clientId": "team grafana"}},
        "tls": {"issuerRef": {"name": "ca", "group": ""}}}),
]
