"""Isolated stores for tests: a private in-memory one, or a SQLite file in a temporary directory of its own."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from motia.state.manager import StateManager

__all__ = ["memory_state", "temp_sqlite_state"]


def memory_state(**options: Any) -> StateManager:
    """A fresh, private in-memory store (``options`` as for ``StateManager.from_url``: ``clock=``...)."""
    return StateManager.from_url("memory://", **options)


@contextlib.asynccontextmanager
async def temp_sqlite_state(**options: Any) -> AsyncIterator[StateManager]:
    """``async with temp_sqlite_state() as state:``: a SQLite store in a new temporary directory, closed and
    deleted (with its WAL files) after the block; ``options`` as for ``StateManager.from_url`` (``clock=``...).

    The durable backend's own code paths (SQL, group commit, a connection per thread) without a file to
    clean up; under pytest, the plugin's ``motia_state`` fixture does the same in ``tmp_path``.
    """
    with tempfile.TemporaryDirectory(prefix="motia-test-") as directory:
        manager = StateManager.from_url(f"sqlite:///{Path(directory) / 'state.db'}", **options)
        try:
            yield manager
        finally:
            await manager.aclose()
