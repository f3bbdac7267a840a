"""``multi_trigger_step(config)``: one step, several triggers, one handler per trigger type.

motia-py 1.0's builder. Handlers are registered per type, chained (``.on_http(fn).on_queue(fn)``) or
as a dict (``.handlers({"http": fn, "queue": fn})``); ``.handlers()`` returns a plain :class:`Step`
whose handler dispatches on ``ctx.trigger.type``. As upstream, a cron handler is called with ``ctx``
only (``async def on_tick(ctx)``); the others with ``(input, ctx)`` (or ``(input)``). Handlers are
all ``async def`` or all ``def`` (a ``def`` step runs in a worker thread with the blocking
``ctx.state``), because one step has one kind of ``ctx``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from motia.exceptions import ConfigError
from motia.steps._signature import callable_name, handler_arity, is_async_callable
from motia.steps.config import StepConfig, parse_config
from motia.steps.definition import Step

__all__ = ["MultiTriggerStepBuilder", "multi_trigger_step"]

Handler = Callable[..., Any]

#: Handler keys and the trigger type each serves (``api`` is Motia's older name of ``http``).
_KINDS = {"http": "http", "api": "http", "queue": "queue", "cron": "cron", "state": "state", "stream": "stream"}


class MultiTriggerStepBuilder:
    """Collects one handler per trigger type; :meth:`handlers` finishes the step."""

    def __init__(self, config: StepConfig | dict[str, Any]) -> None:
        self.config = parse_config(config)
        self._handlers: dict[str, Handler] = {}

    def _on(self, key: str, handler: Handler) -> MultiTriggerStepBuilder:
        kind = _KINDS.get(key)
        if kind is None:
            raise ConfigError(
                f"step {self.config.name!r}: no trigger type {key!r} (expected one of {', '.join(_KINDS)})"
            )
        if not callable(handler):
            raise ConfigError(f"step {self.config.name!r}: the {key} handler must be callable, got {handler!r}")
        handler_arity(handler)  # a signature we cannot call fails here, at declaration
        self._handlers[kind] = handler
        return self

    def on_http(self, handler: Handler) -> MultiTriggerStepBuilder:
        """Handle HTTP requests: ``(request, ctx)``."""
        return self._on("http", handler)

    on_api = on_http

    def on_queue(self, handler: Handler) -> MultiTriggerStepBuilder:
        """Handle queue messages: ``(data, ctx)``."""
        return self._on("queue", handler)

    def on_cron(self, handler: Handler) -> MultiTriggerStepBuilder:
        """Handle cron ticks: ``(ctx)``."""
        return self._on("cron", handler)

    def on_state(self, handler: Handler) -> MultiTriggerStepBuilder:
        """Handle state changes: ``(change, ctx)``."""
        return self._on("state", handler)

    def on_stream(self, handler: Handler) -> MultiTriggerStepBuilder:
        """Handle stream changes: ``(change, ctx)``."""
        return self._on("stream", handler)

    def handlers(self, handlers: Mapping[str, Handler] | None = None) -> Step:
        """Add ``handlers`` (type → handler) to those registered with ``on_*`` and return the step."""
        for key, handler in (handlers or {}).items():
            self._on(key, handler)
        if not self._handlers:
            raise ConfigError(f"step {self.config.name!r}: multi_trigger_step(...) has no handler")
        kinds = {is_async_callable(h) for h in self._handlers.values()}
        if len(kinds) > 1:
            raise ConfigError(
                f"step {self.config.name!r}: mix of `async def` and `def` handlers; make them all one kind"
            )
        return Step(self.config, _dispatcher(self.config.name, dict(self._handlers), is_async=kinds.pop()))

    def __repr__(self) -> str:
        return f"MultiTriggerStepBuilder(name={self.config.name!r}, handlers={sorted(self._handlers)})"


def _arguments(kind: str, handler: Handler) -> Callable[[Any, Any], tuple[Any, ...]]:
    arity = handler_arity(handler)
    if kind == "cron" and arity == 1:
        return lambda input, ctx: (ctx,)
    return lambda input, ctx: (input, ctx)[:arity]


def _dispatcher(name: str, handlers: dict[str, Handler], *, is_async: bool) -> Handler:
    table = {kind: (handler, _arguments(kind, handler)) for kind, handler in handlers.items()}

    def pick(ctx: Any) -> tuple[Handler, Callable[[Any, Any], tuple[Any, ...]]]:
        kind = ctx.trigger.type
        if kind not in table:
            raise RuntimeError(f"step {name!r} has no handler for a {kind} trigger (has: {', '.join(table)})")
        return table[kind]

    if is_async:

        async def dispatch(input: Any, ctx: Any) -> Any:  # noqa: A002 - Motia's name
            handler, arguments = pick(ctx)
            return await handler(*arguments(input, ctx))

    else:

        def dispatch(input: Any, ctx: Any) -> Any:  # type: ignore[misc]  # noqa: A002
            handler, arguments = pick(ctx)
            return handler(*arguments(input, ctx))

    dispatch.__qualname__ = f"multi_trigger_step({name!r})[{', '.join(callable_name(h) for h in handlers.values())}]"
    return dispatch


def multi_trigger_step(config: StepConfig | dict[str, Any]) -> MultiTriggerStepBuilder:
    """Start a step with one handler per trigger type::

    default = (
        multi_trigger_step({"name": "orders", "triggers": [http("POST", "/orders"), queue("order.retry")]})
        .on_http(create_order)
        .on_queue(retry_order)
        .handlers()
    )
    """
    return MultiTriggerStepBuilder(config)
