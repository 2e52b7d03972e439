"""JSON log lines for stdlib logging, correlated with the current OpenTelemetry span.

One record becomes one line of strict JSON (no NaN, no raw newlines) that Fluentd can parse:
timestamp, level, logger, message, trace_id/span_id of the active span, the agent id, exception
text and any `extra=` fields. Formatting never raises: a value that does not serialise is written
as its repr, and a broken message template is written verbatim with its arguments.

Trace correlation does not depend on this formatter: `install_record_factory()` (called on
importing the package and by `configure()`, kept after `shutdown()`) stamps every LogRecord with
`trace_id`, `span_id` and `trace_flags` when it is created, so an application that configured
logging itself keeps them too (its JSON formatter picks them up as record attributes, a text
format can use `%(trace_id)s`), and a record handed to another thread (QueueHandler) keeps the ids
of the span it was logged in.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

TRACE_FIELDS = ("trace_id", "span_id", "trace_flags")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName", *TRACE_FIELDS}

# Output keys the formatter owns; an extra with the same name is kept under `extra_<name>`.
_RESERVED = frozenset(
    {"ts", "level", "logger", "message", "trace_id", "span_id", "trace_flags", "agent_id",
     "service", "exception", "stack", "module", "function", "line", "thread", "process"}
)


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # a broken __repr__ must not break logging
        return f"<unrepresentable {type(value).__qualname__}>"


def _jsonable(value: object, depth: int = 0) -> Any:
    """A JSON-safe copy of value: containers walked, non-finite floats and unknowns as strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth > 8:  # bounds recursion on deep or self-referencing structures
        return _safe_repr(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in list(value.items())}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, depth + 1) for v in list(value)]
    if isinstance(value, datetime):
        return value.isoformat()
    return _safe_repr(value)


class JsonFormatter(logging.Formatter):
    """`logging.Formatter` producing one JSON object per line."""

    def __init__(
        self,
        *,
        agent_id: str | None = None,
        service: str | None = None,
        include_source: bool = False,
    ) -> None:
        super().__init__()
        self.agent_id = agent_id
        self.service = service
        self.include_source = include_source

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._format(record)
        except Exception as exc:  # last resort: still one valid JSON line
            return json.dumps(
                {
                    "ts": _timestamp(getattr(record, "created", 0.0)),
                    "level": str(getattr(record, "levelname", "ERROR")),
                    "logger": str(getattr(record, "name", "")),
                    "message": _safe_repr(getattr(record, "msg", "")),
                    "format_error": _safe_repr(exc),
                }
            )

    def _format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
        }
        stamped = getattr(record, "trace_id", None)
        if stamped is not None:  # set by the record factory where the record was created
            if stamped:
                for key in TRACE_FIELDS:
                    payload[key] = getattr(record, key, "")
        else:
            payload.update(_trace_fields())
        if self.agent_id:
            payload["agent_id"] = self.agent_id
        if self.service:
            payload["service"] = self.service
        if self.include_source:
            payload.update(module=record.module, function=record.funcName, line=record.lineno)
        # Cache like logging.Formatter does, so several handlers format the traceback once.
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exception"] = record.exc_text
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRS or key.startswith("_"):
                continue
            payload[f"extra_{key}" if key in _RESERVED else key] = value
        try:
            return json.dumps(payload, ensure_ascii=False, allow_nan=False, default=_safe_repr)
        except (TypeError, ValueError, RecursionError):
            # Circular references, non-string keys, NaN: rebuild a JSON-safe copy and retry.
            return json.dumps(_jsonable(payload), ensure_ascii=False)


def _trace_fields() -> dict[str, str]:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x"),
            "trace_flags": format(int(ctx.trace_flags), "02x")}


def install_record_factory() -> None:
    """Stamp every new LogRecord with the current trace ids (empty strings outside a span).

    Wraps whatever factory is installed, once per process, and stays for the process's life:
    a format that says `%(trace_id)s` was set up against records that carry the field, and
    removing it at `shutdown()` would make every later log call fail to format.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_agentobs", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        fields = _trace_fields()
        for key in TRACE_FIELDS:
            setattr(record, key, fields.get(key, ""))
        return record

    factory._agentobs = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def let_sdk_info_through(level: str | None) -> list[Callable[[], None]]:
    """Set the SDK logger to INFO when it has no level (its configuration and audit lines must
    not vanish at Python's default WARNING root level) and the root to `level` when given.
    Returns the functions that undo it."""
    undo: list[Callable[[], None]] = []
    sdk_logger = logging.getLogger("agentobs_sdk")
    if sdk_logger.level == logging.NOTSET:
        sdk_logger.setLevel(logging.INFO)
        undo.append(lambda: sdk_logger.setLevel(logging.NOTSET))
    if level is not None:
        root = logging.getLogger()
        previous = root.level
        root.setLevel(level)
        undo.append(lambda: root.setLevel(previous))
    return undo


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a wrong %-template is the caller's bug; keep the evidence instead
        return f"{_safe_repr(record.msg)} % {_safe_repr(record.args)}"


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def install(
    formatter: JsonFormatter, *, logger: logging.Logger | None = None, stream: Any = None
) -> logging.Handler | None:
    """Attach a JSON stream handler to `logger` (root by default) unless it already has handlers.

    An application that configured logging itself keeps its handlers; it can still use
    `JsonFormatter` directly. Returns the handler added, or None.
    """
    target = logger if logger is not None else logging.getLogger()
    if target.handlers:
        return None
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    target.addHandler(handler)
    return handler


class _Held(logging.Handler):
    """Keeps the records that no other handler would have shown (see `hold_sdk_records`)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Once the root has a handler (configure() installed the JSON one), records reach it
        # directly; holding them too would print them twice.
        if not logging.getLogger().handlers:
            self.records.append(record)


_holding = threading.Lock()


@contextlib.contextmanager
def hold_sdk_records(active: bool = True) -> Iterator[None]:
    """Hold the SDK's own log records while `configure()` runs on a bare root logger, and pass
    them on at the end, to whatever handlers exist by then.

    Warnings about the environment (a bad AGENTOBS_METRICS_PORT, an unkeyed audit trail) are
    logged before `configure()` installs its JSON handler; with no handler anywhere they would
    reach logging's last-resort handler as plain text, the one kind of line the log pipeline
    cannot parse. Held, they come out through the JSON handler like every later line (or, when
    none was installed, through the last-resort handler as before).
    """
    sdk = logging.getLogger("agentobs_sdk")
    if not active or logging.getLogger().handlers or sdk.handlers:
        yield
        return
    with _holding:  # concurrent configure() calls must not each replay the other's records
        held = _Held()
        sdk.addHandler(held)  # a handler found on the way up also keeps the last resort quiet
        try:
            yield
        finally:
            sdk.removeHandler(held)
            for record in held.records:
                logging.getLogger(record.name).handle(record)
