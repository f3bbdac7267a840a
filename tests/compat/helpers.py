"""Waiting on a store, for the compatibility tests' cron runs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


async def eventually(read: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """Poll ``read()`` until it returns something truthy; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await read()
        if value:
            return value
        assert loop.time() < deadline, "nothing came before the deadline"
        await asyncio.sleep(0.05)
