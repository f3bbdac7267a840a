"""``ctx``: what every handler gets next to its input (state, logger, trace id, trigger)."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from random import getrandbits as _rand_bits
from typing import Any, Generic

from typing_extensions import TypeVar

from motia.exceptions import MatchError, MotiaError
from motia.runtime import observe
from motia.runtime.types import ApiRequest, TriggerFields, TriggerInfo
from motia.streams.stream import Streams, current_streams

__all__ = ["Context", "FlowContext", "StepLogger", "current_run", "new_trace_id"]

_step_log = logging.getLogger("motia.step")

#: What the step enqueues, for ``FlowContext[OrderEvent]`` in annotations (not checked).
TEnqueueData = TypeVar("TEnqueueData", default=Any)


#: The ``ctx`` of the handler running in this context, set by the app around each handler call (``def``
#: handlers inherit it in their worker thread): ``motia.logger`` is its ``ctx.logger`` and ``motia.enqueue``
#: its ``ctx.enqueue``. One variable for both, read only when they are used (issue 15).
current_run: contextvars.ContextVar[FlowContext | None] = contextvars.ContextVar("motia_run", default=None)


def new_trace_id() -> str:
    """A fresh random trace id (16 hex characters).

    It ties log lines and responses to one run; nothing is protected by it, so it comes from ``random``
    (cheaper than ``secrets``, which makes a system call per id; issue 15). ``random`` is
    re-seeded in a forked child, so processes never share a sequence.
    """
    return "%016x" % _rand_bits(64)  # noqa: UP031 - the fastest spelling, on every request


class StepLogger:
    """``ctx.logger``: structured logging tagged with the step name and the trace id.

    Fields go in a dict, positionally (Motia's TypeScript shape) or as ``extra=`` (Motia's Python
    shape): ``ctx.logger.info("Session deleted", {"sessionId": sid})``. Records go to the stdlib
    logger ``motia.step`` with ``motia_step``, ``motia_trace_id`` and ``motia_fields`` attributes,
    which the formatters of ``motia.runtime.logging`` print as text or JSON.
    """

    __slots__ = ("_logger", "step", "trace_id")

    def __init__(self, step: str, trace_id: str, logger: logging.Logger | None = None) -> None:
        self.step = step
        self.trace_id = trace_id
        self._logger = logger or _step_log

    def log(
        self,
        level: int,
        msg: object,
        fields: Mapping[str, Any] | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        exc_info: Any = None,
    ) -> None:
        if not self._logger.isEnabledFor(level):
            return
        merged: dict[str, Any] = {}
        if fields:
            merged.update(fields)
        if extra:
            merged.update(extra)
        self._logger.log(
            level,
            msg,
            extra={"motia_step": self.step, "motia_trace_id": self.trace_id, "motia_fields": merged},
            exc_info=exc_info,
            stacklevel=3,
        )
        telemetry = observe.active
        if telemetry is not None:  # the line is an event of the run's span too
            telemetry.log(level, str(msg))

    def debug(
        self,
        msg: object,
        fields: Mapping[str, Any] | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        exc_info: Any = None,
    ) -> None:
        self.log(logging.DEBUG, msg, fields, extra=extra, exc_info=exc_info)

    def info(
        self,
        msg: object,
        fields: Mapping[str, Any] | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        exc_info: Any = None,
    ) -> None:
        self.log(logging.INFO, msg, fields, extra=extra, exc_info=exc_info)

    def warning(
        self,
        msg: object,
        fields: Mapping[str, Any] | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        exc_info: Any = None,
    ) -> None:
        self.log(logging.WARNING, msg, fields, extra=extra, exc_info=exc_info)

    warn = warning

    def error(
        self,
        msg: object,
        fields: Mapping[str, Any] | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        exc_info: Any = None,
    ) -> None:
        self.log(logging.ERROR, msg, fields, extra=extra, exc_info=exc_info)

    def exception(
        self, msg: object, fields: Mapping[str, Any] | None = None, *, extra: Mapping[str, Any] | None = None
    ) -> None:
        """Log at ERROR with the traceback of the exception being handled."""
        self.log(logging.ERROR, msg, fields, extra=extra, exc_info=True)

    def critical(
        self,
        msg: object,
        fields: Mapping[str, Any] | None = None,
        *,
        extra: Mapping[str, Any] | None = None,
        exc_info: Any = None,
    ) -> None:
        self.log(logging.CRITICAL, msg, fields, extra=extra, exc_info=exc_info)


class FlowContext(Generic[TEnqueueData]):
    """The ``ctx`` passed to handlers.

    ``state`` is the app's async ``StateManager`` for ``async def`` handlers and its blocking twin
    (``SyncStateManager``, same methods) for ``def`` handlers, which run in a worker thread.
    ``trigger`` says what started this run; ``is_api()``/``is_cron()``/``is_queue()``/``is_state()``/
    ``is_stream()`` test its type. ``enqueuer`` sends messages for :meth:`enqueue` (the app provides it);
    ``streams`` the app's streams. ``input_value`` is the input the handler got (the app sets it before
    the handler runs; motia-py 1.0's name), which :meth:`get_data` and :meth:`match` read. ``loop`` is the
    app's event loop, where :meth:`match` runs an ``async`` branch for a ``def`` handler.
    """

    __slots__ = (
        "_enqueue_from",
        "_enqueuer",
        "_logger",
        "_loop",
        "_streams",
        "_trace_id",
        "_trigger",
        "input_value",
        "state",
        "step",
    )

    # Positional or keyword: the runtime builds one per run positionally, which CPython calls without
    # packing a dict of keywords (issue 15); code outside the runtime names them. The runtime passes no
    # ``logger`` and, instead of an ``enqueuer``, ``enqueue_from``: ``(scope class, router, parent delivery,
    # blocking)``; both are made on first use, as most runs never log nor enqueue (a tenth of a delivery's
    # Python, issue 15). A ``trace_id`` of ``None`` is a fresh one, drawn on first read.
    def __init__(
        self,
        state: Any,
        logger: StepLogger | None,
        trace_id: str | None,
        trigger: TriggerInfo | TriggerFields,
        step: str,
        enqueuer: Callable[[Mapping[str, Any]], Any] | None = None,
        streams: Streams | None = None,
        input_value: Any = None,
        loop: asyncio.AbstractEventLoop | None = None,
        enqueue_from: tuple[Callable[..., Any], Any, str | None, bool] | None = None,
    ) -> None:
        self.state = state
        self._logger = logger
        self._trace_id = trace_id
        self._trigger = trigger
        self.step = step
        self._enqueuer = enqueuer
        self._streams = streams
        self.input_value = input_value
        self._loop = loop
        self._enqueue_from = enqueue_from

    @property
    def trace_id(self) -> str:
        """The run's trace id (16 hex characters, or the OpenTelemetry trace's when tracing is on)."""
        trace_id = self._trace_id
        if trace_id is None:
            trace_id = self._trace_id = "%016x" % _rand_bits(64)  # noqa: UP031 - new_trace_id(), one call fewer
        return trace_id

    @trace_id.setter
    def trace_id(self, trace_id: str) -> None:
        self._trace_id = trace_id

    @property
    def logger(self) -> StepLogger:
        """The run's :class:`StepLogger` (tagged with the step and the trace id)."""
        logger = self._logger
        if logger is None:
            logger = self._logger = StepLogger(self.step, self.trace_id)
        return logger

    @logger.setter
    def logger(self, logger: StepLogger) -> None:
        self._logger = logger

    @property
    def enqueuer(self) -> Callable[[Mapping[str, Any]], Any] | None:
        """What :meth:`enqueue` sends through (the app's ``EnqueueScope`` for this run), or ``None``."""
        enqueuer = self._enqueuer
        if enqueuer is None and self._enqueue_from is not None:
            scope, router, parent, blocking = self._enqueue_from
            enqueuer = self._enqueuer = scope(router, self.step, parent, self.trace_id, blocking, self._loop)
        return enqueuer

    @enqueuer.setter
    def enqueuer(self, enqueuer: Callable[[Mapping[str, Any]], Any] | None) -> None:
        self._enqueuer = enqueuer
        self._enqueue_from = None  # what is set replaces the scope the app would have made

    @property
    def trigger(self) -> TriggerInfo:
        """Which trigger started this run. The runtime hands the fields of a delivery's ``TriggerInfo``
        (:data:`~motia.runtime.types.TriggerFields`) and it is built here, on first read: most handlers never
        read it, and building a frozen dataclass was about a tenth of a delivery's instructions (issue 15)."""
        trigger = self._trigger
        if isinstance(trigger, tuple):
            trigger = self._trigger = TriggerInfo(*trigger)
        return trigger

    @trigger.setter
    def trigger(self, trigger: TriggerInfo) -> None:
        self._trigger = trigger

    def _trigger_type(self) -> str:
        """``self.trigger.type`` without building the ``TriggerInfo``."""
        trigger = self._trigger
        kind: str = trigger[0] if isinstance(trigger, tuple) else trigger.type
        return kind

    @property
    def streams(self) -> Streams:
        """The app's streams: ``ctx.streams.todo`` / ``ctx.streams["todo"]`` (awaited in ``async def``
        handlers, blocking in ``def`` ones). Without an app: the streams ``Stream`` objects use now."""
        if self._streams is None:
            self._streams = Streams(current_streams())
        return self._streams

    def enqueue(self, event: Mapping[str, Any]) -> Any:
        """Send ``{"topic": ..., "data": ...}`` to every step with a ``queue(topic)`` trigger, durably.

        ``await ctx.enqueue(...)`` in ``async def`` handlers; in ``def`` handlers it blocks and returns
        ``None``. Raises :class:`~motia.runtime.queue.EnqueueError` (nothing sent) when the data is not
        valid for a subscriber. A topic missing from the step's ``enqueues`` is sent with a warning, and a
        message no step subscribes to is kept as a dead letter (both refused under strict topics): see
        :mod:`motia.runtime.queue`.
        """
        enqueuer = self.enqueuer
        if enqueuer is None:
            topic = event.get("topic") if isinstance(event, Mapping) else None
            raise MotiaError(
                f"ctx.enqueue(topic={topic!r}) needs an app: this ctx was built without one "
                "(in tests, motia.testing.make_context(enqueues=EnqueueRecorder()) records messages)"
            )
        return enqueuer(event)

    emit = enqueue  # Motia 0.x name

    def is_api(self) -> bool:
        return self._trigger_type() == "http"

    def is_cron(self) -> bool:
        return self._trigger_type() == "cron"

    def is_queue(self) -> bool:
        return self._trigger_type() == "queue"

    def is_state(self) -> bool:
        return self._trigger_type() == "state"

    def is_stream(self) -> bool:
        return self._trigger_type() == "stream"

    def get_data(self) -> Any:
        """The data of this run whatever its trigger: an HTTP request's body, ``None`` for a cron run, the
        input itself for queue, state and stream runs (motia-py 1.0's ``get_data``)."""
        if self.is_cron():
            return None
        value = self.input_value
        if isinstance(value, ApiRequest):
            return value.body
        request = getattr(value, "request", None)  # a streaming handler's (request, response) arguments
        if isinstance(request, ApiRequest):
            return request.body
        return value

    def match(self, handlers: Mapping[str, Callable[..., Any] | None]) -> Any:
        """Run the handler of ``handlers`` for this run's trigger type and return what it returns.

        Keys: ``http`` (or ``api``), ``queue``, ``cron``, ``state``, ``stream`` and ``default`` (any type
        without its own key). Each handler is ``def`` or ``async def``; it gets the input
        (:attr:`input_value`), except a ``cron`` handler, which gets nothing. In ``async def`` handlers
        ``await ctx.match(...)``; in ``def`` handlers (worker threads) it blocks and returns the result, an
        ``async`` branch running on the app's event loop as ``ctx.enqueue`` does. Raises
        :class:`~motia.exceptions.MatchError` for a key that is not one of these, or when no handler fits
        and there is no ``default``.
        """
        handler, args = self._matched(handlers)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a def handler in a worker thread (or plain sync code): block
            result = handler(*args)
            return self._wait(result) if inspect.isawaitable(result) else result
        return _called(handler, args)

    def _matched(self, handlers: Mapping[str, Callable[..., Any] | None]) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if not isinstance(handlers, Mapping):
            raise MatchError(f"ctx.match takes a dict of handlers by trigger type, not {type(handlers).__name__}")
        unknown = sorted(str(key) for key in handlers if key not in _MATCH_KEYS)
        if unknown:
            raise MatchError(
                f"ctx.match got unknown key(s) {', '.join(map(repr, unknown))}: expected {', '.join(_MATCH_KEYS)}"
            )
        for key, handler in handlers.items():
            if handler is not None and not callable(handler):
                raise MatchError(f"ctx.match: the {key!r} handler must be a function, not {type(handler).__name__}")
        kind = self._trigger_type()
        for key in _KEYS_OF.get(kind, (kind,)):
            handler = handlers.get(key)
            if handler is not None:
                return handler, (() if kind == "cron" else (self.input_value,))
        default = handlers.get("default")
        if default is not None:
            return default, (self.input_value,)
        given = ", ".join(repr(key) for key, value in handlers.items() if value is not None) or "none"
        raise MatchError(f"ctx.match: no handler for trigger type {kind!r} and no 'default' (handlers given: {given})")

    def _wait(self, awaitable: Awaitable[Any]) -> Any:
        """The result of ``awaitable``, from a thread without a running loop: on the app's loop when there
        is one (where the store and its connections live), else on a fresh loop (a ctx without an app)."""
        loop = self._loop
        if loop is not None and loop.is_running():
            return asyncio.run_coroutine_threadsafe(_awaited(awaitable), loop).result()
        return asyncio.run(_awaited(awaitable))

    def __repr__(self) -> str:
        return f"FlowContext(step={self.step!r}, trace_id={self.trace_id!r}, trigger={self.trigger!r})"


Context = FlowContext

#: The keys of ``ctx.match``, and the keys that fit each trigger type, first found wins.
_MATCH_KEYS = ("http", "api", "queue", "cron", "state", "stream", "default")
_KEYS_OF = {"http": ("http", "api")}


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def _called(handler: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    result = handler(*args)
    return (await result) if inspect.isawaitable(result) else result
