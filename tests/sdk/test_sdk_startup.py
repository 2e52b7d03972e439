"""What configure() costs at start-up: it must not import the LLM client libraries itself.

Each check runs in a fresh interpreter, since the test session has openai and anthropic imported."""

from __future__ import annotations

import json
import subprocess
import sys

_LATE_IMPORT = """
import json, sys
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import agentobs_sdk as aobs

spans = InMemorySpanExporter()
handle = aobs.configure({}, json_logs=False, span_processors=[SimpleSpanProcessor(spans)])
imported_by_configure = sorted(m for m in ("openai", "anthropic") if m in sys.modules)
now = handle.instrumented_clients

import openai  # the application's first import, after configure()

client = openai.OpenAI(api_key="test", base_url="http://127.0.0.1:9/v1", max_retries=0)
try:
    client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
except openai.APIConnectionError:
    pass
traced = [(s.name, (s.attributes or {}).get("error.type")) for s in spans.get_finished_spans()]
after = handle.instrumented_clients
handle.shutdown()
import anthropic  # after shutdown(): left alone
print(json.dumps({
    "imported_by_configure": imported_by_configure, "now": now, "after": after,
    "traced": traced, "loader_restored": type(openai.__loader__).__name__,
    "anthropic_wrapped": hasattr(anthropic.resources.messages.Messages.create, "__agentobs_original__"),
    "hooks_left": [type(f).__name__ for f in sys.meta_path if type(f).__module__.startswith("agentobs_sdk")],
}))
"""


def test_configure_imports_no_client_and_instruments_one_imported_later() -> None:
    """configure() used to import openai and anthropic to wrap them: 1.5-2 s (more on a cold
    cache) before the agent's first line, also for agents that never use them. Now a library the
    application has not imported is instrumented on its first import, and its calls are traced."""
    result = subprocess.run([sys.executable, "-c", _LATE_IMPORT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["imported_by_configure"] == [], report
    assert report["now"] == [], report
    assert report["after"] == ["openai"], report
    assert ["chat gpt-test", "APIConnectionError"] in report["traced"], report
    assert report["loader_restored"] == "SourceFileLoader", report
    assert report["anthropic_wrapped"] is False, report
    assert report["hooks_left"] == [], report
