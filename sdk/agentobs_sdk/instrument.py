"""The operation lifecycle every helper shares, and the with/async with/decorator protocol.

An `Operation` starts its span, makes it current (OpenTelemetry context and this module's
context variables, so it propagates across awaits and nested helpers), and on exit records an
exception on the span (status ERROR, `error.type`, exception event) before ending it. The error
counter counts an exception once, at the innermost helper it crosses, however many enclosing
helpers it then passes through. A cancelled operation (asyncio.CancelledError) is not a failure:
see `is_cancellation`. `Instrument` (wrappers.py) turns a factory of operations into a
context manager and a decorator. The concrete operations live in helpers.py and model_call.py.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
import weakref
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from . import config
from .config import Handle
from .counting import first_sighting, leaves
from .semconv import Mode
from .settings import ENV_AUDIT_DIR

log = logging.getLogger("agentobs_sdk")

O = TypeVar("O", bound="Operation")  # noqa: E741 - conventional TypeVar name

_current_op: contextvars.ContextVar[Operation | None] = contextvars.ContextVar("agentobs_op", default=None)
_current_agent: contextvars.ContextVar[str | None] = contextvars.ContextVar("agentobs_agent", default=None)


def current_operation() -> Operation | None:
    """The innermost active helper operation (e.g. to record token usage inside a decorated call)."""
    return _live(_current_op.get())[0]


def innermost(kind: type[O]) -> O | None:
    """The innermost active operation of `kind`, looking through the ones nested inside it."""
    op = _live(_current_op.get())[0]
    while op is not None and not isinstance(op, kind):
        op = op._parent
    return op


def _live(op: Operation | None) -> tuple[Operation | None, Context | None]:
    """`op`, or its nearest ancestor still running, and the OpenTelemetry context to start a
    child in (None: the current one).

    An operation can end in another context than the one it was entered in: `async with
    llm_call()` around the yields of an async generator the consumer leaves with `break` is
    closed by asyncio in a task of its own, and the consumer's context keeps the ended operation
    (and its span) as current. Skipping it gives later operations the parent they would have had.
    """
    ctx: Context | None = None
    while op is not None and op._ended:
        ctx = op._outer
        op = op._parent
    return op, ctx


# Streams begun and not yet ended: a stream the agent stops reading but keeps (a `break` out of a
# `for` over a stream held in a variable, a process exiting mid-stream) is neither exhausted nor
# closed, so nothing would end its span before the exporter shuts down, and the span would be
# lost. `end_open_streams()` ends them at `shutdown()`. Weak, so a stream dropped unread leaves
# nothing behind here (its generator's finalizer closes it, which ends it anyway).
_open_streams: weakref.WeakSet[Operation] = weakref.WeakSet()
_open_lock = threading.Lock()  # iterating a WeakSet while another thread adds to it raises
UNFINISHED_ATTRIBUTE = "agentobs.stream.unfinished"
# On the span of an operation that was cancelled rather than failed (see is_cancellation).
CANCELLED_ATTRIBUTE = "agentobs.cancelled"


def track_stream(op: Operation) -> None:
    """Have `shutdown()` end `op` if it is still open then (see `end_open_streams`)."""
    op._tracked = True
    with _open_lock:
        _open_streams.add(op)


def end_open_streams(handle: Handle) -> int:
    """End the streams of `handle` that were neither read to the end nor closed, as closing them
    would (not an error: closing a stream early is not one), marked `agentobs.stream.unfinished`
    so the span says why it is short. Returns how many; the caller logs it."""
    with _open_lock:
        ops = [op for op in _open_streams if op._handle is handle and not op._ended]
    for op in ops:
        op.span.set_attribute(UNFINISHED_ATTRIBUTE, True)
        op._record_unfinished()
        op._end(None)
    return len(ops)


def semconv_mode(op: Operation) -> Mode:
    """The semantic-convention mode `op` records in (the configured one; v1.41.0 unconfigured)."""
    return op._handle.metrics.mode if op._handle is not None else Mode.OLD


def enter_agent(name: str) -> contextvars.Token[str | None]:
    """Make `name` the agent that nested operations report in their metrics."""
    return _current_agent.set(name)


def leave_agent(token: contextvars.Token[str | None]) -> None:
    _current_agent.reset(token)


def current_agent() -> str | None:
    """The name of the enclosing `agent_run`, or None outside one."""
    return _current_agent.get()


def _ends_normally(exc: BaseException) -> bool:
    """Exceptions that end an operation without it failing: a generator closed early, and
    `sys.exit()` / `sys.exit(0)` (a CLI agent that exits from inside its run succeeded)."""
    return isinstance(exc, GeneratorExit) or (isinstance(exc, SystemExit) and exc.code in (None, 0))


def is_cancellation(exc: BaseException) -> bool:
    """An operation stopped from outside rather than failed: asyncio cancelled its task (a
    `task.cancel()` such as a user's stop button, a sibling's failure in a `TaskGroup`, an
    `asyncio.timeout` expiring inside it). Recorded as cancelled, not as an error: counting these
    would make one failure in a group of N tasks N errors, and every stop button press a failure
    in the error-rate alerts. A group of nothing but cancellations is one too.

    The code *around* an `async with asyncio.timeout()` sees TimeoutError, not CancelledError:
    a deadline it set and missed is its failure, and is recorded as one."""
    if isinstance(exc, asyncio.CancelledError):
        return True
    return isinstance(exc, BaseExceptionGroup) and all(
        isinstance(leaf, asyncio.CancelledError) for leaf in leaves(exc))


def _error_type(exc: BaseException) -> str:
    return type(exc).__qualname__


def warn_no_trail(action: str, handle: Handle | None) -> None:
    """Say why an audit record asked for is not kept: a dropped record must not pass unnoticed."""
    if handle is not None:
        why = f"{ENV_AUDIT_DIR} is not set"
    elif config.was_shut_down():
        why = "the SDK was shut down (handle.shutdown())"
    else:
        why = "configure() has not been called"
    # Once per action and cause until the SDK's state changes: an agent calling an audited tool
    # in a loop would otherwise log this on every call, burying its own lines.
    # (Unlocked: two threads racing here at worst both say it.)
    if (action, why) in config.said_no_trail:
        return
    config.said_no_trail.add((action, why))
    log.warning("agentobs: audit requested for %s but no audit trail is configured: %s; "
                "the record is not kept (said once for %s until configure() or shutdown())",
                action, why, action)


class Origin:
    """The caller's helper context (span context, innermost operation, agent) when created."""

    __slots__ = ("agent", "ctx", "op")

    def __init__(self) -> None:
        # Ended operations are skipped now, at the call, not when a stream starts: the run a
        # stream was called in may well have ended by the time the stream is read.
        self.op, ctx = _live(_current_op.get())
        self.ctx: Context = ctx if ctx is not None else otel_context.get_current()
        self.agent: str | None = _current_agent.get()


class Operation:
    """One instrumented operation; subclasses add what their kind records."""

    operation_name = "operation"
    kind = SpanKind.INTERNAL

    def __init__(self, attributes: dict[str, AttributeValue] | None = None) -> None:
        self._attributes: dict[str, AttributeValue] = dict(attributes or {})
        self.span: trace.Span = trace.INVALID_SPAN
        self._handle: Handle | None = None
        self._t0 = 0.0
        self._tokens: tuple[contextvars.Token[Context] | None, contextvars.Token[Operation | None]] | None = None
        self._failure: str | None = None  # error type of a failure reported without raising
        self._failure_text: str | None = None  # what the caller said, for the span's status
        self._cancelled = False  # ended by a cancellation (is_cancellation); set before _on_end
        self._parent: Operation | None = None
        self._agent: str | None = None
        self._ended = False  # the span has ended; a stream still read afterwards records nothing
        self._outer: Context | None = None  # the OpenTelemetry context the span was started in
        self._tracked = False  # in _open_streams (a stream; see track_stream)

    # What a subclass defines.
    def span_name(self) -> str:
        return self.operation_name

    def _span_attributes(self) -> dict[str, AttributeValue]:
        return {}

    def _on_end(self, seconds: float, error_type: str | None) -> None:
        """Record metrics (and audit) when the operation ends; runs before the span ends.

        `error_type` is None for an operation that did not fail, which includes a cancelled one
        (`self._cancelled` tells them apart)."""

    def _record_unfinished(self) -> None:
        """Record what is known so far of a stream `shutdown()` ends before its end (see
        end_open_streams); runs before the span ends."""

    # Recording API.
    def set(self, key: str, value: AttributeValue) -> None:
        """Set a span attribute."""
        self.span.set_attribute(key, value)

    def event(self, name: str, attributes: dict[str, AttributeValue] | None = None) -> None:
        self.span.add_event(name, attributes or {})

    @property
    def agent(self) -> str:
        """The agent this operation belongs to: the enclosing agent run, else the configured id."""
        name = self._agent if self._agent is not None else _current_agent.get()
        if name:
            return name
        return self._handle.settings.effective_agent_id if self._handle is not None else "unknown"

    # Lifecycle: begin (span starts) / activate, deactivate (current while code runs) / end.
    def _begin(self, origin: Origin | None = None) -> None:
        """Start the span; `origin` is where a stream was called (see `Origin`), else here."""
        self._handle = config.current_handle()
        if origin is None:
            origin = Origin()
        self._parent = origin.op
        self._outer = parent_ctx = origin.ctx
        # Captured, so an operation that ends elsewhere (a stream closed by its consumer, a
        # context carried into a thread) still reports the agent it started under.
        self._agent = origin.agent
        if self._handle is not None:
            tracer: trace.Tracer = self._handle.tracer
        elif config.was_shut_down():
            tracer = _NOOP_TRACER  # after shutdown() helpers record nothing, spans included
        else:
            tracer = trace.get_tracer("agentobs_sdk")
        attrs = self._span_attributes()
        attrs.update(self._attributes)
        self.span = tracer.start_span(self.span_name(), kind=self.kind, attributes=attrs, context=parent_ctx)
        self._t0 = time.perf_counter()

    def _activate(self) -> None:
        ctx_token = None
        if self.span.get_span_context().is_valid:
            ctx_token = otel_context.attach(trace.set_span_in_context(self.span))
        self._tokens = (ctx_token, _current_op.set(self))
        self._enter_hook()

    def _deactivate(self) -> None:
        self._exit_hook()
        if self._tokens is not None:
            ctx_token, op_token = self._tokens
            self._tokens = None
            try:
                _current_op.reset(op_token)
            except ValueError:
                # Entered in another context (see _live); nothing of it to undo in this one, and
                # raising here would fail the agent's cleanup (asyncio logs it as an error).
                return
            if ctx_token is not None:
                otel_context.detach(ctx_token)

    def _start(self) -> None:
        self._begin()
        self._activate()

    def _enter_hook(self) -> None:
        pass

    def _exit_hook(self) -> None:
        pass

    def _finish(self, exc: BaseException | None) -> None:
        try:
            self._end(exc)
        finally:
            self._deactivate()

    def _end(self, exc: BaseException | None) -> None:
        if self._ended:
            # A stream ended by shutdown() and read or closed afterwards: already recorded, and
            # ending the span twice would make OpenTelemetry warn.
            return
        if self._tracked:
            with _open_lock:
                _open_streams.discard(self)
        seconds = time.perf_counter() - self._t0
        error_type: str | None = None
        try:
            if exc is not None and is_cancellation(exc):
                # Not an error (status left unset, not counted): see is_cancellation.
                self._cancelled = True
                self.span.set_attribute(CANCELLED_ATTRIBUTE, True)
            elif exc is not None and not _ends_normally(exc):
                error_type = _error_type(exc)
                self.span.record_exception(exc)
                self.span.set_status(Status(StatusCode.ERROR, f"{error_type}: {exc}"))
                self.span.set_attribute("error.type", error_type)
                metrics = self._handle.metrics if self._handle is not None else None
                if metrics is not None and first_sighting(exc):
                    metrics.record_error(self.agent, self.operation_name, error_type)
            elif self._failure is not None:
                error_type = self._failure
                self.span.set_status(Status(StatusCode.ERROR, self._failure_text or error_type))
                self.span.set_attribute("error.type", error_type)
            self._on_end(seconds, error_type)
        except Exception as own:
            if exc is None and isinstance(own, _MustRaise):
                raise own.error from None
            log.exception("agentobs: recording %s failed", self.span_name())
        finally:
            self._ended = True
            self.span.end()

    def _audit(self, action: str, **fields: Any) -> None:
        """Append an audit record; a failure raises only if the operation itself succeeded."""
        trail = self._handle.audit if self._handle is not None else None
        if trail is None:
            warn_no_trail(action, self._handle)
            return
        try:
            trail.append(action, agent=self.agent, **fields)
        except Exception as exc:
            self.span.add_event("agentobs.audit.failed", {"error.type": _error_type(exc)})
            raise _MustRaise(exc) from exc


_NOOP_TRACER = trace.NoOpTracer()


class _MustRaise(Exception):
    """Carries an error the agent must see (an audit append that failed) out of _finish."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error
