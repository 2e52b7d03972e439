"""What the client instrumentations share: method wrapping, the call lifecycle, stream proxies.

A wrapped method opens an `LLMCall` (model_call.py) around the original, unless it is called
directly inside the caller's own `llm_call` (the README's quickstart wraps the client call in
one): that call then is this model call, and takes what the request and response say, so the
call is traced and its tokens and cost counted once. A plain call ends when the
method returns or raises. A streamed call (`stream=True`) returns a proxy around the library's
stream: its span ends when the stream is exhausted, closed, fails, or is garbage collected, and
the first chunk marks the time to first chunk. A streamed call's span is not left current after
`create()` returns, so spans the caller starts while consuming the stream are its siblings. The
caller's own `llm_call` that ends with its client stream still unread (a decorated function that
returns the stream) hands its end to the stream. A stream `shutdown()` ends before its end
records what its chunks read so far said.
"""

from __future__ import annotations

import functools
import inspect
import logging
import urllib.parse
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

from ..instrument import Operation, current_operation, track_stream
from ..model_call import LLMCall

log = logging.getLogger("agentobs_sdk")

_wrapped: list[tuple[type[Any], str, Any]] = []
_MARK = "__agentobs_original__"


class Extractor(Protocol):
    """What a client module supplies for one kind of call."""

    provider: str
    operation: str

    def request(self, call: LLMCall, kwargs: dict[str, Any]) -> None: ...
    def response(self, call: LLMCall, result: Any) -> None: ...
    def chunk(self, call: LLMCall, state: dict[str, Any], chunk: Any) -> None: ...
    def stream_end(self, call: LLMCall, state: dict[str, Any]) -> None: ...


def wrap(cls: type[Any], name: str, extractor: Extractor) -> None:
    original = cls.__dict__.get(name)
    if original is None or hasattr(original, _MARK):
        return
    # Some clients decorate their async methods, hiding the coroutine function from inspect.
    is_async = inspect.iscoroutinefunction(original) or cls.__name__.startswith("Async")
    replacement = _async_wrapper(original, extractor) if is_async else _sync_wrapper(original, extractor)
    setattr(replacement, _MARK, original)
    setattr(cls, name, replacement)
    _wrapped.append((cls, name, original))


def unwrap_all() -> None:
    while _wrapped:
        cls, name, original = _wrapped.pop()
        setattr(cls, name, original)


def server_of(resource: Any) -> tuple[str | None, int | None]:
    """server.address / server.port from the client's base URL."""
    client = getattr(resource, "_client", None)
    base = getattr(client, "base_url", None)
    if base is None:
        return None, None
    parsed = urllib.parse.urlsplit(str(base))
    port = parsed.port or {"https": 443, "http": 80}.get(parsed.scheme)
    return parsed.hostname, port


def _callers_call() -> LLMCall | None:
    """The caller's `llm_call` this client call is made directly in, when no client call was
    recorded on it yet. A second client call inside it is another model call: its own span."""
    op = current_operation()
    if isinstance(op, LLMCall) and not op._client_call and not op._ended:
        op._client_call = True
        return op
    return None


def _begin(resource: Any, extractor: Extractor, kwargs: dict[str, Any]) -> tuple[LLMCall, bool]:
    """The call to record on, and whether it is ours (to end) rather than the caller's."""
    call = _callers_call()
    owned = call is None
    if call is None:
        model = str(kwargs.get("model") or "unknown")
        call = LLMCall(model, extractor.provider, extractor.operation, None, None)
        call._client_call = True  # a client method the library calls from this one stays apart
        call._start()
    try:
        call.set_server(*server_of(resource))
        extractor.request(call, kwargs)
    except Exception:
        log.exception("agentobs: recording the %s request failed", extractor.provider)
    return call, owned


def _detach(call: Operation) -> None:
    """Stop the call's span being current while keeping it open (for a stream)."""
    from opentelemetry import context as otel_context

    from ..instrument import _current_op

    if call._tokens is not None:
        ctx_token, op_token = call._tokens
        _current_op.reset(op_token)
        if ctx_token is not None:
            otel_context.detach(ctx_token)
        call._tokens = None


def _safe(what: str, fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:
        log.exception("agentobs: %s failed", what)


def _returned(call: LLMCall, owned: bool, extractor: Extractor, kwargs: dict[str, Any], result: Any,
              proxy: type[_StreamState]) -> Any:
    """What a wrapped client method returns: a stream wrapped to end the call when it ends, or
    the response, recorded, with the call ended (the caller's own call ends with its block)."""
    if kwargs.get("stream") is True:
        if owned:
            _detach(call)
            track_stream(call)  # a stream kept unread to the end is ended at shutdown()
        wrapped = proxy(result, call, extractor, owned)
        if not owned:
            call._stream_takes_end = _hand_over(weakref.ref(wrapped))
        return wrapped
    _safe("recording the response", lambda: extractor.response(call, result))
    if owned:
        call._finish(None)
    return result


def _hand_over(ref: weakref.ReferenceType[_StreamState]) -> Callable[[], bool]:
    """For the caller's `llm_call` that ends while the stream its client call returned is still
    unread (a decorated function that returns the stream): the stream then ends the call, so its
    chunks, usage and time to first chunk are recorded on it rather than dropped. A stream already
    being read when the caller's block ends (a `break` inside `with llm_call()`) leaves the end to
    the block. Weak: the call must not keep an abandoned stream alive."""
    def take() -> bool:
        stream = ref()
        if stream is None or stream._done or stream._read:
            return False
        handle = stream._call._handle
        if handle is not None and handle._closed:
            return False  # shutdown() is ending open calls: nothing would end it later
        stream._owned = True
        track_stream(stream._call)  # ended at shutdown() if never read to the end
        return True

    return take


def _sync_wrapper(original: Callable[..., Any], extractor: Extractor) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        call, owned = _begin(self, extractor, kwargs)
        try:
            result = original(self, *args, **kwargs)
        except BaseException as exc:
            if owned:  # else it reaches the caller's llm_call, which records it
                call._finish(exc)
            raise
        return _returned(call, owned, extractor, kwargs, result, SyncStreamProxy)

    return wrapper


def _async_wrapper(original: Callable[..., Any], extractor: Extractor) -> Callable[..., Any]:
    @functools.wraps(original)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        call, owned = _begin(self, extractor, kwargs)
        try:
            result = await original(self, *args, **kwargs)
        except BaseException as exc:
            if owned:
                call._finish(exc)
            raise
        return _returned(call, owned, extractor, kwargs, result, AsyncStreamProxy)

    return wrapper


def _seen_so_far(ref: weakref.ReferenceType[_StreamState]) -> Callable[[], None]:
    """For `shutdown()` ending a call whose client stream was not read to its end: record what
    the chunks read so far said (usage, response model, id, finish reasons), as closing the
    stream would, instead of ending the span without them: a stream read but for its last
    chunks has used tokens. Nothing when no chunk said anything. Weak, as in `_hand_over`."""
    def record() -> None:
        stream = ref()
        if stream is None or stream._done or stream._call._ended or not stream._state:
            return
        _safe("recording the stream so far", lambda: stream._extractor.stream_end(stream._call, stream._state))

    return record


class _StreamState:
    def __init__(self, stream: Any, call: LLMCall, extractor: Extractor, owned: bool = True) -> None:
        self._stream = stream
        self._call = call
        self._extractor = extractor
        self._owned = owned
        self._state: dict[str, Any] = {}
        self._done = False
        self._read = False  # a chunk was asked for
        call._stream_seen = _seen_so_far(weakref.ref(self))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _on_chunk(self, chunk: Any) -> Any:
        if self._call._ended:  # the caller's llm_call ended before its stream was read
            return chunk
        self._call.first_chunk()
        _safe("recording a stream chunk", lambda: self._extractor.chunk(self._call, self._state, chunk))
        return chunk

    def _stopped(self, exc: BaseException) -> None:
        """The stream raised `exc` for the next chunk: the end of it, or its failure."""
        self._end(None if isinstance(exc, StopIteration | StopAsyncIteration) else exc)

    def _end(self, exc: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        if exc is None and not self._call._ended:
            _safe("recording the stream end", lambda: self._extractor.stream_end(self._call, self._state))
        if self._owned:
            self._call._finish(exc)

    def __del__(self) -> None:
        # A stream abandoned half-way still ends its span (without the outcome it never had).
        if not getattr(self, "_done", True):
            self._end(None)


class SyncStreamProxy(_StreamState):
    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        self._read = True
        try:
            chunk = next(self._stream)
        except BaseException as exc:
            self._stopped(exc)
            raise
        return self._on_chunk(chunk)

    def __enter__(self) -> SyncStreamProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._end(None)


class AsyncStreamProxy(_StreamState):
    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        self._read = True
        try:
            chunk = await self._stream.__anext__()
        except BaseException as exc:
            self._stopped(exc)
            raise
        return self._on_chunk(chunk)

    async def __aenter__(self) -> AsyncStreamProxy:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        try:
            await self._stream.close()
        finally:
            self._end(None)


def get(obj: Any, *path: str) -> Any:
    """obj.a.b... tolerating None and dicts (responses are pydantic models, requests dicts)."""
    for key in path:
        if obj is None:
            return None
        obj = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
    return obj


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def text_parts(content: Any) -> list[dict[str, Any]]:
    """A message's content as the conventions' parts (text parts; other parts as given)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else [content]:
        kind = get(part, "type")
        if kind == "text":
            parts.append({"type": "text", "content": get(part, "text")})
        else:
            parts.append({"type": str(kind or "unknown"), "content": part})
    return parts
