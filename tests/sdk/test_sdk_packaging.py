"""What `pip install ./sdk` gives a user, read from sdk/pyproject.toml without building (a build
needs setuptools >= 77 from the network): the dependency floors the SDK's promises rely on, the
`agentobs-audit` entry point, and the `py.typed` marker the Public API section promises."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

SDK = Path(__file__).resolve().parents[2] / "sdk"
PROJECT = tomllib.loads((SDK / "pyproject.toml").read_text())["project"]


def _floor(requirement: str) -> tuple[int, ...]:
    match = re.search(r">=\s*([0-9.]+)", requirement)
    assert match, f"{requirement!r} has no lower bound"
    return tuple(int(part) for part in match.group(1).split("."))


def test_the_otlp_exporters_are_recent_enough_to_bound_shutdown() -> None:
    # Before 1.35 the gRPC exporter's timeout applied to each attempt, not to its retries: with no
    # receiver listening, shutdown() took 63 s (measured with 1.27 and 1.34), not the README's 10 s.
    otel = [r for r in PROJECT["dependencies"] if r.startswith("opentelemetry-")]
    assert len(otel) == 3, otel
    for requirement in otel:
        assert _floor(requirement) >= (1, 35), requirement


def test_the_openai_extra_installs_a_client_that_works_with_current_httpx() -> None:
    # openai 1.40 to 1.55.2 pass `proxies` to httpx.Client, which httpx 0.28 removed: with what pip
    # resolves today, `OpenAI()` raised TypeError (seen with 1.40 and 1.55.2; 1.55.3 works).
    (openai,) = PROJECT["optional-dependencies"]["openai"]
    assert _floor(openai) >= (1, 55, 3), openai


def test_the_audit_command_is_installed_and_resolves() -> None:
    module, _, name = PROJECT["scripts"]["agentobs-audit"].partition(":")
    assert callable(getattr(importlib.import_module(module), name))


def test_the_type_marker_is_shipped() -> None:
    setuptools = tomllib.loads((SDK / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py.typed" in setuptools["package-data"]["agentobs_sdk"]
    assert (SDK / "agentobs_sdk" / "py.typed").is_file()
