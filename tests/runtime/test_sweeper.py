"""The app removes expired keys from storage in the background, even when nothing writes."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from motia.runtime.app import MotiaApp
from motia.state.manager import StateManager


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def stored_rows(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute("SELECT count(*) FROM motia_state").fetchone()[0])


async def test_expired_keys_are_swept_without_writes(tmp_path: Path) -> None:
    # Given a store holding one key with a TTL and one permanent key
    path = tmp_path / "state.db"
    clock = Clock()
    state = StateManager.from_url(f"sqlite:///{path}", clock=clock)
    await state.set("sessions", "short", {"n": 1}, ttl=5)
    await state.set("sessions", "forever", {"n": 2})
    app = MotiaApp([], state=state, cron=False, sweep_interval=0.01)
    await app.startup()
    try:
        # When the TTL passes and nothing writes
        clock.now += 10
        assert await state.get("sessions", "short") is None  # invisible at once
        deadline = time.monotonic() + 10
        while stored_rows(path) != 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # bounded poll: the sweep runs on its own timer
        # Then the expired row is gone from the file and the permanent one stays
        assert stored_rows(path) == 1
        assert await state.get("sessions", "forever") == {"n": 2}
    finally:
        await app.shutdown()
        await state.aclose()
