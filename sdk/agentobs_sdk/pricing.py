"""Cost of model calls from a user-supplied price table.

The table maps a model name to US dollars per million tokens::

    {"gpt-4o": {"input": 2.5, "output": 10, "cache_read": 1.25},
     "claude-sonnet-4": {"input": 3, "output": 15}}

It comes from AGENTOBS_PRICES (the JSON itself; the webhook fills it from the resource's
`spec.instrumentation.modelPrices`) or AGENTOBS_PRICES_FILE (a JSON file, e.g. a mounted
ConfigMap); the inline table wins. A model is looked up by exact name, else by the longest table
key it starts with (so `gpt-4o` prices `gpt-4o-2024-08-06`). Cached input tokens are priced at
`cache_read` when given, else at `input`. A bad table is logged and ignored: prices never stop
the agent. Costs feed `agentobs_agent_cost_usd_total`, which the dashboards and the cost-burn
alert use.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger("agentobs_sdk")

ENV_PRICES = "AGENTOBS_PRICES"
ENV_PRICES_FILE = "AGENTOBS_PRICES_FILE"
_PER = 1_000_000


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cache_read: float | None = None


PriceTable = Mapping[str, Price]


def _number(model: str, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"prices[{model!r}].{key} must be a non-negative number, got {value!r}")
    return float(value)


def parse(data: object) -> dict[str, Price]:
    """Validate a decoded table; raises ValueError naming the bad entry."""
    if not isinstance(data, dict):
        raise ValueError("the price table must be a JSON object of model -> {input, output}")
    table: dict[str, Price] = {}
    for model, entry in data.items():
        if not isinstance(entry, dict):
            raise ValueError(f"prices[{model!r}] must be an object with input and output")
        unknown = set(entry) - {"input", "output", "cache_read"}
        if unknown:
            raise ValueError(f"prices[{model!r}] has unknown keys {sorted(unknown)} (input, output, cache_read)")
        for key in ("input", "output"):
            if key not in entry:
                raise ValueError(f"prices[{model!r}].{key} is missing")
        cache = entry.get("cache_read")
        table[str(model)] = Price(_number(model, "input", entry["input"]), _number(model, "output", entry["output"]),
                                  None if cache is None else _number(model, "cache_read", cache))
    return table


def from_env(env: Mapping[str, str]) -> dict[str, Price]:
    """The configured table, or an empty one (logged) when unset or invalid."""
    inline = (env.get(ENV_PRICES) or "").strip()
    path = (env.get(ENV_PRICES_FILE) or "").strip()
    source, text = "", ""
    try:
        if inline:
            source, text = ENV_PRICES, inline
        elif path:
            source = f"{ENV_PRICES_FILE}={path}"
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        else:
            return {}
        return parse(json.loads(text))
    except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        log.error("agentobs: ignoring the price table from %s: %s", source, exc)
        return {}


def lookup(table: PriceTable, model: str | None) -> Price | None:
    if not model or not table:
        return None
    if model in table:
        return table[model]
    prefixes = [key for key in table if model.startswith(key)]
    return table[max(prefixes, key=len)] if prefixes else None


def cost_usd(table: PriceTable, model: str | None, input_tokens: int | None, output_tokens: int | None,
             cache_read_tokens: int | None = None) -> float | None:
    """Dollars for one call, or None when the model has no price or no tokens were reported."""
    price = lookup(table, model)
    if price is None or (input_tokens is None and output_tokens is None):
        return None
    cached = min(cache_read_tokens or 0, input_tokens or 0)
    uncached = (input_tokens or 0) - cached
    cache_price = price.cache_read if price.cache_read is not None else price.input
    return (uncached * price.input + cached * cache_price + (output_tokens or 0) * price.output) / _PER
