"""The operator half of the delivery contract (SPEC 13, issue 18): dead letters and pending deliveries listed
by page and filter, a dead letter inspected (first and last error), redriven and purged, on every backend."""

from __future__ import annotations

from typing import Any

import pytest

from motia.exceptions import StateValueError
from motia.state.backends.base import DeliveryStore, NewDelivery
from motia.state.manager import StateManager

pytestmark = pytest.mark.delivery  # runs on DELIVERY_BACKENDS (tests/state/conftest.py)


async def fail_for_good(backend: DeliveryStore, clock: Any, *new: NewDelivery, errors: tuple[str, ...]) -> None:
    """Enqueue ``new`` and fail each delivery once per error: retried, then dead-lettered with the last."""
    await backend.enqueue(list(new))
    for number, error in enumerate(errors, start=1):
        claimed = await backend.claim(sorted({n.step for n in new}), owner="w", limit=100, lease=30)
        assert sorted(d.id for d in claimed) == sorted(n.id for n in new)
        for delivery in claimed:
            if number < len(errors):
                assert await backend.retry(delivery.id, owner="w", delay=0, error=error)
            else:
                assert await backend.dead_letter(delivery.id, owner="w", error=error)
        clock.advance(1)


async def test_a_dead_letter_keeps_its_first_and_last_error(state: StateManager, clock: Any) -> None:
    # Given a delivery that failed one way, then another, then a third time for good
    backend = state.backend
    await fail_for_good(
        backend, clock, NewDelivery("m1", "worker", "queue", b'{"n":1}'), errors=("first: KeyError", "second", "last")
    )
    # Then its dead letter says both, and how many attempts it had
    letter = await backend.get_dead_letter("m1")
    assert letter is not None
    assert (letter.step, letter.attempts, letter.first_error, letter.error) == ("worker", 3, "first: KeyError", "last")
    assert letter.payload == b'{"n":1}' and letter.failed_at == clock() - 1
    assert await backend.get_dead_letter("nope") is None
    # And a delivery that failed once has the same first and last error
    await fail_for_good(backend, clock, NewDelivery("m2", "worker", "queue", b"2"), errors=("only",))
    once = await backend.get_dead_letter("m2")
    assert once is not None and (once.first_error, once.error, once.attempts) == ("only", "only", 1)


async def test_pending_deliveries_show_attempts_next_attempt_and_errors(state: StateManager, clock: Any) -> None:
    # Given two deliveries: one failed once (retry in 30 s), one waiting
    backend = state.backend
    await backend.enqueue([NewDelivery("a", "worker", "queue", b"1")])
    clock.advance(1)
    await backend.enqueue([NewDelivery("b", "other", "state", b"2")])
    (claimed,) = await backend.claim(["worker"], owner="w", limit=1, lease=30)
    assert await backend.retry(claimed.id, owner="w", delay=30, error="boom \udcff")
    # When they are listed
    page = await backend.pending_page()
    # Then each says its attempts, when it is claimable, its lease and its errors
    assert [(p.id, p.step, p.kind, p.attempts, p.leased_until, p.last_error, p.first_error) for p in page] == [
        ("a", "worker", "queue", 1, None, "boom \\udcff", "boom \\udcff"),
        ("b", "other", "state", 0, None, None, None),
    ]
    assert page[0].available_at == clock() + 30 and page[0].payload == b"1"
    assert page[1].available_at == clock() and page[1].created_at == clock()
    # And a leased one shows its lease
    (leased,) = await backend.claim(["other"], owner="w", limit=1, lease=20)
    (shown,) = await backend.pending_page(step="other")
    assert (shown.id, shown.attempts, shown.leased_until) == ("b", 1, clock() + 20)
    # Filters and pages
    assert [p.id for p in await backend.pending_page(kind="queue")] == ["a"]
    first = await backend.pending_page(limit=1)
    assert [p.id for p in first] == ["a"]
    assert [p.id for p in await backend.pending_page(after=first[-1].cursor, limit=1)] == ["b"]
    assert await backend.pending_page(step="none") == []


async def test_dead_letters_are_paged_by_failure_time_and_filtered(state: StateManager, clock: Any) -> None:
    # Given dead letters of two steps and two kinds, failed at different times (two at the same time)
    backend = state.backend
    letters = [
        NewDelivery("q2", "worker", "queue", b"1"),
        NewDelivery("q1", "worker", "queue", b"2"),
        NewDelivery("s1", "worker", "state", b"3"),
        NewDelivery("o1", "other", "queue", b"4"),
    ]
    await backend.add_dead_letters(letters[:2], error="e")  # same failure time: ordered by id
    clock.advance(1)
    await backend.add_dead_letters(letters[2:3], error="e")
    clock.advance(1)
    await backend.add_dead_letters(letters[3:], error="e")
    # When they are read a page at a time
    seen: list[str] = []
    after = None
    while True:
        page = await backend.dead_letter_page(after=after, limit=1 if seen else 2)
        if not page:
            break
        seen += [letter.id for letter in page]
        after = page[-1].cursor
    # Then every one is seen once, oldest failure first, ties by id
    assert seen == ["q1", "q2", "s1", "o1"]
    # And filters narrow them in the store
    assert [d.id for d in await backend.dead_letter_page(step="worker")] == ["q1", "q2", "s1"]
    assert [d.id for d in await backend.dead_letter_page(kind="queue")] == ["q1", "q2", "o1"]
    assert [d.id for d in await backend.dead_letter_page(step="worker", kind="state")] == ["s1"]
    # And a page continues after a letter that was removed meanwhile
    first = await backend.dead_letter_page(limit=2)
    assert await backend.purge_dead_letters([first[-1].id]) == ["q2"]
    assert [d.id for d in await backend.dead_letter_page(after=first[-1].cursor)] == ["s1", "o1"]


async def test_redrive_delivers_again_with_attempts_reset(state: StateManager, clock: Any) -> None:
    # Given a dead letter that failed twice
    backend = state.backend
    payload = b'{"topic":"t","data":{"n":1},"trace_id":"abc"}'
    await fail_for_good(backend, clock, NewDelivery("m1", "worker", "queue", payload, "fifo:g"), errors=("a", "b"))
    # When it is redriven
    assert await backend.redrive_dead_letters(["m1"]) == ["m1"]
    # Then the dead letter is gone and the same delivery is pending, claimable at once, attempts reset
    assert await backend.get_dead_letter("m1") is None
    (pending,) = await backend.pending_page()
    assert (pending.id, pending.attempts, pending.last_error, pending.first_error) == ("m1", 0, None, None)
    assert pending.available_at <= clock()
    (delivery,) = await backend.claim(["worker"], owner="w", limit=5, lease=30)
    assert (delivery.id, delivery.step, delivery.kind, delivery.payload, delivery.attempts) == (
        "m1",
        "worker",
        "queue",
        payload,
        1,
    )
    # And if it fails for good again it is a dead letter again, with the new attempts and errors
    assert await backend.dead_letter(delivery.id, owner="w", error="c")
    again = await backend.get_dead_letter("m1")
    assert again is not None and (again.attempts, again.first_error, again.error) == (1, "c", "c")


async def test_redrive_and_purge_skip_unknown_ids_and_change_nothing_for_them(state: StateManager, clock: Any) -> None:
    backend = state.backend
    await backend.add_dead_letters(
        [NewDelivery("a", "worker", "queue", b"1"), NewDelivery("b", "worker", "queue", b"2")], error="e"
    )
    # Unknown ids are skipped; the answer says which ids were acted on, in the order given
    assert await backend.redrive_dead_letters(["nope"]) == []
    assert await backend.purge_dead_letters(["nope"]) == []
    assert await backend.redrive_dead_letters([]) == [] and await backend.purge_dead_letters([]) == []
    assert [d.id for d in await backend.dead_letter_page()] == ["a", "b"]
    assert await backend.pending() == 0
    assert await backend.redrive_dead_letters(["b", "nope", "a", "b"]) == ["b", "a"]
    assert sorted(p.id for p in await backend.pending_page()) == ["a", "b"]
    # A dead letter whose id is pending again is not redriven over it
    await backend.add_dead_letters([NewDelivery("c", "worker", "queue", b"3")], error="e")
    await fail_for_good(backend, clock, NewDelivery("c2", "w2", "queue", b"x"), errors=("e",))
    await backend.enqueue([NewDelivery("c2", "w2", "queue", b"newer")])
    assert await backend.redrive_dead_letters(["c2", "c"]) == ["c"]
    assert (await backend.get_dead_letter("c2")) is not None
    # Purge deletes for good
    assert await backend.purge_dead_letters(["c2", "c2"]) == ["c2"]
    assert await backend.dead_letter_page() == []


@pytest.mark.parametrize(
    ("call", "kwargs"),
    [
        ("dead_letter_page", {"limit": 0}),
        ("dead_letter_page", {"limit": True}),
        ("dead_letter_page", {"after": "not a cursor"}),
        ("dead_letter_page", {"after": "nan:x"}),
        ("dead_letter_page", {"step": 3}),
        ("pending_page", {"after": "x"}),
        ("pending_page", {"after": "-1"}),
        ("pending_page", {"kind": b"queue"}),
        ("redrive_dead_letters", {"delivery_ids": "abc"}),
        ("redrive_dead_letters", {"delivery_ids": ["a", 1]}),
        ("purge_dead_letters", {"delivery_ids": "abc"}),
    ],
)
async def test_bad_arguments_are_refused_and_change_nothing(state: StateManager, call: str, kwargs: Any) -> None:
    backend = state.backend
    await backend.add_dead_letters([NewDelivery("a", "worker", "queue", b"1")], error="e")
    with pytest.raises(StateValueError):
        await getattr(backend, call)(**kwargs)
    assert [d.id for d in await backend.dead_letter_page()] == ["a"]


async def test_pending_lists_deliveries_waiting_behind_their_order_key(state: StateManager, clock: Any) -> None:
    # Given three deliveries of one order key (only the oldest claimable) and one delayed
    backend = state.backend
    await backend.enqueue([NewDelivery(f"k{i}", "worker", "queue", b"1", "fifo:g") for i in range(3)])
    await backend.enqueue([NewDelivery("later", "worker", "queue", b"2", delay=60)])
    # Then every one is listed, in the order added, with when it may run
    page = await backend.pending_page(step="worker")
    assert [p.id for p in page] == ["k0", "k1", "k2", "later"]
    assert [p.available_at for p in page] == [clock(), clock(), clock(), clock() + 60]
    # And pages of one continue across them
    seen, after = [], None
    while batch := await backend.pending_page(after=after, limit=1):
        seen.append(batch[0].id)
        after = batch[0].cursor
    assert seen == ["k0", "k1", "k2", "later"]
