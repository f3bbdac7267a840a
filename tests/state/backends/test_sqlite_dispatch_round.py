"""A dispatch round of SQLite's outbox reads the subscriptions from the backend's copy while the ``triggers``
number it was read under holds (issue 15): a subscription another process registers or prunes meanwhile
changes the number, so the next round serves the subscriptions the file holds, never a stale copy."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from motia import StateManager
from motia.state.backends.sqlite import delivery
from motia.state.backends.sqlite.delivery import CLEAR_OUTBOX_AFTER
from motia.state.backends.sqlite.outbox import INSERT_CHUNK, insert_deliveries
from motia.state.backends.types import Subscription

WATCH = [Subscription("watcher", "s")]
#: The newest seq any delivery took (ids are ``state:{seq}:{step}``).
NEWEST_SEQ = "SELECT max(CAST(substr(id, 7, instr(substr(id, 7), ':') - 1) AS INTEGER)) FROM motia_deliveries"


async def claim_all(sm: StateManager, step: str) -> list[dict[str, Any]]:
    payloads: list[dict[str, Any]] = []
    while claimed := await sm.backend.claim([step], owner="t", limit=100, lease=60):
        payloads.extend(orjson.loads(d.payload) for d in claimed)
        await sm.backend.complete_many([d.id for d in claimed], owner="t")
    return payloads


async def lone_writes(sm: StateManager, count: int) -> None:
    """Events on, ``WATCH`` registered (direct mode), then ``count`` lone writes waiting in the outbox:
    ``k0..`` set to their index."""
    await sm.backend.enable_events()
    await sm.backend.dispatch_events(WATCH)
    for index in range(count):
        await sm.set("s", f"k{index}", index)


async def test_a_round_serves_a_subscription_another_process_registered_after_the_copy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    async with StateManager.from_url(url) as writer, StateManager.from_url(url) as other:
        # Given a writer whose copy of the subscriptions is loaded by its dispatch of a lone write
        await writer.backend.enable_events()
        await writer.backend.dispatch_events(WATCH)
        await writer.set("s", "a", 1)
        assert await writer.backend.dispatch_events(WATCH) == 1
        # When another process registers a second subscription, and the writer's next lone write is dispatched
        await other.backend.dispatch_events([Subscription("late", "s")])
        await writer.set("s", "b", 1)
        assert await writer.backend.dispatch_events(WATCH) == 1
        # Then that round delivered to the new subscription too (every registered one is served)
        assert [p["item_id"] for p in await claim_all(writer, "late")] == ["b"]
        assert [p["item_id"] for p in await claim_all(writer, "watcher")] == ["a", "b"]


async def test_rounds_after_registration_deliver_each_event_once_per_subscription(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    both = [*WATCH, Subscription("any", None, None)]
    async with StateManager.from_url(url) as sm:
        # Given two subscriptions registered (one to any scope), then rounds that find them in the copy
        await sm.backend.enable_events()
        await sm.backend.dispatch_events(both)
        for round_ in range(3):
            for index in range(4):
                await sm.set("s", f"k{index}", round_)
            await sm.set("__motia.internal", "x", round_)  # the runtime's own scope: no subscription to any scope
            assert await sm.backend.dispatch_events(both) == 5
        # Then each event reached each matching subscription once, in seq order, ids from their seqs
        for step in ("watcher", "any"):
            payloads = await claim_all(sm, step)
            assert [(p["item_id"], p["new_value"]) for p in payloads] == [
                (f"k{index}", round_) for round_ in range(3) for index in range(4)
            ]
            seqs = [p["seq"] for p in payloads]
            assert seqs == sorted(set(seqs))


async def test_a_round_of_many_events_inserts_every_delivery_once_in_seq_order(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'many.db'}"
    async with StateManager.from_url(url) as sm:
        # Given 45 lone writes waiting in the outbox (inserted in chunks of 32, 8, 4 and 1)
        await lone_writes(sm, 45)
        # When they are dispatched
        assert await sm.backend.dispatch_events(WATCH) == 45
        assert await sm.backend.dispatch_events(WATCH) == 0
        # Then each has one delivery, claimed in seq order, whose id is built from its seq
        claimed = await sm.backend.claim(["watcher"], owner="t", limit=100, lease=60)
    payloads = [orjson.loads(d.payload) for d in claimed]
    assert [p["new_value"] for p in payloads] == list(range(45))
    assert [d.id for d in claimed] == [f"state:{p['seq']}:watcher" for p in payloads]


def test_insert_deliveries_writes_each_row_once_in_order_and_ignores_known_ids(tmp_path: Path) -> None:
    path = tmp_path / "rows.db"

    async def create() -> None:
        async with StateManager.from_url(f"sqlite:///{path}"):
            pass

    asyncio.run(create())

    def row(index: int) -> tuple[object, ...]:
        return (f"state:{index}:s", "s", "state", bytearray(b"{}"), None, 1, 0.0, 0.0)

    with contextlib.closing(sqlite3.connect(path)) as connection:
        total = 0
        for count in (*range(0, 2 * INSERT_CHUNK + 4), 100):  # every remainder, and more than one full chunk
            insert_deliveries(connection, [row(total + index) for index in range(count)])
            total += count
        # ids already there are ignored, the new ones after them added
        insert_deliveries(connection, [row(index) for index in range(total - 5, total + 3)])
        ids = [found for (found,) in connection.execute("SELECT id FROM motia_deliveries ORDER BY seq")]
    assert ids == [f"state:{index}:s" for index in range(total + 3)]


async def test_a_round_that_moved_a_full_page_leaves_the_rest_to_the_next_round(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'page.db'}"
    async with StateManager.from_url(url) as sm:
        # Given five lone writes waiting in the outbox of a store in direct mode
        await lone_writes(sm, 5)
        # When rounds of three are dispatched one after another (the runtime's loop: until a round is not full)
        # Then the second moves the two left at once, though no write came between them
        assert await sm.backend.dispatch_events(WATCH, limit=3) == 3
        assert await sm.backend.dispatch_events(WATCH, limit=3) == 2
        assert await sm.backend.dispatch_events(WATCH, limit=3) == 0
        assert await sm.backend.pending("watcher") == 5


def scalar(path: Path, sql: str) -> Any:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return connection.execute(sql).fetchone()[0]


async def test_consumed_rows_go_together_once_they_span_the_bound_and_seqs_keep_increasing(tmp_path: Path) -> None:
    path = tmp_path / "drain.db"
    sizes = []
    async with StateManager.from_url(f"sqlite:///{path}") as sm:
        await sm.backend.enable_events()
        await sm.backend.dispatch_events(WATCH)
        for round_ in range(30):
            # Given lone writes waiting in the outbox, between groups that deliver directly
            for index in range(40):
                await sm.set("s", f"k{index}", round_)
            # When a round moves them all
            assert await sm.backend.dispatch_events(WATCH) == 40
            sizes.append(scalar(path, "SELECT count(*) FROM motia_state_events"))
            if sizes[-1] == 0:  # emptied: the seq counter is at the newest event
                newest = scalar(path, NEWEST_SEQ)
                assert scalar(path, "SELECT CAST(value AS INTEGER) FROM motia_meta WHERE name = 'event_seq'") == newest
            async with sm.transaction() as tx:
                await tx.set("s", "k0", {"group": round_})
                await tx.set("s", "k1", {"group": round_})
        payloads = await claim_all(sm, "watcher")
    # Then consumed rows stayed a while (no delete every round), went together, and never piled up past the bound
    assert sizes[:3] == [40, 80, 120] and 0 in sizes and max(sizes) <= CLEAR_OUTBOX_AFTER + 40
    # And every event has its own seq, increasing in commit order (no delivery id reused, none lost)
    seqs = [p["seq"] for p in payloads]
    assert len(payloads) == 30 * 42 and len(set(seqs)) == len(seqs)
    for key in ("k0", "k1", "k2"):
        mine = [p["seq"] for p in payloads if p["item_id"] == key]
        assert mine == sorted(mine)
    assert [p["new_value"] for p in payloads if p["item_id"] == "k0"] == [
        value for round_ in range(30) for value in (round_, {"group": round_})
    ]


async def test_a_full_page_keeps_the_newest_consumed_row_and_the_events_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "CLEAR_OUTBOX_AFTER", 2)  # consumed rows go at once
    path = tmp_path / "full.db"
    async with StateManager.from_url(f"sqlite:///{path}") as sm:
        await lone_writes(sm, 5)
        # When a round moves a full page of three
        assert await sm.backend.dispatch_events(WATCH, limit=3) == 3
        # Then the newest of them stays, at the cursor, before the two still waiting
        cursor = scalar(path, "SELECT CAST(value AS INTEGER) FROM motia_meta WHERE name = 'outbox_cursor'")
        with contextlib.closing(sqlite3.connect(path)) as connection:
            seqs = [seq for (seq,) in connection.execute("SELECT seq FROM motia_state_events ORDER BY seq")]
        assert len(seqs) == 3 and seqs[0] == cursor
        # And the round that drains them empties the table, the counter at the newest
        assert await sm.backend.dispatch_events(WATCH, limit=3) == 2
        assert scalar(path, "SELECT count(*) FROM motia_state_events") == 0
        assert scalar(path, "SELECT CAST(value AS INTEGER) FROM motia_meta WHERE name = 'event_seq'") == seqs[-1]
        await sm.set("s", "k0", "after")
        assert await sm.backend.dispatch_events(WATCH) == 1
        payloads = await claim_all(sm, "watcher")
    assert [p["seq"] for p in payloads] == [*range(seqs[0] - 2, seqs[-1] + 1), seqs[-1] + 1]


async def test_a_round_of_big_values_deletes_the_consumed_rows_at_once(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    async with StateManager.from_url(f"sqlite:///{path}") as sm:
        await sm.backend.enable_events()
        await sm.backend.dispatch_events(WATCH)
        # Given rounds of small values, whose consumed rows stay
        for index in range(3):
            await sm.set("s", f"small{index}", index)
        assert await sm.backend.dispatch_events(WATCH) == 3
        assert scalar(path, "SELECT count(*) FROM motia_state_events") == 3
        # When a round moves events whose values are big (past CLEAR_OUTBOX_EVENT_BYTES each on average)
        await sm.set("s", "big", "x" * (3 * delivery.CLEAR_OUTBOX_EVENT_BYTES))  # the two average past it
        await sm.set("s", "small0", "again")
        assert await sm.backend.dispatch_events(WATCH) == 2
        # Then every consumed row is gone with it (big values are never kept past their round)
        assert scalar(path, "SELECT count(*) FROM motia_state_events") == 0
        # And the events were all delivered, in order
        payloads = await claim_all(sm, "watcher")
    assert [p["item_id"] for p in payloads] == ["small0", "small1", "small2", "big", "small0"]
