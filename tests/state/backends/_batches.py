"""Helpers of the SQLite batch tests (plain batches, recorded batches): calls group committed together, and the
rows a file holds."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any


async def together(calls: list[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run the calls as tasks started in one loop iteration (so they are group committed); each outcome is
    the result as a plain tuple, or the error's type and message."""

    async def outcome(call: Callable[[], Awaitable[Any]]) -> Any:
        try:
            result = await call()
        except Exception as exc:  # the errors are compared, path against path
            return type(exc).__name__, str(exc)
        return result.old_value, result.new_value, result.version

    return list(await asyncio.gather(*(outcome(call) for call in calls)))


async def deferred(write: Callable[..., Awaitable[Any]], *args: Any, **options: Any) -> Any:
    """Call ``write`` once the task running this starts. The SQLite backend's ``set`` and ``update`` start their
    write at the call (they hand back a future, not a coroutine): calls made one after another in the test's own
    task would each commit alone, where calls made in tasks started together are group committed."""
    return await write(*args, **options)


def rows(path: Path, sql: str) -> list[Any]:
    """The rows ``sql`` selects from the file at ``path``, read by a connection of its own."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def stored_rows(path: Path) -> list[Any]:
    """Every row of ``motia_state``."""
    return rows(path, "SELECT scope, key, value, version, expires_at FROM motia_state ORDER BY scope, key")
