"""A lone SQLite write while events are off commits by compare-and-set, without a transaction (issue 15):
it must write only over the row it read, and never skip an event another process has switched on."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import orjson

from motia import StateManager
from motia.state.backends.base import Subscription
from motia.state.backends.sqlite import SQLiteBackend
from motia.state.backends.sqlite.keyvalue import FALLBACK, _cas_set, _compare_and_set
from motia.state.backends.types import Record


async def test_a_write_after_another_process_enabled_events_records_its_event(sqlite_url: str) -> None:
    # Given a store written by one process while events were off (it knows them to be off)
    async with StateManager.from_url(sqlite_url) as writer, StateManager.from_url(sqlite_url) as app:
        await writer.set("s", "k", 1)
        assert isinstance(writer.backend, SQLiteBackend) and not writer.backend._events_enabled
        # When another process (a second store on the file) switches events on, and the first writes again
        await app.backend.enable_events()
        await writer.set("s", "k", 2)
        await writer.update("s", "k", [{"type": "increment", "path": "", "value": 1}])
        # Then both writes recorded their events: the compare-and-set saw the flag and refused
        assert await app.backend.dispatch_events([Subscription("watcher")]) == 2
        claimed = await app.backend.claim(["watcher"], owner="w", limit=10, lease=60)
        payloads = [orjson.loads(d.payload) for d in claimed]
        assert [(p["old_value"], p["new_value"]) for p in payloads] == [(1, 2)]  # one at a time per key
        assert await writer.get("s", "k") == 3


def test_compare_and_set_writes_only_over_the_row_it_read(sqlite_path: Path, sqlite_url: str) -> None:
    async def setup() -> None:
        async with StateManager.from_url(sqlite_url) as state:
            await state.set("s", "k", {"n": 1})
            await state.set("s", "other", {"n": 1})

    asyncio.run(setup())
    connection = sqlite3.connect(sqlite_path, isolation_level=None)
    try:
        row = connection.execute("SELECT value, version, expires_at FROM motia_state WHERE key = 'k'").fetchone()
        # Given the row changed after it was read (another writer: same version, other bytes; then absent)
        connection.execute("UPDATE motia_state SET value = ? WHERE key = 'k'", (b'{"n":9}',))
        # Then the compare-and-set writes nothing, over a changed row or over a key that appeared
        assert not _compare_and_set(connection, "s", "k", row, Record("k", b'{"n":2}', 2, None))
        assert not _compare_and_set(connection, "s", "other", None, Record("other", b'{"n":2}', 1, None))
        assert connection.execute("SELECT value, version FROM motia_state WHERE key = 'k'").fetchone() == (
            b'{"n":9}',
            1,
        )
        # And over the row as read, it writes
        current = connection.execute("SELECT value, version, expires_at FROM motia_state WHERE key = 'k'").fetchone()
        assert _compare_and_set(connection, "s", "k", current, Record("k", b'{"n":2}', 2, None))
        assert connection.execute("SELECT value, version FROM motia_state WHERE key = 'k'").fetchone() == (
            b'{"n":2}',
            2,
        )
    finally:
        connection.close()


async def test_a_lone_write_that_lost_a_race_runs_in_a_transaction_and_reports_the_real_old_value(
    sqlite_url: str, sqlite_path: Path
) -> None:
    # Given a lone set whose row another process changes between its read and its write
    async with StateManager.from_url(sqlite_url) as state:
        await state.set("s", "k", "first")
        backend = state.backend
        assert isinstance(backend, SQLiteBackend)
        other = sqlite3.connect(sqlite_path, isolation_level=None)
        raced = 0

        class Racing:
            """The inline connection, with another writer slipping in after the read of ``k``."""

            def __init__(self, inner: sqlite3.Connection) -> None:
                self.inner = inner

            def execute(self, sql: str, parameters: tuple[object, ...] = ()) -> sqlite3.Cursor:
                nonlocal raced
                cursor = self.inner.execute(sql, parameters)
                if sql.startswith("SELECT value, version") and raced == 0:
                    raced += 1
                    other.execute("UPDATE motia_state SET value = ?, version = 5 WHERE key = 'k'", (b'"race"',))
                return cursor

        try:
            outcome = _cas_set(Racing(backend._connection(inline=True)), 0.0, "s", "k", b'"mine"', None, None)  # type: ignore[arg-type]
        finally:
            other.close()
        # Then the compare-and-set declined, and the write through the store sees the racer's row
        assert outcome is FALLBACK
        result = await state.set("s", "k", "mine")
        assert (result.old_value, result.version) == ("race", 6)
