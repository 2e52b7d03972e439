"""Auto-instrumentation of the official LLM client libraries (`openai`, `anthropic`).

`configure()` calls `instrument_installed()` unless AGENTOBS_INSTRUMENT_CLIENTS=false: for each
client library that can be imported it wraps the resource methods that call a model (chat
completions and embeddings for openai, messages for anthropic; sync and async; streamed or not),
so every call becomes an `llm_call` span with the GenAI attributes, metrics, cost and, when
content capture is on, its messages. `Handle.shutdown()` restores the original methods. Nothing
here imports a client library that is not installed: the SDK stays light, and `pip install
agentobs-sdk[openai]` / `[anthropic]` pulls the clients in.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging

from ._common import unwrap_all

log = logging.getLogger("agentobs_sdk")

# client library -> module of ours that instruments it
_MODULES = {"openai": "agentobs_sdk.instrumentation.openai", "anthropic": "agentobs_sdk.instrumentation.anthropic"}


def instrument_installed() -> tuple[str, ...]:
    """Instrument every supported client library that is installed; returns their names."""
    done: list[str] = []
    for library, module in _MODULES.items():
        if importlib.util.find_spec(library) is None:
            continue
        try:
            importlib.import_module(module).instrument()
        except Exception:
            # A client release that moved its classes must not stop the agent.
            log.exception("agentobs: cannot instrument the %s client; its calls are not traced", library)
            continue
        done.append(library)
    return tuple(done)


def uninstrument_all() -> None:
    """Restore every method this package wrapped."""
    unwrap_all()
