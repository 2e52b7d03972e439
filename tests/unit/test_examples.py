"""The examples are valid specs, and the README's figures of what they request are the render's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from agentobs.api.spec import AgentObservabilitySpec, parse_quantity
from agentobs.render import Owner, make_stack

from placeholders import placeholder_material

ROOT = Path(__file__).resolve().parents[2]
# Pods of a DaemonSet are counted on this many nodes. The stack renders none (Fluentd is a
# StatefulSet; the node log collector is the operator's, shared, and not in make_stack), so the
# figures do not depend on it.
NODES = 3


def requests(spec: dict[str, object]) -> tuple[float, float]:
    """(CPU cores, GiB) the stack's workloads request, replicas and DaemonSet pods counted."""
    owner = Owner(name="x", namespace="y", uid="u", spec=AgentObservabilitySpec.model_validate(spec))
    cpu = memory = 0.0
    for obj in make_stack(owner, placeholder_material(owner)):
        if obj["kind"] not in ("StatefulSet", "Deployment", "DaemonSet"):
            continue
        count = NODES if obj["kind"] == "DaemonSet" else obj["spec"]["replicas"]
        for container in obj["spec"]["template"]["spec"]["containers"]:
            asked = container["resources"]["requests"]
            cpu += count * parse_quantity(asked["cpu"])
            memory += count * parse_quantity(asked["memory"])
    return cpu, memory / 2**30


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert doc["kind"] == "AgentObservability"
    AgentObservabilitySpec.model_validate(doc.get("spec") or {})


@pytest.mark.parametrize(("example", "cpu_text", "memory_text"), [
    ("minimal.yaml", "2.95 CPU", "8.6 GiB"), ("small.yaml", "1.18 CPU", "4.0 GiB")])
def test_readme_states_what_the_examples_request(example: str, cpu_text: str, memory_text: str) -> None:
    spec = yaml.safe_load((ROOT / "examples" / example).read_text()).get("spec") or {}
    cpu, memory = requests(spec)
    assert f"{cpu:.2f} CPU" == cpu_text and f"{memory:.1f} GiB" == memory_text, (cpu, memory)
    readme = re.sub(r"\s+", " ", (ROOT / "README.md").read_text())
    assert f"`examples/{example}`" in readme and f"{cpu_text} and {memory_text}" in readme
