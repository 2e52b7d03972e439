"""The Python blocks of sdk/README.md run as written: each block is executed in a fresh
interpreter (configure() is process-wide and registers an atexit hook), with only the
placeholders the README says stand for the user's own code defined around it (`client`,
`search`, `query`, `fetch`, `urls`). A renamed helper or argument then fails here, not for the
first user who pastes the quickstart."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

README = (Path(__file__).resolve().parents[2] / "sdk" / "README.md").read_text()

# The user's own code the README's blocks call; defined before a block runs.
PLACEHOLDERS = '''
from types import SimpleNamespace as _NS

class _Client:
    def chat(self, *args, **kwargs):
        return "reply"
    def stream(self, prompt):
        yield _NS(text="a", usage=None)
        yield _NS(text="b", usage=_NS(input_tokens=5, output_tokens=7))

class _AsyncClient:
    async def stream(self, prompt):
        for event in ("x", "y"):
            yield event

client = _Client()
search = lambda q: [q]
query = "q"
urls = ["a", "b"]
fetch = str.upper
'''


def _python_blocks() -> list[str]:
    return [textwrap.dedent(b) for b in re.findall(r"^ *```python\n(.*?)^ *```", README, re.S | re.M)]


def _run(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AGENTOBS_"))}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=environ, check=False)


def _block(marker: str) -> str:
    (block,) = [b for b in _python_blocks() if marker in b]
    return block


def test_the_readme_has_the_blocks_this_file_runs() -> None:
    assert len(_python_blocks()) == 4, "a Python block was added to sdk/README.md: run it here too"


def test_the_quickstart_runs_and_logs_the_two_warnings_it_promises() -> None:
    out = _run(PLACEHOLDERS + _block("handle = aobs.configure()"),
               {"AGENTOBS_INSTRUMENT_CLIENTS": "false"})
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if '"WARNING"' in line]
    assert len(warnings) == 2, out.stderr
    assert "spans are not exported" in warnings[0] and "metrics not served" in warnings[0]
    assert "no audit trail" in warnings[0] or "audit trail off" in warnings[0]
    assert "audit requested for tool_call" in warnings[1]


def test_the_console_exporter_block_prints_the_quickstart_spans() -> None:
    quickstart = _block("handle = aobs.configure()")
    console = _block("ConsoleSpanExporter")
    code = PLACEHOLDERS + "import agentobs_sdk as aobs\n" + console + quickstart.replace(
        "handle = aobs.configure()", "pass")
    out = _run(code, {"AGENTOBS_INSTRUMENT_CLIENTS": "false"})
    assert out.returncode == 0, out.stderr
    for name in ("invoke_agent researcher", "chat gpt-4o", "execute_tool search", "decision route"):
        assert f'"name": "{name}"' in out.stdout, name


def test_the_streaming_block_records_the_usage_read_from_the_stream() -> None:
    code = PLACEHOLDERS + textwrap.dedent('''
        import asyncio
        import agentobs_sdk as aobs
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        spans = InMemorySpanExporter()
        handle = aobs.configure(span_processors=[SimpleSpanProcessor(spans)])
        ''') + _block("def stream_reply(prompt)").replace(
        "async for event in client.stream", "async for event in _AsyncClient().stream") + textwrap.dedent('''
        assert list(stream_reply("p")) == ["a", "b"]
        async def main():
            return [event async for event in astream("p")]
        assert asyncio.run(main()) == ["x", "y"]
        handle.shutdown()
        (reply,) = [s for s in spans.get_finished_spans() if s.attributes["gen_ai.request.model"] == "gpt-4o"]
        assert reply.attributes["gen_ai.usage.input_tokens"] == 5, dict(reply.attributes)
        assert reply.attributes["gen_ai.usage.output_tokens"] == 7
        assert [s.name for s in spans.get_finished_spans()] == ["chat gpt-4o", "chat claude"]
        ''')
    out = _run(code, {"AGENTOBS_INSTRUMENT_CLIENTS": "false"})
    assert out.returncode == 0, out.stderr


def test_the_thread_pool_block_keeps_the_work_in_the_agents_trace() -> None:
    code = PLACEHOLDERS + textwrap.dedent('''
        import agentobs_sdk as aobs
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        spans = InMemorySpanExporter()
        handle = aobs.configure(span_processors=[SimpleSpanProcessor(spans)])
        _fetch = fetch
        def fetch(url):
            with aobs.tool_call("fetch"):
                return _fetch(url)
        ''') + _block("ThreadPoolExecutor(8)") + textwrap.dedent('''
        assert pages == ["A", "B"] and [f.result() for f in futures] == ["A", "B"]
        handle.shutdown()
        runs = {s.context.trace_id for s in spans.get_finished_spans() if s.name.startswith("invoke_agent")}
        tools = [s for s in spans.get_finished_spans() if s.name == "execute_tool fetch"]
        assert len(runs) == 2 and len(tools) == 6
        assert {s.context.trace_id for s in tools} == runs
        ''')
    out = _run(code, {"AGENTOBS_INSTRUMENT_CLIENTS": "false"})
    assert out.returncode == 0, out.stderr
