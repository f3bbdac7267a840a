"""Stopping background tasks: one rule for every loop the runtime runs."""

from __future__ import annotations

import asyncio
import logging

__all__ = ["cancel_and_wait"]

logger = logging.getLogger("motia.runtime")


async def cancel_and_wait(task: asyncio.Task[None] | None, what: str) -> None:
    """Cancel ``task`` and wait for it to end. An error it had died of is logged, never raised, so a
    shutdown that stops several tasks always goes on to the next one (and to closing the store)."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:
        logger.exception("%s had failed", what)
