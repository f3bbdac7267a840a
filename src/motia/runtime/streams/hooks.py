"""Calling user hooks of streams (``stream_authenticate``, ``can_access``, ``on_join``, ``on_leave``).

Hooks may be ``def`` or ``async def``. A ``def`` hook runs in a worker thread: it may block (read a file,
call a service, use the blocking state API, which waits on the app's loop and would deadlock if called on
it), and it never stalls every other socket of the process meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["call_hook", "is_async_hook"]


def is_async_hook(hook: Callable[..., Any]) -> bool:
    """Whether ``hook`` is an ``async def`` function (or an object whose ``__call__`` is)."""
    return inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(getattr(hook, "__call__", None))  # noqa: B004


async def call_hook(hook: Callable[..., Any], *args: Any) -> Any:
    """Call ``hook(*args)`` and return its result, awaited when it is awaitable."""
    if is_async_hook(hook):
        result = hook(*args)
    else:
        result = await asyncio.to_thread(functools.partial(hook, *args))
    if inspect.isawaitable(result):
        result = await result
    return result
