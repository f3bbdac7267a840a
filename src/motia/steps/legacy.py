"""Motia 0.x step configs: ``{"type": "api"|"event"|"cron"|"noop", ...}`` read as today's steps.

0.x declared one trigger per step through its ``type`` and keys beside it; this module translates such a
config, when a step is declared, into the same ``StepConfig`` a 1.0 config gives:

- ``api``: ``path``, ``method`` (default ``GET``), ``bodySchema``, ``queryParams``, ``middleware``,
  ``responseSchema`` → one ``http(...)`` trigger.
- ``event``: each topic of ``subscribes`` → a ``queue(topic, input=...)`` trigger; ``infrastructure.queue``
  (``type``, ``maxRetries``, ``visibilityTimeout``, ``delaySeconds``...) → its ``config``, checked as any
  queue config (an unknown key is reported); ``infrastructure.handler`` (ram, cpu, timeout) is ignored.
- ``cron``: ``cron`` → a ``cron(...)`` trigger; a handler taking one argument gets ``context``, as in 0.x.
- ``noop``: no trigger (a node of the flow diagram).
- ``emits`` → ``enqueues``; ``virtualEmits``/``virtualSubscribes`` are ignored, as every ``virtual*`` key.

Any other key is left in place, so a typo is still reported as an unknown key.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from motia.exceptions import ConfigError
from motia.steps._signature import handler_arity, is_async_callable
from motia.steps.triggers import Trigger, cron, http, queue

__all__ = ["V0_TYPES", "adapt_v0", "is_v0_config", "translate_v0"]

V0_TYPES = ("api", "event", "cron", "noop")

Handler = Callable[..., Any]


def is_v0_config(config: object) -> bool:
    """``True`` for a 0.x config: a dict with a ``type`` and no ``triggers``."""
    return isinstance(config, dict) and "type" in config and "triggers" not in config


def translate_v0(config: dict[str, Any]) -> dict[str, Any]:
    """The 1.0 form (``triggers``, ``enqueues``) of the 0.x ``config``; raises ``ConfigError`` when wrong."""
    rest = dict(config)
    kind = rest.pop("type")
    name = rest.get("name")
    label = f"step {name!r}" if isinstance(name, str) else "step"
    if kind not in V0_TYPES:
        raise ConfigError(f"invalid config for {label}: type {kind!r} is not one of {', '.join(V0_TYPES)}")
    triggers: list[Trigger] = []
    try:
        if kind == "api":
            if "path" not in rest:
                raise ConfigError("an api step needs a 'path'")
            triggers.append(
                http(
                    rest.pop("method", "GET"),
                    rest.pop("path"),
                    body_schema=_pop(rest, "bodySchema", "body_schema"),
                    query_params=_pop(rest, "queryParams", "query_params"),
                    middleware=rest.pop("middleware", None),
                    response_schema=_pop(rest, "responseSchema", "response_schema"),
                )
            )
        elif kind == "event":
            topics = rest.pop("subscribes", None)
            if isinstance(topics, str):
                topics = [topics]
            if not isinstance(topics, list | tuple) or not topics:
                raise ConfigError("an event step needs 'subscribes': a list of topics")
            schema = rest.pop("input", None)
            options = _queue_options(rest.pop("infrastructure", None))
            triggers.extend(queue(topic, input=schema, config=options) for topic in topics)
        elif kind == "cron":
            if "cron" not in rest:
                raise ConfigError("a cron step needs a 'cron' expression")
            triggers.append(cron(rest.pop("cron")))
        else:
            rest.pop("infrastructure", None)
    except ConfigError as exc:
        raise ConfigError(f"invalid config for {label} (Motia 0.x {kind} step): {exc}") from None
    emits = rest.pop("emits", None)
    if emits is not None:
        rest["enqueues"] = emits
    rest["triggers"] = triggers
    return rest


def adapt_v0(config: Any, handler: Handler) -> tuple[Any, Handler]:
    """``(config, handler)`` ready for ``Step``: a 0.x config translated, and a 0.x cron handler
    ``handler(context)`` wrapped to receive the context where today's handlers receive their input."""
    if not is_v0_config(config):
        return config, handler
    if config.get("type") == "cron" and callable(handler) and handler_arity(handler) == 1:
        handler = _context_only(handler)
    return translate_v0(config), handler


def _pop(options: dict[str, Any], *names: str) -> Any:
    found = None
    for name in names:
        value = options.pop(name, None)
        found = value if value is not None else found
    return found


def _queue_options(infrastructure: Any) -> dict[str, Any] | None:
    if not isinstance(infrastructure, dict) or infrastructure.get("queue") is None:
        return None
    options = infrastructure["queue"]
    if not isinstance(options, dict):
        raise ConfigError(f"infrastructure.queue must be a dict, got {type(options).__name__}")
    return dict(options)


def _context_only(handler: Handler) -> Handler:
    """``handler(ctx)`` as an ``(input, ctx)`` handler of the same kind (``async def`` or ``def``)."""
    if is_async_callable(handler):

        async def run(input: Any, ctx: Any) -> Any:  # noqa: A002 - Motia's name
            return await handler(ctx)

    else:

        def run(input: Any, ctx: Any) -> Any:  # type: ignore[misc]  # noqa: A002
            return handler(ctx)

    # The name and docs of the user's function, but not its signature (no __wrapped__).
    functools.update_wrapper(run, handler)
    delattr(run, "__wrapped__")
    return run
