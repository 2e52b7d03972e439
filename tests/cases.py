"""Invalid specs shared by the unit tests (pydantic) and the control-plane tests (the API server).

Each case: (id, spec, the field path the error must name).
"""

from __future__ import annotations

from typing import Any

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
    ("autoscaling-inverted", {"tracing": {"collector": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}},
     "spec.tracing.collector.autoscaling.maxReplicas"),
    ("negative-model-price", {"instrumentation": {"modelPrices": {"gpt-4o": {"input": -1, "output": 1}}}},
     "spec.instrumentation.modelPrices"),
]
