"""Retention (``touch_steps``/``prune``): old dead letters go; the subscriptions and waiting deliveries of steps no app
has served for a long time (renamed or removed steps) are removed and dead-lettered, never dropped silently; leased
deliveries, steps never touched and steps touched within the age stay. Run over every backend with the fake clock."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from motia.exceptions import StateValueError
from motia.state.backends.base import ORPHANED_ERROR, NewDelivery, PruneResult, Subscription
from motia.state.manager import StateManager

pytestmark = pytest.mark.delivery  # runs on DELIVERY_BACKENDS (tests/state/conftest.py)

DAY = 86_400.0


def since(seen_at: float) -> str:
    """The ``since`` of ORPHANED_ERROR for a step last seen at ``seen_at``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seen_at))


async def make_dead_letter(state: StateManager, delivery_id: str, step: str = "worker") -> None:
    backend = state.backend
    await backend.enqueue([NewDelivery(delivery_id, step, "queue", b"1")])
    (delivery,) = await backend.claim([step], owner="w", limit=1, lease=30)
    assert await backend.dead_letter(delivery.id, owner="w", error="boom")


async def test_prune_deletes_only_dead_letters_older_than_the_age(state: StateManager, clock: Any) -> None:
    backend = state.backend
    # Given dead letters that failed 40, 20 and 0 days ago
    await make_dead_letter(state, "old")
    clock.advance(20 * DAY)
    await make_dead_letter(state, "middle")
    clock.advance(20 * DAY)
    await make_dead_letter(state, "new")
    # When retention keeps 30 days
    result = await backend.prune(dead_letter_age=30 * DAY, step_age=None)
    # Then only the one older than that is gone
    assert result == PruneResult(dead_letters=1, steps=0, orphaned=0)
    assert [letter.id for letter in await backend.dead_letters()] == ["middle", "new"]
    # and pruning again removes nothing more (the age is "more than", so 20 days is kept at 20 days' age)
    assert await backend.prune(dead_letter_age=20 * DAY, step_age=None) == PruneResult(0, 0, 0)
    assert [letter.id for letter in await backend.dead_letters()] == ["middle", "new"]
    clock.advance(1)
    assert await backend.prune(dead_letter_age=20 * DAY, step_age=None) == PruneResult(1, 0, 0)
    assert [letter.id for letter in await backend.dead_letters()] == ["new"]


async def test_prune_ages_dead_letters_kept_for_no_subscriber_like_others(state: StateManager, clock: Any) -> None:
    backend = state.backend
    # Given a message kept for no subscriber 40 days ago and one today
    await backend.add_dead_letters([NewDelivery("old>(none)", "(none)", "queue", b"1")], error="no subscriber")
    clock.advance(40 * DAY)
    await backend.add_dead_letters([NewDelivery("new>(none)", "(none)", "queue", b"2")], error="no subscriber")
    # When retention keeps 30 days, the old one goes
    assert await backend.prune(dead_letter_age=30 * DAY, step_age=None) == PruneResult(1, 0, 0)
    assert [letter.id for letter in await backend.dead_letters()] == ["new>(none)"]
    # And once pruned, its id may be kept again (nothing remembers it)
    assert await backend.add_dead_letters([NewDelivery("old>(none)", "(none)", "queue", b"1")], error="again") == 1


async def test_prune_with_no_ages_changes_nothing(state: StateManager, clock: Any) -> None:
    await make_dead_letter(state, "m1")
    await state.backend.touch_steps(["gone"])
    await state.backend.enqueue([NewDelivery("q1", "gone", "queue", b"1")])
    clock.advance(365 * DAY)
    assert await state.backend.prune(dead_letter_age=None, step_age=None) == PruneResult(0, 0, 0)
    assert len(await state.backend.dead_letters()) == 1
    assert await state.backend.pending("gone") == 1


async def test_a_stale_step_loses_its_subscriptions_and_its_waiting_deliveries_become_dead_letters(
    state: StateManager, clock: Any
) -> None:
    backend = state.backend
    await backend.enable_events()
    # Given an app serving "renamed" and "kept", both watching scope "orders"
    await backend.touch_steps(["renamed", "kept"])
    seen_at = clock()
    await backend.dispatch_events([Subscription("renamed", "orders"), Subscription("kept", "orders")])
    # and deliveries of "renamed": one leased by a worker still running, one whose worker died (lease over),
    # two waiting (one never attempted, one after a retry)
    await backend.enqueue([NewDelivery("leased", "renamed", "queue", b'{"n":1}')])
    assert [d.id for d in await backend.claim(["renamed"], owner="w1", limit=1, lease=100 * DAY)] == ["leased"]
    await backend.enqueue([NewDelivery("abandoned", "renamed", "queue", b'{"n":2}')])
    assert [d.id for d in await backend.claim(["renamed"], owner="w2", limit=1, lease=60)] == ["abandoned"]
    await backend.enqueue([NewDelivery("retried", "renamed", "queue", b'{"n":3}')])
    assert [d.id for d in await backend.claim(["renamed"], owner="w3", limit=1, lease=60)] == ["retried"]
    assert await backend.retry("retried", owner="w3", delay=DAY, error="boom")
    await backend.enqueue([NewDelivery("waiting", "renamed", "queue", b'{"n":4}')])
    # When the app is redeployed without "renamed" and 8 days pass
    clock.advance(DAY)
    await backend.touch_steps(["kept"])
    clock.advance(7 * DAY)
    await backend.touch_steps(["kept"])
    result = await backend.prune(dead_letter_age=None, step_age=7 * DAY)
    # Then the waiting deliveries (the abandoned lease included) are dead letters with the orphaned error
    assert result == PruneResult(dead_letters=0, steps=0, orphaned=3)  # the step stays while "leased" runs
    letters = await backend.dead_letters("renamed")
    assert sorted((letter.id, letter.attempts) for letter in letters) == [
        ("abandoned", 1),
        ("retried", 1),
        ("waiting", 0),
    ]
    error = ORPHANED_ERROR.format(step="renamed", since=since(seen_at))
    assert {letter.error for letter in letters} == {error}
    assert {letter.failed_at for letter in letters} == {clock()}
    assert sorted(orjson.loads(letter.payload)["n"] for letter in letters) == [2, 3, 4]
    # the leased delivery stays with its worker, which can still settle it
    assert await backend.pending("renamed") == 1
    # and new state events no longer make deliveries for "renamed", even through the subscriptions registered
    # in the store (the running app's dispatcher only names its own)
    await state.set("orders", "o1", {"total": 5})
    assert await backend.dispatch_events([Subscription("kept", "orders")]) == 1
    assert await backend.pending("renamed") == 1
    assert await backend.pending("kept") == 1
    # When the leased delivery is settled, the next prune forgets the step
    assert await backend.complete("leased", owner="w1")
    assert await backend.prune(dead_letter_age=None, step_age=7 * DAY) == PruneResult(0, 1, 0)
    assert await backend.prune(dead_letter_age=None, step_age=7 * DAY) == PruneResult(0, 0, 0)
    assert await backend.pending("renamed") == 0
    assert len(await backend.dead_letters("renamed")) == 3


async def test_a_stale_step_without_leased_deliveries_is_forgotten_at_once(state: StateManager, clock: Any) -> None:
    backend = state.backend
    await backend.touch_steps(["gone"])
    await backend.enqueue([NewDelivery(f"q{i}", "gone", "queue", b"1") for i in range(3)])
    clock.advance(2 * DAY)
    assert await backend.prune(dead_letter_age=None, step_age=DAY) == PruneResult(0, 1, 3)
    assert await backend.pending() == 0
    assert [letter.id for letter in await backend.dead_letters("gone")] == ["q0", "q1", "q2"]
    # Forgotten: nothing more to prune, and the dead letters it made are pruned by age like any other
    assert await backend.prune(dead_letter_age=None, step_age=DAY) == PruneResult(0, 0, 0)
    clock.advance(DAY + 1)
    assert await backend.prune(dead_letter_age=DAY, step_age=DAY) == PruneResult(3, 0, 0)


async def test_deliveries_sharing_an_order_key_are_orphaned_together_and_the_key_is_free_again(
    state: StateManager, clock: Any
) -> None:
    backend = state.backend
    await backend.touch_steps(["gone"])
    # Given a chain of three deliveries of one order key (only the first is claimable) and one behind a leased head
    await backend.enqueue([NewDelivery(f"a{i}", "gone", "queue", b"1", order_key="a") for i in range(3)])
    await backend.enqueue([NewDelivery(f"b{i}", "gone", "queue", b"1", order_key="b") for i in range(2)])
    claimed = await backend.claim(["gone"], owner="w", limit=10, lease=100 * DAY)
    assert [d.id for d in claimed] == ["a0", "b0"]
    assert await backend.retry("a0", owner="w", delay=0, error="boom")  # a0 waits again; b0 stays leased
    clock.advance(2 * DAY)
    # When the step is pruned
    assert await backend.prune(dead_letter_age=None, step_age=DAY) == PruneResult(0, 0, 4)
    # Then every waiting one is a dead letter, the leased head stays
    assert sorted(letter.id for letter in await backend.dead_letters("gone")) == ["a0", "a1", "a2", "b1"]
    assert await backend.pending("gone") == 1
    assert await backend.complete("b0", owner="w")
    assert await backend.pending("gone") == 0
    # and when the step comes back (an app serves it again), its order keys are not blocked by what was removed
    await backend.touch_steps(["gone"])
    await backend.enqueue([NewDelivery("a9", "gone", "queue", b"1", order_key="a")])
    await backend.enqueue([NewDelivery("b9", "gone", "queue", b"1", order_key="b")])
    again = await backend.claim(["gone"], owner="w", limit=10, lease=60)
    assert sorted(d.id for d in again) == ["a9", "b9"]


async def test_a_step_never_touched_is_never_pruned(state: StateManager, clock: Any) -> None:
    backend = state.backend
    await backend.enable_events()
    # Given a store written by an older pymotia: subscriptions and deliveries, but no step ever touched
    await backend.dispatch_events([Subscription("legacy", "orders")])
    await backend.enqueue([NewDelivery("q1", "legacy", "queue", b"1")])
    await backend.touch_steps(["other"])
    clock.advance(365 * DAY)
    # When retention runs with the shortest age
    assert await backend.prune(dead_letter_age=None, step_age=0) == PruneResult(0, 1, 0)  # only "other" goes
    # Then its deliveries and subscriptions are kept
    assert await backend.pending("legacy") == 1
    await state.set("orders", "o1", 1)
    await backend.dispatch_events([])
    assert await backend.pending("legacy") == 2
    assert await backend.dead_letters() == []


async def test_a_step_touched_within_the_age_is_kept(state: StateManager, clock: Any) -> None:
    backend = state.backend
    await backend.touch_steps(["worker"])
    await backend.enqueue([NewDelivery("q1", "worker", "queue", b"1")])
    clock.advance(DAY)
    assert await backend.prune(dead_letter_age=None, step_age=DAY) == PruneResult(0, 0, 0)  # exactly the age: not more
    clock.advance(DAY / 2)
    await backend.touch_steps(["worker"])  # still served: the clock restarts
    clock.advance(DAY)
    assert await backend.prune(dead_letter_age=None, step_age=DAY) == PruneResult(0, 0, 0)
    assert await backend.pending("worker") == 1
    clock.advance(1)
    assert await backend.prune(dead_letter_age=None, step_age=DAY) == PruneResult(0, 1, 1)


async def test_bad_arguments_are_refused_and_change_nothing(state: StateManager, clock: Any) -> None:
    backend = state.backend
    await make_dead_letter(state, "m1")
    clock.advance(DAY)
    for bad in (-1, float("nan"), float("inf"), "1", True):
        with pytest.raises(StateValueError):
            await backend.prune(dead_letter_age=bad, step_age=None)  # type: ignore[arg-type]
        with pytest.raises(StateValueError):
            await backend.prune(dead_letter_age=0, step_age=bad)  # type: ignore[arg-type]
    for steps in ("worker", [""], [None], ["ok", 3], ["\ud800"]):
        with pytest.raises(StateValueError):
            await backend.touch_steps(steps)  # type: ignore[arg-type]
    assert [letter.id for letter in await backend.dead_letters()] == ["m1"]
    await backend.touch_steps([])  # nothing to record is fine


async def test_redis_a_retried_prune_gets_the_first_answer(redis_state: StateManager, clock: Any) -> None:
    backend: Any = redis_state.backend
    await make_dead_letter(redis_state, "m1")
    await make_dead_letter(redis_state, "m2")
    clock.advance(DAY)
    await make_dead_letter(redis_state, "m3")
    # When one prune reaches Redis twice (the client retried it after the reply was lost)
    token = backend._token()
    args = (repr(clock()), repr(clock() - DAY / 2), "")
    first = await backend._write("motia1_prune", token, *args)
    again = await backend._write("motia1_prune", token, *args)
    # Then both get the answer of the one prune that happened, and it happened once
    assert first == again == [2, 0, 0]
    assert [letter.id for letter in await backend.dead_letters()] == ["m3"]


async def test_prune_keeps_only_the_newest_dead_letters_beyond_a_limit(state: StateManager, clock: Any) -> None:
    backend = state.backend
    # Given five dead letters, failed a second apart
    for n in range(5):
        await make_dead_letter(state, f"d{n}")
        clock.advance(1)
    # When retention keeps at most three (and, in the same prune, none older than an hour: none is)
    result = await backend.prune(dead_letter_age=3600, step_age=None, dead_letter_limit=3)
    # Then the two oldest are gone, counted with the dead letters removed
    assert result == PruneResult(dead_letters=2, steps=0, orphaned=0)
    assert [letter.id for letter in await backend.dead_letters()] == ["d2", "d3", "d4"]
    # and a dead letter removed that way may come back as a new one (its id is free again)
    await backend.add_dead_letters([NewDelivery("d0", "(none)", "queue", b"1")], error="no subscriber")
    assert (await backend.stats()).dead_letters == 4
    # and a limit already met removes nothing; a bad limit changes nothing
    assert await backend.prune(dead_letter_age=None, step_age=None, dead_letter_limit=4) == PruneResult(0, 0, 0)
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(StateValueError):
            await backend.prune(dead_letter_age=None, step_age=None, dead_letter_limit=bad)  # type: ignore[arg-type]
    assert (await backend.stats()).dead_letters == 4
    assert await backend.prune(dead_letter_age=None, step_age=None, dead_letter_limit=0) == PruneResult(4, 0, 0)
    assert await backend.dead_letters() == []
