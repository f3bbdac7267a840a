"""SQLite makes state-trigger deliveries in the write's own transaction once subscriptions are registered
(issue 15), for a transaction recording a group of events: no outbox row, no dispatch round. The outbox
stays for a lone event, for events written while no subscription is registered (the first dispatch delivers
them before writes go direct) and while events wait there."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import orjson

from motia import StateManager
from motia.state.backends.types import Subscription
from motia.state.values import INTERNAL_SCOPE_PREFIX

WATCH = [Subscription("watcher", "s")]
INTERNAL = f"{INTERNAL_SCOPE_PREFIX}test"


def rows(path: Path, sql: str) -> list[Any]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return connection.execute(sql).fetchall()


def outbox(path: Path) -> int:
    cursor = rows(
        path, "SELECT coalesce((SELECT CAST(value AS INTEGER) FROM motia_meta WHERE name = 'outbox_cursor'), 0)"
    )
    return len(rows(path, f"SELECT seq FROM motia_state_events WHERE seq > {cursor[0][0]}"))


async def set_two(sm: StateManager, scope: str, first: tuple[str, Any], second: tuple[str, Any]) -> None:
    """Two writes in one transaction: a group of events, which makes its deliveries itself."""
    async with sm.transaction() as tx:
        await tx.set(scope, *first)
        await tx.set(scope, *second)


def assert_seqs(payloads: list[dict[str, Any]], count: int) -> None:
    """``count`` events with distinct seqs, increasing along each key's commit order."""
    assert len({p["seq"] for p in payloads}) == len(payloads) == count
    for key in {p["item_id"] for p in payloads}:
        seqs = [p["seq"] for p in payloads if p["item_id"] == key]
        assert seqs == sorted(seqs)


async def claim_all(sm: StateManager, step: str = "watcher") -> list[dict[str, Any]]:
    """Claim and complete every delivery of ``step``, in per-key order, oldest first."""
    payloads: list[dict[str, Any]] = []
    while claimed := await sm.backend.claim([step], owner="t", limit=100, lease=60):
        payloads.extend(orjson.loads(d.payload) for d in claimed)
        await sm.backend.complete_many([d.id for d in claimed], owner="t")
    return payloads


async def test_a_group_of_subscribed_writes_makes_its_deliveries_in_its_own_transaction(
    sqlite_url: str, sqlite_path: Path
) -> None:
    async with StateManager.from_url(sqlite_url) as sm:
        # Given a registered subscription
        await sm.backend.enable_events()
        await sm.backend.dispatch_events(WATCH)
        # When transactions of two writes happen (one of them to a scope nobody subscribes to)
        await set_two(sm, "s", ("k", {"n": 1}), ("j", 1))
        await set_two(sm, "s", ("k", {"n": 2}), ("j", 2))
        async with sm.transaction() as tx:
            await tx.set("other", "k", 1)
            await tx.set("other", "j", 1)
        # Then their deliveries are there before any dispatch, and no event went to the outbox
        assert outbox(sqlite_path) == 0
        assert await sm.backend.pending("watcher") == 4
        assert await sm.backend.dispatch_events(WATCH) == 0
        payloads = await claim_all(sm)
    by_key = [(p["item_id"], p["event_type"], p["old_value"], p["new_value"]) for p in payloads]
    assert by_key == [
        ("k", "created", None, {"n": 1}),
        ("j", "created", None, 1),
        ("k", "updated", {"n": 1}, {"n": 2}),
        ("j", "updated", 1, 2),
    ]
    assert_seqs(payloads, 4)
    assert set(payloads[0]) == {
        "type",
        "event_type",
        "group_id",
        "item_id",
        "old_value",
        "new_value",
        "version",
        "timestamp",
        "seq",
    }  # the payload the outbox path makes (no trace: none was current)


async def test_a_lone_write_goes_through_the_outbox_and_keeps_the_order_of_its_key(
    sqlite_url: str, sqlite_path: Path
) -> None:
    async with StateManager.from_url(sqlite_url) as sm:
        await sm.backend.enable_events()
        await sm.backend.dispatch_events(WATCH)
        # When a lone write of k waits in the outbox and a group then writes k again
        await sm.set("s", "k", 1)
        assert outbox(sqlite_path) == 1
        await set_two(sm, "s", ("k", 2), ("j", 2))
        # Then the group waited behind it in the outbox too, and the dispatch delivers all in order
        assert outbox(sqlite_path) == 3
        assert await sm.backend.dispatch_events(WATCH) == 3
        await set_two(sm, "s", ("k", 3), ("j", 3))  # drained: direct again
        assert outbox(sqlite_path) == 0
        payloads = await claim_all(sm)
    assert [(p["item_id"], p["new_value"]) for p in payloads if p["item_id"] == "k"] == [("k", 1), ("k", 2), ("k", 3)]
    assert_seqs(payloads, 5)


async def test_the_payload_is_the_one_the_outbox_path_makes(sqlite_url: str, tmp_path: Path) -> None:
    # Given one store dispatching from its outbox and one writing deliveries directly
    payloads = []
    for name, direct in (("outbox.db", False), ("direct.db", True)):
        async with StateManager.from_url(f"sqlite:///{tmp_path / name}") as sm:
            await sm.backend.enable_events()
            if direct:
                await sm.backend.dispatch_events(WATCH)
            await set_two(sm, "s", ("k", {"n": 1}), ("j", [1]))
            await set_two(sm, "s", ("k", {"n": 2}), ("j", None))
            async with sm.transaction() as tx:
                await tx.delete("s", "k")
                await tx.delete("s", "j")
            assert outbox(tmp_path / name) == (0 if direct else 6)
            await sm.backend.dispatch_events(WATCH)
            payloads.append(await claim_all(sm))

    # Then they deliver the same payloads (the seqs and times aside)
    def same(payload: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in payload.items() if k not in ("seq", "timestamp")}

    assert [same(p) for p in payloads[0]] == [same(p) for p in payloads[1]]
    assert [p["event_type"] for p in payloads[1]] == ["created", "created", "updated", "updated", "deleted", "deleted"]


async def test_a_subscription_another_process_registers_reaches_the_next_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    async with StateManager.from_url(url) as writer, StateManager.from_url(url) as other:
        # Given a writer that has made direct deliveries (its copy of the subscriptions is loaded)
        await writer.backend.enable_events()
        await writer.backend.dispatch_events(WATCH)
        await set_two(writer, "s", ("a", 1), ("b", 1))
        # When another connection registers a second subscription between two writes
        await other.backend.dispatch_events([Subscription("late", "s")])
        await set_two(writer, "s", ("c", 1), ("d", 1))
        # Then the writer's next write delivers to it, without any dispatch of its own
        assert outbox(tmp_path / "shared.db") == 0
        assert [p["item_id"] for p in await claim_all(writer, "late")] == ["c", "d"]
        assert [p["item_id"] for p in await claim_all(writer)] == ["a", "b", "c", "d"]


async def test_events_before_any_subscription_wait_in_the_outbox_and_keep_their_order(
    sqlite_url: str, sqlite_path: Path
) -> None:
    async with StateManager.from_url(sqlite_url) as sm:
        # Given events on and three writes of one key before any subscription is registered
        await sm.backend.enable_events()
        for n in (1, 2, 3):
            await sm.set("s", "k", n)
        assert outbox(sqlite_path) == 3
        # When a dispatch registers a subscription but moves only part of the outbox
        assert await sm.backend.dispatch_events(WATCH, limit=2) == 2
        # Then groups of writes still go to the outbox (behind what waits there), until a dispatch drains it
        await set_two(sm, "s", ("k", 4), ("j", 4))
        assert outbox(sqlite_path) == 3
        assert await sm.backend.dispatch_events(WATCH) == 3
        await set_two(sm, "s", ("k", 5), ("j", 5))
        assert outbox(sqlite_path) == 0
        payloads = await claim_all(sm)
    assert [p["new_value"] for p in payloads if p["item_id"] == "k"] == [1, 2, 3, 4, 5]
    assert_seqs(payloads, 7)


async def test_a_transaction_and_a_ttl_expiry_deliver_directly_in_order(sqlite_url: str, clock: Any) -> None:
    async with StateManager.from_url(sqlite_url, clock=clock) as sm:
        await sm.backend.enable_events()
        await sm.backend.dispatch_events([Subscription("watcher")])  # any scope
        # When one transaction writes several keys, and a key expires
        async with sm.transaction() as tx:
            await tx.set("s", "a", 1)
            await tx.set("s", "b", 1)
            await tx.set(INTERNAL, "x", 1)  # a runtime scope: skipped by an any-scope subscription
        await sm.set("s", "t", 1, ttl=5)
        clock.advance(10)
        assert await sm.purge_expired() == 1  # a lone event: through the outbox, behind the lone create
        assert await sm.backend.dispatch_events([Subscription("watcher")]) == 2
        payloads = await claim_all(sm)
    assert [(p["item_id"], p["event_type"]) for p in payloads] == [
        ("a", "created"),
        ("b", "created"),
        ("t", "created"),
        ("t", "expired"),
    ]
    assert all(p["group_id"] == "s" for p in payloads)


async def test_a_file_from_schema_8_counts_seqs_on_from_its_outbox(sqlite_url: str, sqlite_path: Path) -> None:
    # Given a file whose outbox holds events numbered by rowid (as schema 8 wrote them), and no counter
    async with StateManager.from_url(sqlite_url) as sm:
        await sm.backend.enable_events()
        for n in (1, 2, 3):
            await sm.set("s", "k", n)
    with contextlib.closing(sqlite3.connect(sqlite_path, isolation_level=None)) as connection:
        connection.execute("DELETE FROM motia_meta WHERE name IN ('event_seq', 'triggers')")
        connection.execute("UPDATE motia_meta SET value = '8' WHERE name = 'schema_version'")
    old = [seq for (seq,) in rows(sqlite_path, "SELECT seq FROM motia_state_events")]
    # When it is opened again, dispatched and written to
    async with StateManager.from_url(sqlite_url) as sm:
        assert await sm.backend.dispatch_events(WATCH) == 3
        await set_two(sm, "s", ("k", 4), ("j", 4))  # direct: seqs from the counter
        await sm.set("s", "k", 5)  # through the outbox: after the counter
        await sm.backend.dispatch_events(WATCH)
        payloads = await claim_all(sm)
    # Then every new event's seq comes after every old one: no delivery id is reused
    assert [p["new_value"] for p in payloads if p["item_id"] == "k"] == [1, 2, 3, 4, 5]
    assert_seqs(payloads, 6)
    assert sorted(p["seq"] for p in payloads)[:3] == old
    assert min(p["seq"] for p in payloads if p["new_value"] in (4, 5)) > max(old)


async def test_a_subscription_pruned_by_another_process_stops_the_next_group_write(tmp_path: Path, clock: Any) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    day = 86_400.0
    async with (
        StateManager.from_url(url, clock=clock) as writer,
        StateManager.from_url(url, clock=clock) as pruner,
    ):
        # Given a writer whose copy of the subscriptions holds a step that is about to go stale
        await writer.backend.enable_events()
        await writer.backend.touch_steps(["gone", "kept"])
        await writer.backend.dispatch_events([Subscription("gone", "s"), Subscription("kept", "s")])
        await set_two(writer, "s", ("a", 1), ("b", 1))
        assert (await writer.backend.pending("gone"), await writer.backend.pending("kept")) == (2, 2)
        # When another connection's retention forgets that step's subscription
        clock.advance(8 * day)
        await pruner.backend.touch_steps(["kept"])
        await pruner.backend.prune(dead_letter_age=None, step_age=7 * day)
        assert await writer.backend.pending("gone") == 0  # its waiting deliveries are dead letters now
        # Then the writer's next group write no longer delivers to it
        await set_two(writer, "s", ("c", 1), ("d", 1))
        assert outbox(tmp_path / "shared.db") == 0
        assert (await writer.backend.pending("gone"), await writer.backend.pending("kept")) == (0, 4)
