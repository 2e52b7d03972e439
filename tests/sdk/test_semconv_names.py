"""The names the SDK emits match the GenAI semantic conventions vendored at a pinned version
(tests/sdk/semconv/genai.yaml), in each OTEL_SEMCONV_STABILITY_OPT_IN mode: the v1.41.0 names
without it, the GenAI repository's latest with `gen_ai_latest_experimental`, both with `/dup`.

Nothing here lists convention names by hand: every expectation is read from the vendored file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentobs_sdk
from agentobs_sdk import semconv, series
from agentobs_sdk.semconv import Mode

VENDORED = Path(__file__).parent / "semconv" / "genai.yaml"
CONVENTIONS: dict[str, Any] = yaml.safe_load(VENDORED.read_text())
OLD, LATEST = CONVENTIONS["v1.41.0"], CONVENTIONS["latest"]
OPT_IN = {Mode.OLD: None, Mode.LATEST: semconv.OPT_IN_LATEST, Mode.DUP: semconv.OPT_IN_DUP}
# Attribute namespaces the conventions own; anything else on a span is the project's own (agentobs.*).
CONVENTION_KEY = re.compile(r"^(gen_ai|server|error)\.")


def generations(mode: Mode) -> list[dict[str, Any]]:
    return [g for g, on in ((OLD, mode.old), (LATEST, mode.latest)) if on]


def prometheus_name(otel_name: str, unit: str, instrument: str) -> str:
    """The OpenTelemetry-to-Prometheus translation the SDK's families follow."""
    name = otel_name.replace(".", "_") + ("_seconds" if unit == "s" else "")
    return name


def label_to_key(label: str, keys: list[str]) -> str | None:
    return next((k for k in keys if k.replace(".", "_") == label), None)


@pytest.fixture(params=list(Mode), ids=[m.value for m in Mode])
def run(request: pytest.FixtureRequest) -> Iterator[tuple[Mode, agentobs_sdk.Handle, list[ReadableSpan]]]:
    mode: Mode = request.param
    env = {"OTEL_SERVICE_NAME": "names", "AGENTOBS_AGENT_ID": "names-0", "AGENTOBS_INSTRUMENT_CLIENTS": "false"}
    if OPT_IN[mode]:
        env[semconv.ENV_OPT_IN] = f"http,{OPT_IN[mode]}"  # other categories in the list are ignored
    exporter = InMemorySpanExporter()
    handle = agentobs_sdk.configure(env, json_logs=False, span_processors=[SimpleSpanProcessor(exporter)])
    assert handle.metrics.mode is mode
    with agentobs_sdk.agent_run("planner"):
        with agentobs_sdk.llm_call("gpt-4o", provider="openai") as call:
            call.set_server("api.openai.example", 443)
            call.first_chunk()
            call.record_usage(100, 20, response_model="gpt-4o-2024-08-06", cache_read_tokens=40,
                              cache_write_tokens=10, reasoning_tokens=5)
            call.set_finish_reasons(["stop"])
        with agentobs_sdk.llm_call("text-embedding-3-small", provider="openai", operation="embeddings") as emb:
            emb.record_usage(8)
        with pytest.raises(TimeoutError), agentobs_sdk.llm_call("gpt-4o", provider="openai"):
            raise TimeoutError("provider timed out")
        with agentobs_sdk.tool_call("search", call_id="c1"):
            pass
        with pytest.raises(KeyError), agentobs_sdk.tool_call("lookup"):
            raise KeyError("k")
    yield mode, handle, list(exporter.get_finished_spans())
    handle.shutdown()


def exposed_families(handle: agentobs_sdk.Handle) -> dict[str, set[str]]:
    """Family name -> label names, from the text exposition a scrape gets."""
    families: dict[str, set[str]] = {}
    for line in handle.metrics.exposition().decode().splitlines():
        if line.startswith("#") or not line:
            continue
        name, _, rest = line.partition("{")
        base = re.sub(r"_(bucket|sum|count|total|created)$", "", name.split(" ")[0])
        labels = set(re.findall(r'([a-zA-Z_]+)="', rest)) - {"le"}
        families.setdefault(base, set()).update(labels)
    return families


def test_emitted_metrics_are_the_conventions_of_the_mode(run: tuple[Mode, agentobs_sdk.Handle, Any]) -> None:
    mode, handle, _ = run
    allowed = {name: d for g in generations(mode) for name, d in g["metrics"].items()}
    exposed = exposed_families(handle)
    emitted_otel: set[str] = set()
    for spec in series.series_for(mode):
        if spec.otel_name is None:
            assert spec.name.startswith("agentobs_agent_"), f"{spec.name}: a GenAI-looking name outside the conventions"
            continue
        definition = allowed.get(spec.otel_name)
        assert definition is not None, f"{spec.otel_name} is not a metric of the conventions in mode {mode.value}"
        assert spec.kind == definition["instrument"], spec.otel_name
        assert spec.unit == definition["unit"], spec.otel_name
        assert spec.name == prometheus_name(spec.otel_name, definition["unit"], definition["instrument"])
        assert spec.name in exposed, f"{spec.name} was not exposed after exercising every helper"
        for label in exposed[spec.name]:
            assert label_to_key(label, definition["attributes"]) is not None, \
                f"{spec.name} label {label} is no attribute of {spec.otel_name}"
        emitted_otel.add(spec.otel_name)
    # The mode's own metrics for model calls, agents and tools are all there, and no other generation's.
    wanted = {name for g in generations(mode) for name in g["metrics"]
              if name.startswith(("gen_ai.client.", "gen_ai.invoke_agent.", "gen_ai.execute_tool."))
              and "time_per_output_chunk" not in name}
    assert emitted_otel == wanted
    other = {name for g in (OLD, LATEST) if g not in generations(mode) for name in g["metrics"]}
    for name in other - emitted_otel:
        assert name.replace(".", "_") not in {f.removesuffix("_seconds") for f in exposed}, name


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return {k: v for k, v in (span.attributes or {}).items() if CONVENTION_KEY.match(k)}


def test_inference_span_attributes_are_the_conventions_of_the_mode(
        run: tuple[Mode, agentobs_sdk.Handle, list[ReadableSpan]]) -> None:
    mode, _, spans = run
    chat = next(s for s in spans if s.name == "chat gpt-4o" and s.status.is_ok)
    keys = set(_attrs(chat))
    allowed = set()
    if mode.old:
        allowed |= set(OLD["spans"]["gen_ai.inference.client"]["attributes"])
    if mode.latest:
        allowed |= set(LATEST["spans"]["gen_ai.client.inference"]["attributes"])
    assert keys <= allowed, keys - allowed
    removed = set(LATEST["removed"]["gen_ai.client.inference"]["attributes"])
    if mode is Mode.LATEST:
        assert not keys & removed, "a name the latest conventions renamed"
    # the cache-write count is there under the mode's name(s), cache-read and reasoning in all modes
    cache_write = {k for k in keys if "cache_" in k and "read" not in k}
    expected = set()
    if mode.old:
        expected |= removed & set(OLD["spans"]["gen_ai.inference.client"]["attributes"])
    if mode.latest:
        expected |= {k for k in LATEST["spans"]["gen_ai.client.inference"]["attributes"]
                     if k.startswith("gen_ai.usage.cache_") and "write" in k}
    assert cache_write == expected


def test_agent_and_tool_spans_follow_the_mode(run: tuple[Mode, agentobs_sdk.Handle, list[ReadableSpan]]) -> None:
    mode, _, spans = run
    agent = next(s for s in spans if s.name == "invoke_agent planner")
    keys = set(_attrs(agent))
    if mode.old:
        assert keys <= set(OLD["spans"]["gen_ai.invoke_agent.internal"]["attributes"])
    if mode is Mode.LATEST:
        assert not keys & set(LATEST["removed"]["gen_ai.invoke_agent.internal"]["attributes"]), keys
    tool = next(s for s in spans if s.name == "execute_tool search")
    assert set(_attrs(tool)) <= set(OLD["spans"]["gen_ai.execute_tool.internal"]["attributes"])


def test_the_vendored_file_names_its_sources() -> None:
    text = VENDORED.read_text()
    assert "SPDX-License-Identifier: Apache-2.0" in text
    assert "v1.41.0" in OLD["source"] and "semantic-conventions-genai" in LATEST["source"]
    for generation in (OLD, LATEST):
        for name, definition in generation["metrics"].items():
            assert re.search(r"@(v1\.41\.0|[0-9a-f]{40})$", definition["source"]), name
    assert semconv.LATEST_SOURCE.split("@")[1] in text


@pytest.mark.parametrize(("value", "mode"), [
    (None, Mode.OLD), ("", Mode.OLD), ("http", Mode.OLD), ("gen_ai_latest_experimental", Mode.LATEST),
    ("http/dup, gen_ai_latest_experimental", Mode.LATEST), ("GEN_AI_LATEST_EXPERIMENTAL/DUP", Mode.DUP),
    ("gen_ai_latest_experimental,gen_ai_latest_experimental/dup", Mode.DUP), ("gen_ai", Mode.OLD),
])
def test_opt_in_values(value: str | None, mode: Mode) -> None:
    assert semconv.parse_mode(value) is mode


def test_the_instance_id_is_no_agent_id_in_the_latest_names(run: tuple[Mode, agentobs_sdk.Handle, Any]) -> None:
    mode, _, spans = run
    resource = dict(spans[0].resource.attributes)
    if mode is Mode.LATEST:
        assert "gen_ai.agent.id" not in resource and resource["service.instance.id"] == "names-0"
    else:
        assert resource["gen_ai.agent.id"] == "names-0"
