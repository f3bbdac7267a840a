"""The SQL of a delivery on SQLite (issue 15, session 26): payloads bound as ``bytearray`` are still stored as
BLOBs and read back as the same bytes, and every connection deletes with ``secure_delete=FAST``."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import orjson

from motia import StateManager
from motia.state.backends.types import NewDelivery, Subscription


async def test_payloads_are_stored_as_blobs_and_claimed_as_the_same_bytes(sqlite_url: str, sqlite_path: Path) -> None:
    # Given a subscribed scope and a queue delivery with a payload of every byte value
    queued = bytes(range(256))
    async with StateManager.from_url(sqlite_url) as sm:
        await sm.backend.enable_events()
        await sm.backend.dispatch_events([Subscription("watcher", "s")])
        # When a group of writes makes state deliveries itself, a lone write's is dispatched from the outbox,
        # and a queue delivery is enqueued
        async with sm.transaction() as tx:
            await tx.set("s", "a", {"n": 1})
            await tx.set("s", "b", {"n": 2})
        await sm.set("s", "c", {"n": 3})
        assert await sm.backend.dispatch_events([Subscription("watcher", "s")]) == 1
        assert await sm.backend.enqueue([NewDelivery("q1", "worker", "queue", queued)]) == 1
        # Then every payload is a BLOB in the file
        with contextlib.closing(sqlite3.connect(sqlite_path)) as connection:
            kinds = connection.execute("SELECT DISTINCT typeof(payload) FROM motia_deliveries").fetchall()
        assert kinds == [("blob",)]
        # And a claim hands back bytes, the state payloads embedding the values written
        states = await sm.backend.claim(["watcher"], owner="t", limit=10, lease=60)
        assert {orjson.loads(d.payload)["item_id"]: orjson.loads(d.payload)["new_value"] for d in states} == {
            "a": {"n": 1},
            "b": {"n": 2},
            "c": {"n": 3},
        }
        assert all(type(d.payload) is bytes for d in states)
        (job,) = await sm.backend.claim(["worker"], owner="t", limit=10, lease=60)
        assert job.payload == queued and type(job.payload) is bytes


async def test_connections_delete_with_secure_delete_fast(sqlite_url: str) -> None:
    async with StateManager.from_url(sqlite_url) as sm:
        await sm.set("s", "a", 1)  # opens the loop thread's connection
        connection = sm.backend._connection(inline=True)  # type: ignore[attr-defined]
        assert connection.execute("PRAGMA secure_delete").fetchone() == (2,)  # 2: FAST
        blocking = await asyncio.to_thread(sm.backend._connection, inline=False)  # type: ignore[attr-defined]
        assert await asyncio.to_thread(lambda: blocking.execute("PRAGMA secure_delete").fetchone()) == (2,)
