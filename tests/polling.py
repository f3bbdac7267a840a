"""One bounded poll for conditions that have no event to await (another process's writes, log records,
a store changed by a background timer)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

import pytest


async def eventually(
    predicate: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition", interval: float = 0.02
) -> Any:
    """Call ``predicate`` (sync, or returning an awaitable) until its result is truthy and return that
    result; fail the test, naming ``what``, after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {timeout}s")
        await asyncio.sleep(interval)
