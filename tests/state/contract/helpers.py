"""Helpers shared by the contract suite: exact JSON forms, store snapshots, a populated store, an increment op."""

from __future__ import annotations

import json
from typing import Any

from motia import (
    StateManager,
)


def dumps(value: Any) -> str:
    """Exact JSON form: distinguishes 1 from 1.0 and True, and keeps dict key order."""
    return json.dumps(value, allow_nan=True)


async def snapshot(sm: StateManager) -> dict[str, list[tuple[str, str, int, float | None]]]:
    """Everything visible in the store, to compare before and after a call that must change nothing."""
    groups = await sm.list_groups()
    return {
        scope: [(e.key, dumps(e.value), e.version, e.expires_at) for e in await sm.items(scope)] for scope in groups
    }


async def populate(sm: StateManager) -> None:
    await sm.set("users", "u1", {"name": "Ann", "age": 30, "tags": ["a"]})
    await sm.set("users", "u2", {"name": "Bob", "n": 1}, ttl=100)
    await sm.update("users", "u2", [{"type": "increment", "path": "n", "value": 1}])
    await sm.set("other", "x", [1, 2, 3])


def increment(path: str | list[Any] = "n", value: Any = 1) -> dict[str, Any]:
    return {"type": "increment", "path": path, "value": value}
