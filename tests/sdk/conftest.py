"""Fixtures for the agent SDK tests: SDK state reset, in-memory spans, and the real programs the
SDK talks to (Jaeger v2 as the OTLP receiver, Prometheus as the scraper).

Server fixtures bind loopback only, on free ports, wait a bounded time for readiness and always
stop the process they started.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentobs_sdk
from agentobs_sdk import config

from sdk_servers import (
    JAEGER_CONFIG,
    STARTUP_TIMEOUT_S,
    Jaeger,
    TLSFiles,
    explicit_binary,
    free_port,
    http_ok,
    jaeger_binary,
    make_tls,
    port_open,
    stop,
    wait_until,
)


@pytest.fixture(autouse=True)
def _reset_sdk() -> Iterator[None]:
    """Every test starts and ends without a configured SDK."""
    handle = config.current_handle()
    if handle is not None:
        handle.shutdown()
    yield
    handle = config.current_handle()
    if handle is not None:
        handle.shutdown()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def sdk(spans: InMemorySpanExporter) -> Iterator[agentobs_sdk.Handle]:
    """A configured SDK with nothing injected except an agent id, spans kept in memory."""
    handle = agentobs_sdk.configure(
        {"OTEL_SERVICE_NAME": "test-agent", "AGENTOBS_AGENT_ID": "agent-7"},
        json_logs=False,
        span_processors=[SimpleSpanProcessor(spans)],
    )
    yield handle
    handle.shutdown()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory: pytest.TempPathFactory, tls: TLSFiles) -> Iterator[Jaeger]:
    binary = jaeger_binary()
    workdir = tmp_path_factory.mktemp("jaeger")
    ports = {name: free_port() for name in ("otlp_grpc", "otlp_http", "query_http", "query_grpc")}
    cfg = workdir / "config.yaml"
    cfg.write_text(JAEGER_CONFIG.format(cert=tls.cert, key=tls.key, **ports))
    log = workdir / "jaeger.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "--config", f"file:{cfg}"], stdout=out, stderr=subprocess.STDOUT,
                                cwd=workdir)
    try:
        query_url = f"http://127.0.0.1:{ports['query_http']}"
        wait_until(lambda: http_ok(f"{query_url}/api/services") and port_open(ports["otlp_grpc"])
                   and port_open(ports["otlp_http"]), STARTUP_TIMEOUT_S, "jaeger", proc, log)
        yield Jaeger(f"https://127.0.0.1:{ports['otlp_grpc']}", f"https://127.0.0.1:{ports['otlp_http']}",
                     query_url, tls.ca)
    finally:
        stop(proc)


# --- Prometheus ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    found = explicit_binary("AGENTOBS_PROMETHEUS") or shutil.which("prometheus")
    if found is None:
        pytest.skip("needs prometheus: run make tools (Debian package `prometheus`) or set AGENTOBS_PROMETHEUS")
    return found
