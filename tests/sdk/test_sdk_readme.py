"""sdk/README.md names what the code reads and accepts: every variable, every CLI flag, and the
helpers' keyword arguments, so the guide a new user follows cannot drift from the code."""

from __future__ import annotations

import argparse
import inspect
import re
import types
from pathlib import Path

import pytest

import agentobs_sdk
from agentobs_sdk import cli, config, options

README = (Path(__file__).resolve().parents[2] / "sdk" / "README.md").read_text()


@pytest.mark.parametrize("name", [*config.ENV_VARS, *options.ENV_VARS])
def test_every_variable_is_in_the_readme(name: str) -> None:
    assert f"`{name}`" in README


def _flags() -> set[str]:
    known: set[str] = set()
    for action in cli._parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                known |= {flag for a in sub._actions for flag in a.option_strings}
    return known


def test_every_cli_flag_the_readme_shows_exists() -> None:
    shown = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", README))
    assert shown, "the README shows agentobs-audit flags"
    assert shown <= _flags()


@pytest.mark.parametrize("helper", ["agent_run", "llm_call", "tool_call", "reasoning_step", "decision"])
def test_the_helper_table_lists_every_keyword(helper: str) -> None:
    row = next(line for line in README.splitlines() if line.startswith(f"| `{helper}("))
    params = inspect.signature(getattr(agentobs_sdk, helper)).parameters
    for name, param in params.items():
        if name == "attributes":  # one sentence under the table covers every helper
            assert "`attributes=`" in README
            continue
        assert re.search(rf"\b{name}\b", row), (helper, name)
        if param.default not in (inspect.Parameter.empty, None, ()):
            assert f"{name}={param.default!r}".replace("'", '"') in row, (helper, name, param.default)


def test_the_readme_says_what_exposition_returns(sdk: agentobs_sdk.Handle) -> None:
    said = " ".join(README.split())  # the sentence may wrap
    assert isinstance(sdk.metrics.exposition(), bytes)
    assert "`handle.metrics.exposition()` returns the same exposition in-process, as bytes" in said


def test_every_exported_name_is_in_the_public_api_section() -> None:
    """Half the names in `agentobs_sdk.__all__` (Handle, current_handle, current_operation,
    AuditTrail, the series contract...) appeared nowhere in the README a user reads."""
    section = README.split("## Public API", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in agentobs_sdk.__all__ if f"`{name}" not in section]
    assert not missing, missing


def test_what_the_package_exports_is_exactly_its_public_api() -> None:
    """`aobs.current_agent`, `aobs.warn_no_trail`, `aobs.install_record_factory` and
    `aobs.AuditFields` were importable from the package (so tab completion offered them) but
    neither in `__all__` nor documented: an SDK name is either public or underscored."""
    leaked = [name for name in dir(agentobs_sdk)
              if not name.startswith("_") and name not in agentobs_sdk.__all__
              and not isinstance(getattr(agentobs_sdk, name), types.ModuleType)
              and getattr(getattr(agentobs_sdk, name), "__module__", "").startswith("agentobs_sdk")]
    assert not leaked, leaked
