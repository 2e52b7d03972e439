"""Two resources whose selections overlap: each agent pod's traces and logs go to the one resource
whose webhook injection it carries, and so must its metrics. Both Prometheus pairs used to scrape
it (the agents job kept pods by labels alone): the other stack stored the series too and its
Alertmanager sent the same agent alerts a second time."""
from __future__ import annotations

import re
from typing import Any

from agentobs.admission.injection import INJECTED_ANNOTATION
from agentobs.api.spec import AgentObservabilitySpec
from agentobs.render import Owner
from agentobs.render.prometheus_config import make_prometheus_config


def _agents_job(name: str) -> dict[str, Any]:
    owner = Owner(name=name, namespace="agents", uid=f"uid-{name}", spec=AgentObservabilitySpec())
    config = make_prometheus_config(owner)
    return next(job for job in config["scrape_configs"] if job["job_name"] == "agents")


def _kept(job: dict[str, Any], annotations: dict[str, str]) -> bool:
    """Prometheus' keep and drop actions on a discovered pod: the source values joined with `;`,
    matched by the whole regex; an absent label is empty."""
    labels = {"__meta_kubernetes_pod_label_agentobs_io_agent": "true", "__meta_kubernetes_pod_phase": "Running"}
    labels |= {"__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-zA-Z0-9_]", "_", k): v
               for k, v in annotations.items()}
    for rule in job["relabel_configs"]:
        if rule.get("action") not in ("keep", "drop"):
            continue
        value = ";".join(labels.get(s, "") for s in rule["source_labels"])
        matched = re.fullmatch(rule.get("regex", "(.*)"), value) is not None
        if matched != (rule["action"] == "keep"):
            return False
    return True


def test_a_pod_another_resource_instrumented_is_not_scraped() -> None:
    job = _agents_job("small")
    assert not _kept(job, {INJECTED_ANNOTATION: "agents/minimal"})
    assert _kept(job, {INJECTED_ANNOTATION: "agents/small"})
    assert _kept(job, {})  # not injected (the webhook was down): still this stack's to watch
    assert _kept(_agents_job("minimal"), {INJECTED_ANNOTATION: "agents/minimal"})
