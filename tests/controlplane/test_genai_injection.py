"""The GenAI settings the webhook injects, through the real API server: the semantic-convention
opt-in the stack's rules and dashboards expect, and the resource's price table in the form the
agent SDK reads."""

from __future__ import annotations

import json
from typing import Any

from agentobs.kube import Kube
from agentobs_sdk import pricing, semconv

from conftest import Operator, make_resource, wait_ready

PRICES = {"gpt-4o": {"input": 2.5, "output": 10, "cacheRead": 1.25}}


def test_opt_in_and_prices_reach_the_pod(kube: Kube, operator: Operator, namespace: str) -> None:
    kube.apply(make_resource("obs", namespace, {"instrumentation": {"modelPrices": PRICES}}))
    wait_ready(kube, namespace, "obs")
    pod = kube.apply({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": "agent", "namespace": namespace, "labels": {"agentobs.io/agent": "true"}},
                      "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}})
    env: dict[str, Any] = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert semconv.parse_mode(env["OTEL_SEMCONV_STABILITY_OPT_IN"]) is semconv.PROJECT_DEFAULT_MODE
    table = pricing.parse(json.loads(env["AGENTOBS_PRICES"]))
    assert table == {"gpt-4o": pricing.Price(2.5, 10.0, 1.25)}
