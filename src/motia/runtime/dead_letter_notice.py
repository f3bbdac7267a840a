"""Telling people that a delivery became a dead letter: a warning log line, and the project's optional
``on_dead_letter`` hook (``motia_config.py``, or ``MotiaApp(on_dead_letter=...)``).

The hook gets one record, a ``dict`` (documented in docs/operations.md)::

    {"id", "step", "kind", "topic", "trace_id", "attempts", "error", "error_summary", "created_at",
     "failed_at", "payload"}

It may be a plain function (run on a worker thread, so it may block: send an e-mail, call a pager) or a
coroutine function (awaited on the loop). It runs after the dead letter is stored; one that raises, or is
not callable as documented, is logged and changes nothing: the worker goes on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from motia.runtime.dead_letters import error_summary
from motia.state import values as _values
from motia.state.backends.types import Delivery

__all__ = ["DeadLetterHook", "announce_dead_letter", "dead_letter_record"]

logger = logging.getLogger("motia.runtime")

#: ``on_dead_letter``: called with the record of each new dead letter; its return value is ignored.
DeadLetterHook = Callable[[dict[str, Any]], Awaitable[object] | object]


def dead_letter_record(delivery: Delivery, error: str, trace_id: str | None) -> dict[str, Any]:
    """What the hook gets for ``delivery``, dead-lettered with ``error`` (its last attempt's traceback)."""
    try:
        payload: Any = _values.decode(delivery.payload)
    except ValueError:
        payload = delivery.payload.decode("utf-8", "replace")
    topic = payload.get("topic") if delivery.kind == "queue" and isinstance(payload, dict) else None
    return {
        "id": delivery.id,
        "step": delivery.step,
        "kind": delivery.kind,
        "topic": topic if isinstance(topic, str) else None,
        "trace_id": trace_id,
        "attempts": delivery.attempts,
        "error": error,
        "error_summary": error_summary(error),
        "created_at": delivery.created_at,
        "failed_at": time.time(),
        "payload": payload,
    }


async def announce_dead_letter(
    delivery: Delivery, error: str, trace_id: str | None, hook: DeadLetterHook | None
) -> None:
    """Log that ``delivery`` is a dead letter now and call ``hook``; never raises (but for cancellation)."""
    logger.warning(
        "dead letter: step %r, delivery %s, after %d attempt(s): %s (trace %s); redrive with "
        "`motia deliveries redrive %s`",
        delivery.step,
        delivery.id,
        delivery.attempts,
        error_summary(error),
        trace_id or "-",
        delivery.id,
    )
    if hook is None:
        return
    try:
        record = dead_letter_record(delivery, error, trace_id)
        # A coroutine function is awaited here; anything else runs on a thread (it may block), and what it
        # returns is awaited if awaitable (an object whose ``__call__`` is ``async def``).
        result = hook(record) if inspect.iscoroutinefunction(hook) else await asyncio.to_thread(hook, record)
        if inspect.isawaitable(result):
            await result
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("on_dead_letter hook failed for delivery %s of step %r", delivery.id, delivery.step)
