"""The delivery contract (SPEC 1.4): change events recorded with the write, dispatched once per
subscription, leased, retried, dead-lettered, run over every backend (SQLite specifics: ``backends/test_sqlite.py``)."""

from __future__ import annotations

import threading
from typing import Any

import orjson
import pytest

from motia.exceptions import InvalidUpdateError, StateConflictError
from motia.state.backends.base import NewDelivery, Subscription
from motia.state.manager import StateManager

pytestmark = pytest.mark.delivery  # runs on DELIVERY_BACKENDS (tests/state/conftest.py)

EVERYTHING = [Subscription("watcher")]


async def events_of(state: StateManager, subscriptions: list[Subscription] | None = None) -> list[dict[str, Any]]:
    """Dispatch what is recorded and claim it all back, in commit (``seq``) order."""
    backend = state.backend
    await backend.dispatch_events(subscriptions or EVERYTHING)
    payloads: list[dict[str, Any]] = []
    while True:
        claimed = await backend.claim(["watcher"], owner="test", limit=1000, lease=60)
        if not claimed:
            return sorted(payloads, key=lambda payload: payload["seq"])
        for delivery in claimed:
            payloads.append(orjson.loads(delivery.payload))
            assert await backend.complete(delivery.id, owner="test")


async def test_no_events_until_enabled(state: StateManager) -> None:
    await state.set("s", "k", 1)
    assert await state.backend.dispatch_events(EVERYTHING) == 0
    assert await state.backend.pending() == 0


async def test_each_write_records_one_event_with_its_fields(state: StateManager, clock: Any) -> None:
    # Given events enabled
    await state.backend.enable_events()
    # When every kind of write happens
    await state.set("s", "k", {"n": 1})
    await state.update("s", "k", [{"type": "increment", "path": "n", "value": 1}])
    await state.update("s", "new", [{"type": "set", "path": "a", "value": True}])
    await state.delete("s", "k")
    events = await events_of(state)
    # Then each produced one event, in commit order, with old and new values and versions
    assert [(e["event_type"], e["item_id"], e["version"]) for e in events] == [
        ("created", "k", 1),
        ("updated", "k", 2),
        ("created", "new", 1),
        ("deleted", "k", 2),
    ]
    assert events[0] == {
        "type": "state",
        "event_type": "created",
        "group_id": "s",
        "item_id": "k",
        "old_value": None,
        "new_value": {"n": 1},
        "version": 1,
        "timestamp": clock(),
        "seq": events[0]["seq"],
    }
    assert events[1]["old_value"] == {"n": 1} and events[1]["new_value"] == {"n": 2}
    assert events[3]["old_value"] == {"n": 2} and events[3]["new_value"] is None
    assert len({e["seq"] for e in events}) == 4


async def test_writes_that_change_nothing_record_nothing(state: StateManager) -> None:
    await state.backend.enable_events()
    await state.set("s", "k", 1)
    await events_of(state)
    # delete of a missing key, an empty update, a failed update, a conflicting set
    assert await state.delete("s", "missing") is None
    await state.update("s", "k2", [])
    with pytest.raises(InvalidUpdateError):
        await state.update("s", "k", [{"type": "increment", "path": "a.b", "value": 1}])
    with pytest.raises(StateConflictError):
        await state.set("s", "k", 2, if_version=7)
    assert await events_of(state) == []


async def test_clear_emits_one_deleted_event_per_key(state: StateManager) -> None:
    await state.backend.enable_events()
    for key in ("a", "b", "c"):
        await state.set("s", key, key)
    await state.set("other", "x", 1)
    await events_of(state)
    await state.clear("s")
    events = await events_of(state)
    assert sorted((e["event_type"], e["item_id"], e["old_value"]) for e in events) == [
        ("deleted", "a", "a"),
        ("deleted", "b", "b"),
        ("deleted", "c", "c"),
    ]


async def test_expiry_fires_exactly_one_expired_event(state: StateManager, clock: Any) -> None:
    await state.backend.enable_events()
    await state.set("s", "k", {"v": 1}, ttl=10)
    await events_of(state)
    clock.advance(11)
    # Invisible at once, then removed by a purge: one expired event, however often we purge or read
    assert await state.get("s", "k") is None
    await state.purge_expired()
    await state.purge_expired()
    assert await state.get("s", "k") is None
    events = await events_of(state)
    assert [(e["event_type"], e["item_id"], e["old_value"]) for e in events] == [("expired", "k", {"v": 1})]


async def test_writing_an_expired_key_fires_expired_then_created(state: StateManager, clock: Any) -> None:
    await state.backend.enable_events()
    await state.set("s", "k", "old", ttl=5)
    await events_of(state)
    clock.advance(6)
    await state.set("s", "k", "new")
    events = await events_of(state)
    assert [(e["event_type"], e["old_value"], e["new_value"], e["version"]) for e in events] == [
        ("expired", "old", None, 1),
        ("created", None, "new", 1),
    ]


async def test_dispatch_filters_by_scope_and_key_and_runs_once(state: StateManager) -> None:
    backend = state.backend
    await backend.enable_events()
    await state.set("users", "u1", 1)
    await state.set("users", "u2", 2)
    await state.set("orders", "o1", 3)
    subscriptions = [Subscription("all"), Subscription("users", scope="users"), Subscription("u2", "users", "u2")]
    assert await backend.dispatch_events(subscriptions) == 3
    assert await backend.dispatch_events(subscriptions) == 0  # consumed: never dispatched twice
    assert await backend.pending("all") == 3
    assert await backend.pending("users") == 2
    assert await backend.pending("u2") == 1
    claimed = await backend.claim(["u2"], owner="w", limit=10, lease=60)
    assert [orjson.loads(d.payload)["item_id"] for d in claimed] == ["u2"]
    assert claimed[0].kind == "state" and claimed[0].attempts == 1


async def test_deliveries_of_one_key_are_leased_one_at_a_time_in_order(state: StateManager) -> None:
    backend = state.backend
    await backend.enable_events()
    await state.set("s", "k", 1)
    await state.set("s", "k", 2)
    await state.set("s", "other", 1)
    await backend.dispatch_events(EVERYTHING)
    # Only the oldest delivery of each key is claimable while it is unsettled
    first = await backend.claim(["watcher"], owner="w", limit=10, lease=60)
    assert [(orjson.loads(d.payload)["item_id"], orjson.loads(d.payload)["new_value"]) for d in first] == [
        ("k", 1),
        ("other", 1),
    ]
    assert await backend.claim(["watcher"], owner="w", limit=10, lease=60) == []
    # A retry keeps the order: the later event still waits
    assert await backend.retry(first[0].id, owner="w", delay=0, error="boom")
    again = await backend.claim(["watcher"], owner="w", limit=10, lease=60)
    assert [d.id for d in again] == [first[0].id] and again[0].attempts == 2
    assert await backend.complete(again[0].id, owner="w")
    last = await backend.claim(["watcher"], owner="w", limit=10, lease=60)
    assert [orjson.loads(d.payload)["new_value"] for d in last] == [2]


async def test_an_expired_lease_makes_a_delivery_claimable_again(state: StateManager, clock: Any) -> None:
    backend = state.backend
    assert await backend.enqueue([NewDelivery("m1", "worker", "queue", b'{"x":1}')]) == 1
    (held,) = await backend.claim(["worker"], owner="dead-process", limit=5, lease=30)
    assert await backend.claim(["worker"], owner="survivor", limit=5, lease=30) == []
    clock.advance(31)
    (taken,) = await backend.claim(["worker"], owner="survivor", limit=5, lease=30)
    assert taken.id == held.id and taken.attempts == 2 and orjson.loads(taken.payload) == {"x": 1}
    # The old owner no longer holds it: its settlement changes nothing
    assert not await backend.complete(held.id, owner="dead-process")
    assert await backend.pending("worker") == 1
    assert await backend.complete(taken.id, owner="survivor")
    assert await backend.pending("worker") == 0


async def test_complete_many_completes_only_what_the_owner_holds(state: StateManager, clock: Any) -> None:
    # Given four deliveries: two held by "a", one whose lease "a" lost to "b", one never claimed
    backend = state.backend
    await backend.enqueue([NewDelivery(f"m{n}", "worker", "queue", b"1") for n in range(3)])
    held = await backend.claim(["worker"], owner="a", limit=3, lease=30)
    assert [d.id for d in held] == ["m0", "m1", "m2"]
    clock.advance(31)
    (lost,) = await backend.claim(["worker"], owner="b", limit=1, lease=30)
    assert lost.id == "m0"
    await backend.extend(["m1", "m2"], owner="a", lease=30)
    await backend.enqueue([NewDelivery("m3", "worker", "queue", b"1")])
    # When "a" completes all of them (and an unknown id) in one call
    done = await backend.complete_many(["m0", "m1", "m2", "m3", "missing"], owner="a")
    # Then exactly the two it held are gone; the others are untouched
    assert done == {"m1", "m2"}
    assert await backend.pending("worker") == 2
    assert not await backend.complete_many([], owner="a")
    assert await backend.complete_many(["m0"], owner="b") == {"m0"}
    (last,) = await backend.claim(["worker"], owner="a", limit=5, lease=30)
    assert last.id == "m3" and last.attempts == 1


async def _first_event_of_each_key_claimed(state: StateManager) -> list[Any]:
    """Two events on each of keys ``a`` and ``b`` dispatched; the first of each claimed by ``w`` (the second of
    each waits for it: per-key order)."""
    backend = state.backend
    await backend.enable_events()
    for value in (1, 2):
        await state.set("s", "a", value)
        await state.set("s", "b", value)
    await backend.dispatch_events(EVERYTHING)
    first = await backend.claim(["watcher"], owner="w", limit=10, lease=60)
    assert [orjson.loads(d.payload)["new_value"] for d in first] == [1, 1]
    return first


async def test_complete_many_releases_the_next_delivery_of_each_key(state: StateManager) -> None:
    # Given two events on each of two keys: only the first of each key is claimable
    backend = state.backend
    first = await _first_event_of_each_key_claimed(state)
    # When both are completed in one call, the second event of each key becomes claimable, in order
    assert await backend.complete_many([d.id for d in first], owner="w") == {d.id for d in first}
    second = await backend.claim(["watcher"], owner="w", limit=10, lease=60)
    assert [(orjson.loads(d.payload)["item_id"], orjson.loads(d.payload)["new_value"]) for d in second] == [
        ("a", 2),
        ("b", 2),
    ]


async def test_complete_and_claim_completes_what_the_owner_holds_then_claims(state: StateManager, clock: Any) -> None:
    # Given three deliveries: m0 and m1 held by "a", m0's lease lost to "b"; and m2 ready
    backend = state.backend
    await backend.enqueue([NewDelivery(f"m{n}", "worker", "queue", b"1") for n in range(2)])
    assert [d.id for d in await backend.claim(["worker"], owner="a", limit=2, lease=30)] == ["m0", "m1"]
    clock.advance(31)
    (lost,) = await backend.claim(["worker"], owner="b", limit=1, lease=30)
    assert lost.id == "m0"
    await backend.extend(["m1"], owner="a", lease=30)
    await backend.enqueue([NewDelivery("m2", "worker", "queue", b"1")])
    # When "a" completes m0, m1 (and an unknown id) and claims in one call
    done, claimed = await backend.complete_and_claim(
        ["m0", "m1", "missing"], owner="a", steps=["worker"], limit=5, lease=30
    )
    # Then only m1 is completed, m2 is claimed by "a", and m0 stays "b"'s
    assert done == {"m1"}
    assert [(d.id, d.attempts) for d in claimed] == [("m2", 1)]
    assert await backend.pending("worker") == 2
    assert not await backend.complete(claimed[0].id, owner="b")
    assert await backend.complete_many(["m0"], owner="b") == {"m0"}
    # And with nothing to complete it is a claim; with nothing ready, the completions alone
    assert await backend.complete_and_claim([], owner="a", steps=["worker"], limit=5, lease=30) == (set(), [])
    assert await backend.complete_and_claim(["m2"], owner="a", steps=["worker"], limit=5, lease=30) == ({"m2"}, [])
    assert await backend.pending("worker") == 0


async def test_complete_and_claim_claims_the_next_delivery_of_each_completed_key(state: StateManager) -> None:
    # Given two events on each of two keys, the first of each key claimed
    backend = state.backend
    first = await _first_event_of_each_key_claimed(state)
    # When both are completed in the call that claims, the second event of each key is claimed by it, in order
    done, second = await backend.complete_and_claim(
        [d.id for d in first], owner="w", steps=["watcher"], limit=10, lease=60
    )
    assert done == {d.id for d in first}
    assert [(orjson.loads(d.payload)["item_id"], orjson.loads(d.payload)["new_value"]) for d in second] == [
        ("a", 2),
        ("b", 2),
    ]


async def test_extend_keeps_a_lease(state: StateManager, clock: Any) -> None:
    backend = state.backend
    await backend.enqueue([NewDelivery("m1", "worker", "queue", b"1")])
    await backend.claim(["worker"], owner="a", limit=1, lease=30)
    clock.advance(20)
    await backend.extend(["m1"], owner="a", lease=30)
    clock.advance(20)
    assert await backend.claim(["worker"], owner="b", limit=1, lease=30) == []


async def test_retry_waits_for_its_delay(state: StateManager, clock: Any) -> None:
    backend = state.backend
    await backend.enqueue([NewDelivery("m1", "worker", "queue", b"1")])
    (delivery,) = await backend.claim(["worker"], owner="a", limit=1, lease=30)
    assert await backend.retry(delivery.id, owner="a", delay=5, error="boom")
    assert await backend.claim(["worker"], owner="a", limit=1, lease=30) == []
    clock.advance(5)
    assert [d.attempts for d in await backend.claim(["worker"], owner="a", limit=1, lease=30)] == [2]


async def test_dead_letters_keep_the_failure(state: StateManager, clock: Any) -> None:
    backend = state.backend
    await backend.enqueue(
        [NewDelivery("m1", "worker", "queue", b'{"order":7}'), NewDelivery("m2", "other", "queue", b"2")]
    )
    (delivery,) = await backend.claim(["worker"], owner="a", limit=1, lease=30)
    assert await backend.dead_letter(delivery.id, owner="a", error="ValueError: bad order")
    assert await backend.pending("worker") == 0
    (letter,) = await backend.dead_letters("worker")
    assert (letter.id, letter.step, letter.kind, letter.attempts, letter.error) == (
        "m1",
        "worker",
        "queue",
        1,
        "ValueError: bad order",
    )
    assert orjson.loads(letter.payload) == {"order": 7} and letter.failed_at == clock()
    assert await backend.dead_letters("other") == []
    assert [letter.id for letter in await backend.dead_letters()] == ["m1"]


async def test_enqueue_skips_known_ids(state: StateManager) -> None:
    backend = state.backend
    first = [NewDelivery("parent/0", "worker", "queue", b"1"), NewDelivery("parent/1", "worker", "queue", b"2")]
    assert await backend.enqueue(first) == 2
    # A retried producer enqueues the same ids again: nothing doubles
    assert await backend.enqueue([*first, NewDelivery("parent/2", "worker", "queue", b"3")]) == 1
    assert await backend.pending("worker") == 3


async def test_add_dead_letters_keeps_them_at_once_without_duplicates(state: StateManager, clock: Any) -> None:
    # Given a pending delivery and a dead letter already in the store
    backend = state.backend
    await backend.enqueue([NewDelivery("pending", "worker", "queue", b"1")])
    # When messages nobody subscribes to are kept
    kept = [
        NewDelivery("m1>(none)", "(none)", "queue", b'{"topic":"t","data":{"n":1}}'),
        NewDelivery("m2>(none)", "(none)", "queue", b'{"topic":"t","data":2}', order_key="ignored"),
    ]
    assert await backend.add_dead_letters(kept, error="no subscriber: \udcff") == 2
    # Then they are dead letters at once: attempts 0, failed now, the error kept (lone surrogates escaped)
    letters = await backend.dead_letters("(none)")
    assert [(d.id, d.step, d.kind, d.attempts, d.created_at, d.failed_at) for d in letters] == [
        ("m1>(none)", "(none)", "queue", 0, clock(), clock()),
        ("m2>(none)", "(none)", "queue", 0, clock(), clock()),
    ]
    assert letters[0].error == "no subscriber: \\udcff"
    assert orjson.loads(letters[0].payload) == {"topic": "t", "data": {"n": 1}}
    # And nothing became claimable
    assert await backend.claim(["(none)"], owner="a", limit=10, lease=30) == []
    assert await backend.pending() == 1
    # When the same ids come again (a retried handler), or an id that is a pending delivery
    again = [*kept, NewDelivery("pending", "worker", "queue", b"1"), NewDelivery("m3>(none)", "(none)", "queue", b"3")]
    # Then only the new one is added
    assert await backend.add_dead_letters(again, error="no subscriber") == 1
    assert [d.id for d in await backend.dead_letters()] == ["m1>(none)", "m2>(none)", "m3>(none)"]
    assert await backend.add_dead_letters([], error="x") == 0


async def test_an_id_dead_lettered_by_a_handler_is_not_added_again(state: StateManager) -> None:
    backend = state.backend
    await backend.enqueue([NewDelivery("m1", "worker", "queue", b"1")])
    (delivery,) = await backend.claim(["worker"], owner="a", limit=1, lease=30)
    assert await backend.dead_letter(delivery.id, owner="a", error="boom")
    assert await backend.add_dead_letters([NewDelivery("m1", "worker", "queue", b"1")], error="again") == 0
    assert [(d.id, d.error) for d in await backend.dead_letters()] == [("m1", "boom")]


async def test_pending_by_step_counts_unsettled_deliveries(state: StateManager) -> None:
    backend = state.backend
    assert await backend.pending_by_step() == {}
    await backend.enqueue(
        [
            NewDelivery("a1", "a", "queue", b"1"),
            NewDelivery("a2", "a", "queue", b"2"),
            NewDelivery("b1", "b", "queue", b"3"),
        ]
    )
    (claimed,) = await backend.claim(["b"], owner="w", limit=1, lease=30)
    assert await backend.pending_by_step() == {"a": 2, "b": 1}  # leased ones count too
    assert await backend.complete(claimed.id, owner="w")
    assert await backend.pending_by_step() == {"a": 2}


async def test_listeners_hear_about_commits_with_events(state: StateManager) -> None:
    backend = state.backend
    heard = threading.Event()
    backend.add_listener(heard.set)
    await state.set("s", "k", 1)
    assert not heard.is_set()  # events off: nothing to deliver
    await backend.enable_events()
    await state.set("s", "k", 2)
    assert heard.is_set()
    heard.clear()
    backend.remove_listener(heard.set)
    await state.set("s", "k", 3)
    assert not heard.is_set()


async def test_event_seqs_are_never_reused_after_a_dispatch(state: StateManager) -> None:
    # Given two events dispatched but not yet handled (their deliveries pending)
    backend = state.backend
    await backend.enable_events()
    await state.set("s", "a", 1)
    await state.set("s", "b", 1)
    assert await backend.dispatch_events(EVERYTHING) == 2
    # When more writes happen and are dispatched
    await state.set("s", "c", 1)
    await state.set("s", "a", 2)
    assert await backend.dispatch_events(EVERYTHING) == 2
    # Then no new delivery collided with a pending one (a reused seq would make the same id)
    assert await backend.pending("watcher") == 4
    seqs = [event["seq"] for event in await events_of(state)]
    assert len(set(seqs)) == 4


async def test_a_dispatcher_keeps_events_for_triggers_of_other_apps(state: StateManager) -> None:
    # Given two apps on one store, each dispatching with only its own state triggers
    backend = state.backend
    await backend.enable_events()
    await backend.dispatch_events([Subscription("app-b-audit", scope="orders")])  # app B registers
    # When app A alone dispatches the next write
    await state.set("orders", "o1", {"total": 5})
    await backend.dispatch_events([Subscription("app-a-mailer")])
    # Then app B's trigger still gets its delivery: nothing was consumed and dropped
    (delivery,) = await backend.claim(["app-b-audit"], owner="b", limit=5, lease=60)
    assert orjson.loads(delivery.payload)["item_id"] == "o1"
    assert await backend.pending("app-a-mailer") == 1


async def test_restore_keeps_version_and_expiry(state: StateManager, clock: Any) -> None:
    # Given a record exported from another store: version 7, expiring in 50 s
    await state.backend.enable_events()
    assert await state.restore("s", "k", {"v": 1}, version=7, expires_at=clock() + 50)
    entry = await state.get_entry("s", "k")
    assert (entry.value, entry.version, entry.expires_at) == ({"v": 1}, 7, clock() + 50)  # type: ignore[union-attr]
    # An existing key is left alone unless replace=True; the next write continues from the version
    assert not await state.restore("s", "k", {"v": 2}, version=3)
    assert await state.restore("s", "k", {"v": 3}, version=3, replace=True)
    assert (await state.set("s", "k", 4)).version == 4
    # It is a write like any other: events fire
    kinds = [e["event_type"] for e in await events_of(state)]
    assert kinds == ["created", "updated", "updated"]


async def test_a_delayed_delivery_waits_for_its_delay(state: StateManager, clock: Any) -> None:
    # Given a delivery added with a 10 s delay beside one without
    backend = state.backend
    assert (
        await backend.enqueue(
            [NewDelivery("late", "worker", "queue", b"1", delay=10.0), NewDelivery("now", "worker", "queue", b"2")]
        )
        == 2
    )
    # Then only the undelayed one is claimable until the delay has passed
    assert [d.id for d in await backend.claim(["worker"], owner="a", limit=5, lease=60)] == ["now"]
    clock.advance(9.5)
    assert await backend.claim(["worker"], owner="a", limit=5, lease=60) == []
    assert await backend.pending("worker") == 2
    clock.advance(0.5)
    (late,) = await backend.claim(["worker"], owner="a", limit=5, lease=60)
    assert (late.id, late.attempts) == ("late", 1)


async def test_a_delay_keeps_the_order_of_its_key(state: StateManager, clock: Any) -> None:
    # Given, on one order key, a delayed delivery followed by undelayed ones (and another key beside them)
    backend = state.backend
    await backend.enqueue(
        [
            NewDelivery("a0", "worker", "queue", b"1", order_key="fifo:a", delay=5.0),
            NewDelivery("a1", "worker", "queue", b"2", order_key="fifo:a"),
            NewDelivery("b0", "worker", "queue", b"3", order_key="fifo:b"),
        ]
    )
    # Then the younger deliveries of key a wait behind the delayed one; key b is not held up
    assert [d.id for d in await backend.claim(["worker"], owner="w", limit=5, lease=60)] == ["b0"]
    clock.advance(5)
    (a0,) = await backend.claim(["worker"], owner="w", limit=5, lease=60)
    assert a0.id == "a0"
    assert await backend.claim(["worker"], owner="w", limit=5, lease=60) == []
    assert await backend.complete("a0", owner="w")
    assert [d.id for d in await backend.claim(["worker"], owner="w", limit=5, lease=60)] == ["a1"]


async def test_a_delayed_delivery_behind_its_key_still_waits_for_its_delay(state: StateManager, clock: Any) -> None:
    # Given an undelayed delivery, then a delayed one, on one key
    backend = state.backend
    await backend.enqueue([NewDelivery("k0", "worker", "queue", b"1", order_key="k")])
    await backend.enqueue([NewDelivery("k1", "worker", "queue", b"2", order_key="k", delay=8.0)])
    (first,) = await backend.claim(["worker"], owner="w", limit=5, lease=60)
    clock.advance(3)
    # When the first is settled before the second's delay is over
    assert await backend.complete(first.id, owner="w")
    # Then the second becomes claimable only at its own time (8 s after it was added)
    assert await backend.claim(["worker"], owner="w", limit=5, lease=60) == []
    clock.advance(5)
    assert [d.id for d in await backend.claim(["worker"], owner="w", limit=5, lease=60)] == ["k1"]


async def test_a_failing_delivery_holds_its_key_across_retries(state: StateManager, clock: Any) -> None:
    # Given three deliveries of one key, the first of which fails twice
    backend = state.backend
    await backend.enqueue([NewDelivery(f"g{n}", "worker", "queue", b"1", order_key="fifo:g") for n in range(3)])
    for attempt in (1, 2):
        (head,) = await backend.claim(["worker"], owner="w", limit=5, lease=60)
        assert (head.id, head.attempts) == ("g0", attempt)
        assert await backend.retry(head.id, owner="w", delay=1.0, error="boom")
        clock.advance(1)
    # Then nothing behind it ran meanwhile, and the key moves on once it is dead-lettered
    (head,) = await backend.claim(["worker"], owner="w", limit=5, lease=60)
    assert head.id == "g0"
    assert await backend.dead_letter(head.id, owner="w", error="gave up")
    assert [d.id for d in await backend.claim(["worker"], owner="w", limit=5, lease=60)] == ["g1"]


async def test_next_due_says_when_a_waiting_delivery_becomes_claimable(state: StateManager, clock: Any) -> None:
    backend = state.backend
    # Given no delivery, or only one claimable now: nothing waits for a time
    assert await backend.next_due(["job"]) is None
    assert await backend.enqueue([NewDelivery("now", "job", "queue", b"1")]) == 1
    assert await backend.next_due(["job"]) is None
    # When one is delayed by 8 s: it is due in 8 s (for its step only)
    assert await backend.enqueue([NewDelivery("later", "job", "queue", b"2", delay=8.0)]) == 1
    assert await backend.next_due(["job"]) == pytest.approx(8.0)
    assert await backend.next_due(["other"]) is None
    # When the ready one is leased for 5 s: its lease's end comes first
    (leased,) = await backend.claim(["job"], owner="a", limit=1, lease=5)
    assert leased.id == "now"
    assert await backend.next_due(["other", "job"]) == pytest.approx(5.0)
    # When it is retried after 3 s: the backoff's end comes first
    assert await backend.retry("now", owner="a", delay=3.0, error="boom")
    assert await backend.next_due(["job"]) == pytest.approx(3.0)
    # Then times that passed do not count: a delivery claimable now is not "due"
    clock.advance(4)
    assert await backend.next_due(["job"]) == pytest.approx(4.0)
    clock.advance(4)
    assert await backend.next_due(["job"]) is None
    assert sorted(d.id for d in await backend.claim(["job"], owner="a", limit=5, lease=60)) == ["later", "now"]
    # And leased deliveries are due when their lease ends
    assert await backend.next_due(["job"]) == pytest.approx(60.0)
