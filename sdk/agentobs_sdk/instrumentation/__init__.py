"""Auto-instrumentation of the official LLM client libraries (`openai`, `anthropic`).

`configure()` calls `instrument_installed()` unless AGENTOBS_INSTRUMENT_CLIENTS=false: for each
client library it wraps the resource methods that call a model (chat completions and embeddings
for openai, messages for anthropic; sync and async; streamed or not), so every call becomes an
`llm_call` span with the GenAI attributes, metrics, cost and, when content capture is on, its
messages. `Handle.shutdown()` restores the original methods.

A library already imported is instrumented at once; one that is installed but not imported yet
is instrumented right after the application's own first import of it (an import hook on
`sys.meta_path`). Importing them in `configure()` cost 1.5-2 s of start-up, paid even by agents
that never call a model through them. Nothing here imports a client library the application does
not: `pip install agentobs-sdk[openai]` / `[anthropic]` pulls the clients in.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
import threading
from collections.abc import Sequence
from types import ModuleType

from ._common import unwrap_all

log = logging.getLogger("agentobs_sdk")

# client library -> module of ours that instruments it
_MODULES = {"openai": "agentobs_sdk.instrumentation.openai", "anthropic": "agentobs_sdk.instrumentation.anthropic"}


def _instrument(library: str) -> bool:
    try:
        importlib.import_module(_MODULES[library]).instrument()
    except Exception:
        # A client release that moved its classes must not stop the agent.
        log.exception("agentobs: cannot instrument the %s client; its calls are not traced", library)
        return False
    return True


class _Loader(importlib.abc.Loader):
    """The library's own loader, then the instrumentation once its top-level module has run."""

    def __init__(self, inner: importlib.abc.Loader, library: str) -> None:
        self._inner = inner
        self._library = library

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        try:
            self._inner.exec_module(module)
        finally:
            # Put the library's loader back: importlib.resources and reloads ask it, not us.
            if module.__spec__ is not None:
                module.__spec__.loader = self._inner
            module.__loader__ = self._inner
        _hook.loaded(self._library)


class _ImportHook(importlib.abc.MetaPathFinder):
    """Watches the first import of the client libraries configure() found installed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: set[str] = set()

    def watch(self, libraries: Sequence[str]) -> None:
        with self._lock:
            self._pending.update(libraries)
            if self._pending and self not in sys.meta_path:
                sys.meta_path.insert(0, self)

    def unwatch(self) -> None:
        with self._lock:
            self._pending.clear()
            if self in sys.meta_path:
                sys.meta_path.remove(self)

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._pending:
            return None
        # The spec the import would have found without us, with its loader wrapped.
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec: importlib.machinery.ModuleSpec | None = find(fullname, path, target)
            if spec is not None:
                if isinstance(spec.loader, importlib.abc.Loader) and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader, fullname)
                return spec
        return None

    def loaded(self, library: str) -> None:
        with self._lock:
            if library not in self._pending:
                return  # shutdown() came first
            self._pending.discard(library)
            if not self._pending and self in sys.meta_path:
                sys.meta_path.remove(self)
        if _instrument(library):
            from ..config import current_handle

            handle = current_handle()
            if handle is not None:
                handle.instrumented_clients += (library,)


_hook = _ImportHook()


def instrument_installed() -> tuple[str, ...]:
    """Instrument the supported client libraries already imported, and have the installed ones
    instrumented on their first import; returns the names instrumented now."""
    done: list[str] = []
    later: list[str] = []
    for library in _MODULES:
        if library in sys.modules:
            if _instrument(library):
                done.append(library)
        elif importlib.util.find_spec(library) is not None:
            later.append(library)
    _hook.watch(later)
    return tuple(done)


def uninstrument_all() -> None:
    """Restore every method this package wrapped, and stop watching for imports."""
    _hook.unwatch()
    unwrap_all()
