"""`spec.instrumentation.modelPrices`: validated by the model and the generated CRD, injected as
AGENTOBS_PRICES in the form the agent SDK's price table reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pydantic
import pytest
import yaml

from agentobs.admission.injection import inject, make_config
from agentobs.api.spec import AgentObservabilitySpec
from agentobs.render.common import Owner
from agentobs_sdk import pricing

CRD = Path(__file__).resolve().parents[2] / "crds" / "agentobs.io_agentobservabilities.yaml"
PRICES = {"gpt-4o": {"input": 2.5, "output": 10, "cacheRead": 1.25}, "claude-sonnet-4": {"input": 3, "output": 15}}


def _env(**instrumentation: Any) -> dict[str, Any]:
    spec = AgentObservabilitySpec.model_validate({"instrumentation": instrumentation})
    config = make_config(Owner(name="obs", namespace="agents", uid="u", spec=spec))
    assert config is not None
    pod = inject({"metadata": {"name": "p", "namespace": "agents", "labels": {"agentobs.io/agent": "true"}},
                  "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}}, config)
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}


def test_prices_reach_the_sdk_in_its_format() -> None:
    env = _env(modelPrices=PRICES)
    table = pricing.parse(json.loads(env["AGENTOBS_PRICES"]))
    assert table == {"gpt-4o": pricing.Price(2.5, 10.0, 1.25), "claude-sonnet-4": pricing.Price(3.0, 15.0)}
    assert pricing.cost_usd(table, "gpt-4o-2024-08-06", 1_000_000, 0) == pytest.approx(2.5)


def test_no_prices_no_variable() -> None:
    assert "AGENTOBS_PRICES" not in _env()


def test_a_changed_table_changes_the_injection_digest() -> None:
    def digest(prices: dict[str, Any]) -> str:
        spec = AgentObservabilitySpec.model_validate({"instrumentation": {"modelPrices": prices}})
        config = make_config(Owner(name="obs", namespace="agents", uid="u", spec=spec))
        assert config is not None
        return config.digest

    assert digest(PRICES) != digest({**PRICES, "gpt-4o": {"input": 5, "output": 20}})


@pytest.mark.parametrize("price", [{"input": -1, "output": 1}, {"input": 1}, {"input": 1, "output": 1, "outptu": 2}])
def test_the_model_refuses_a_bad_price(price: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError, match=r"modelPrices|model_prices"):
        AgentObservabilitySpec.model_validate({"instrumentation": {"modelPrices": {"gpt-4o": price}}})


def _schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def test_the_generated_crd_refuses_a_negative_price() -> None:
    schema = _schema()
    jsonschema.validate({"instrumentation": {"modelPrices": PRICES}}, schema)
    with pytest.raises(jsonschema.ValidationError, match="minimum"):
        jsonschema.validate({"instrumentation": {"modelPrices": {"gpt-4o": {"input": -1, "output": 1}}}}, schema)
    described = schema["properties"]["instrumentation"]["properties"]["modelPrices"]["description"]
    assert "AGENTOBS_PRICES" in described
