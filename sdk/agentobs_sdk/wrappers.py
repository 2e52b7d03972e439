"""`Instrument`: a helper as context manager (`with`, `async with`) and decorator (functions,
coroutines, generators, async generators).

A decorated generator keeps its span open until the stream is exhausted or closed (or, if neither
happens, until `shutdown()`, which ends it marked `agentobs.stream.unfinished`), and the span is
current only while the generator body runs (each resumption), never in the consumer's code between
items. Its parent and agent are those of the code that called the generator function, captured at
the call, not of wherever the stream is first read: a stream returned from inside an `agent_run`
and read later (a web framework's streaming response, a worker thread) still belongs to that run.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any, Generic, ParamSpec, TypeVar, cast

from .instrument import Operation, Origin, track_stream

P = ParamSpec("P")
R = TypeVar("R")
O = TypeVar("O", bound=Operation)  # noqa: E741 - conventional TypeVar name

# Set on the wrappers of generator functions: they are plain functions (to capture the caller's
# context at the call), so an enclosing helper decorator learns from this that they stream.
_STREAM_ATTR = "_agentobs_stream"


class _Running:
    """`with _Running(op):` makes `op` current for the block (a generator body's resumption)."""

    __slots__ = ("_op",)

    def __init__(self, op: Operation) -> None:
        self._op = op

    def __enter__(self) -> None:
        self._op._activate()

    def __exit__(self, *exc: object) -> None:
        self._op._deactivate()


def _drive(op: Operation, gen: Generator[Any, Any, R]) -> Generator[Any, Any, R]:
    """Run `gen` item by item with `op` current only while the generator body runs."""
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        try:
            with _Running(op):
                item = gen.throw(to_throw) if to_throw is not None else gen.send(to_send)
        except StopIteration as stop:
            return cast(R, stop.value)
        try:
            to_send, to_throw = (yield item), None
        except GeneratorExit:
            with _Running(op):
                gen.close()
            raise
        except BaseException as exc:  # thrown in by the consumer: pass it to the generator
            to_send, to_throw = None, exc


def _stream_wrapper(factory: Callable[[], Operation], fn: Callable[..., Generator[Any, Any, Any]]
                    ) -> Callable[..., Generator[Any, Any, Any]]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        return _stream(factory(), Origin(), lambda: fn(*args, **kwargs))

    setattr(wrapper, _STREAM_ATTR, "sync")
    return wrapper


def _stream(op: Operation, origin: Origin, make: Callable[[], Generator[Any, Any, R]]) -> Generator[Any, Any, R]:
    op._begin(origin)  # at the first item: the time until then is not the call's
    track_stream(op)  # ended at shutdown() if the consumer never finishes nor closes it
    try:
        with _Running(op):  # made while current: a stream decorated twice nests under this one
            gen = make()
        result = yield from _drive(op, gen)
    except BaseException as exc:
        op._end(exc)
        raise
    op._end(None)
    return result


def _async_stream_wrapper(factory: Callable[[], Operation], fn: Callable[..., AsyncGenerator[Any, Any]]
                          ) -> Callable[..., AsyncGenerator[Any, Any]]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        return _astream(factory(), Origin(), lambda: fn(*args, **kwargs))

    setattr(wrapper, _STREAM_ATTR, "async")
    return wrapper


async def _astream(op: Operation, origin: Origin, make: Callable[[], AsyncGenerator[Any, Any]]
                   ) -> AsyncGenerator[Any, Any]:
    op._begin(origin)
    track_stream(op)
    to_send: Any = None
    to_throw: BaseException | None = None
    try:
        with _Running(op):
            agen = make()
        while True:
            try:
                with _Running(op):
                    item = await (agen.athrow(to_throw) if to_throw is not None else agen.asend(to_send))
            except StopAsyncIteration:
                break
            try:
                to_send, to_throw = (yield item), None
            except GeneratorExit:
                with _Running(op):
                    await agen.aclose()
                raise
            except BaseException as exc:
                to_send, to_throw = None, exc
    except BaseException as exc:
        op._end(exc)
        raise
    op._end(None)


class Instrument(Generic[O]):
    """Context manager (sync/async) and decorator (function, coroutine, generator, async
    generator) around a fresh `Operation`.

    Every `with`, `async with` or decorated call gets its own operation; the active ones are
    kept per context (thread or asyncio task), so one instrument object may be shared.
    """

    def __init__(self, factory: Callable[[], O]) -> None:
        self._factory = factory
        self._stack: contextvars.ContextVar[tuple[O, ...]] = contextvars.ContextVar(
            "agentobs_instrument", default=())

    def __enter__(self) -> O:
        op = self._factory()
        op._start()
        self._stack.set((*self._stack.get(), op))
        return op

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        stack = self._stack.get()
        self._stack.set(stack[:-1])
        stack[-1]._finish(exc)

    async def __aenter__(self) -> O:
        return self.__enter__()

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        factory = self._factory
        stream = getattr(fn, _STREAM_ATTR, None)  # another helper's stream wrapper
        if stream == "async" or inspect.isasyncgenfunction(fn):
            return cast(Callable[P, R], _async_stream_wrapper(factory, cast(Callable[..., Any], fn)))
        if stream == "sync" or inspect.isgeneratorfunction(fn):
            return cast(Callable[P, R], _stream_wrapper(factory, cast(Callable[..., Any], fn)))
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                op = factory()
                op._start()
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    op._finish(exc)
                    raise
                op._finish(None)
                return result

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            op = factory()
            op._start()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                op._finish(exc)
                raise
            op._finish(None)
            return result

        return wrapper
