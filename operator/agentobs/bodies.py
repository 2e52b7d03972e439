"""The resources' bodies as the operator keeps them between passes."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, MutableMapping
from typing import Any

Key = tuple[str, str]


class Bodies(MutableMapping[Key, dict[str, Any]]):
    """The slim bodies of the resources, each kept as deflated JSON and parsed again when read.
    Parsed, a stack's spec (every default filled in by the CRD) and status take about 30 KiB, the
    largest thing the operator kept per stack; deflated, about 1.5 KiB. A pass reads its body once,
    for far less than the pass costs. Each read is a fresh copy the caller may change."""

    def __init__(self) -> None:
        self._packed: dict[Key, bytes] = {}

    def __getitem__(self, key: Key) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(zlib.decompress(self._packed[key]))
        return parsed

    def __setitem__(self, key: Key, body: dict[str, Any]) -> None:
        self._packed[key] = zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 6)

    def __delitem__(self, key: Key) -> None:
        del self._packed[key]

    def __contains__(self, key: object) -> bool:  # without parsing, as Mapping's would
        return key in self._packed

    def __iter__(self) -> Iterator[Key]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)
