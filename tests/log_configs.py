"""Reading the rendered Fluent Bit and Fluentd configurations back, and checking every parameter
they use against the parameter names of the pinned releases.

The names are in `tests/data/log_plugin_parameters.json`, taken from the pinned sources (each
entry names its repository, tag, commit and files): Fluent Bit v4.2.8 (the config maps of the
plugins used and the property names its core handles by name) and, for the aggregator image
fluent/fluentd-kubernetes-daemonset:v1.19.3-debian-elasticsearch8-1.1, fluentd 1.19.3,
fluent-plugin-elasticsearch 5.4.4 and fluent-plugin-prometheus 2.2.2 (`config_param` and
`config_set_default` names, and the keys fluent-plugin-prometheus reads from `<metric>`). A name
outside those lists is one the pinned program would reject (Fluent Bit) or warn about and ignore
(Fluentd), which is what these checks are for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PARAMETERS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent / "data" / "log_plugin_parameters.json").read_text())


# --- Fluent Bit (classic format) ---------------------------------------------------------------------

def fluent_bit_sections(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(SECTION, [(key, value), ...]), ...] of a classic-format file."""
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append((line[1:-1].upper(), []))
            continue
        key, _, value = line.partition(" ")
        assert sections, f"a parameter before any section: {line!r}"
        sections[-1][1].append((key, value.strip()))
    return sections


def fluent_bit_key(section: str, params: list[tuple[str, str]]) -> str:
    if section == "SERVICE":
        return "service"
    name = next(v for k, v in params if k.lower() == "name")
    return f"{section.lower()}:{name}"


def unknown_fluent_bit_parameters(text: str) -> list[str]:
    known = PARAMETERS["fluent-bit"]["sections"]
    out = []
    for section, params in fluent_bit_sections(text):
        key = fluent_bit_key(section, params)
        allowed = set(known[key]["parameters"]) if key in known else set()
        out += [f"{key}: {k}" for k, _ in params if k.lower() not in allowed]
    return out


# --- Fluentd -----------------------------------------------------------------------------------------

@dataclass
class Directive:
    name: str
    arg: str = ""
    params: list[tuple[str, str]] = field(default_factory=list)
    children: list[Directive] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.params if k == key), None)

    def walk(self) -> list[Directive]:
        return [self, *(d for c in self.children for d in c.walk())]


def fluentd_directives(text: str) -> Directive:
    root = Directive("ROOT")
    stack = [root]
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("</"):
            closed = stack.pop()
            assert line == f"</{closed.name}>", f"{line!r} closes <{closed.name}>"
            continue
        if line.startswith("<") and line.endswith(">"):
            name, _, arg = line[1:-1].partition(" ")
            child = Directive(name, arg.strip())
            stack[-1].children.append(child)
            stack.append(child)
            continue
        key, _, value = line.partition(" ")
        stack[-1].params.append((key, value.strip()))
    assert stack == [root], "unclosed directives"
    return root


def _context(directive: Directive, parent: str) -> str | None:
    """The parameter list a directive is checked against; None for pure containers."""
    kind = directive.get("@type")
    if directive.name in ("system",):
        return "system"
    if directive.name in ("source", "filter", "match", "store"):
        return f"{'match' if directive.name == 'store' else directive.name}:{kind}"
    if directive.name in ("buffer", "parse", "format"):
        return f"{directive.name}:{kind}"
    if directive.name in ("transport", "regexp", "exclude", "metric"):
        return parent  # sections of the enclosing plugin, listed with it
    return None  # ROOT, label, record, labels


def unknown_fluentd_parameters(text: str) -> list[str]:
    known = PARAMETERS["fluentd"]["sections"]
    reserved = set(known["plugin"]["parameters"])
    out: list[str] = []

    def check(directive: Directive, parent: str) -> None:
        context = _context(directive, parent)
        if context is not None:
            allowed = set(known[context]["parameters"]) if context in known else set()
            out.extend(f"{context}: {k}" for k, _ in directive.params if k not in allowed | reserved)
        for child in directive.children:
            check(child, context or parent)

    check(fluentd_directives(text), "")
    return out
