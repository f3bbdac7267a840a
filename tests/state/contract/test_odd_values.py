"""Odd values (ints past 64 bits or past a float's range, huge ints, lone surrogates) get a clear
MotiaError on every backend, never a raw ``TypeError``/``ValueError``/``OverflowError``/``UnicodeEncodeError``,
and change nothing (issue 11, #2 and the lone-surrogate finding)."""

from __future__ import annotations

import asyncio

import pytest

from motia import StateManager
from motia.exceptions import InvalidUpdateError, StateValueError
from motia.state.backends.base import NewDelivery
from motia.state.ops import apply_operations, parse_operations

BIG = 2**70


@pytest.mark.parametrize(
    "operations",
    [
        [{"type": "set", "path": "a.b", "value": 1}],  # walks through the big int
        [{"type": "merge", "path": "a", "value": {"b": 1}}],
        [{"type": "append", "path": "a", "value": 1}],
        [{"type": "increment", "path": "l", "value": 1}],  # a list holding a big int
    ],
)
async def test_update_through_a_stored_big_int_is_an_invalid_update(
    state: StateManager, operations: list[dict[str, object]]
) -> None:
    # Given a value holding ints past 64 bits
    await state.set("s", "k", {"a": BIG, "l": [BIG, -BIG]})
    # When an update cannot apply to it, Then the error is the usual InvalidUpdateError, naming the int
    with pytest.raises(InvalidUpdateError, match="op 0"):
        await state.update("s", "k", operations)
    # And nothing changed
    assert await state.get("s", "k") == {"a": BIG, "l": [BIG, -BIG]}


async def test_adding_a_float_to_an_int_past_the_float_range_is_an_invalid_update(state: StateManager) -> None:
    await state.set("s", "k", {"n": 2**1100})
    with pytest.raises(InvalidUpdateError, match="too large"):
        await state.update("s", "k", [{"type": "increment", "path": "n", "value": 1.5}])
    assert await state.get("s", "k") == {"n": 2**1100}


async def test_a_huge_int_amount_is_exact(state: StateManager) -> None:
    # math.isfinite(10**400) raises OverflowError: parsing must not call it on ints
    result = await state.update("s", "k", [{"type": "increment", "path": "n", "value": 10**400}])
    assert result.new_value == {"n": 10**400}
    assert await state.get("s", "k") == {"n": 10**400}


async def test_an_int_too_long_for_str_is_a_state_value_error(state: StateManager) -> None:
    # Python refuses to turn an int of more than 4,300 digits into text (sys.get_int_max_str_digits)
    with pytest.raises(StateValueError, match="cannot be stored as JSON"):
        await state.set("s", "k", {"n": 10**5000})
    with pytest.raises(InvalidUpdateError):
        await state.update("s", "k", [{"type": "set", "path": "n", "value": 10**5000}])
    assert await state.get("s", "k") is None


def test_describing_any_stored_value_never_raises() -> None:
    # Every error message describes the value it found: none of these may fail to describe.
    for document in ({"a": BIG}, {"a": [BIG]}, {"a": {"b": -(2**200)}}, {"a": 10**4000}, {"a": [10**4000]}):
        with pytest.raises(InvalidUpdateError):
            apply_operations(document, parse_operations([{"type": "set", "path": "a.b.c", "value": 1}]))


async def test_a_lone_surrogate_in_prefix_or_after_pages_by_code_point_on_every_backend(state: StateManager) -> None:
    # Given keys around the surrogate block (no key can hold a lone surrogate: keys are UTF-8)
    for key in ["a", "z", "\ud7ffx", "\ue000x"]:
        await state.set("s", key, 1)
    # Then a prefix holding a lone surrogate matches no key, and an "after" holding one sorts by code point,
    # alike on every backend (SQLite and Redis raised UnicodeEncodeError, memory answered)
    assert await state.keys("s", prefix="\ud800") == []
    assert await state.keys("s", prefix="a\udfff") == []
    assert await state.keys("s", after="\ud800") == ["\ue000x"]
    assert await state.keys("s", after="\udfff", limit=1) == ["\ue000x"]
    assert await state.keys("s", after="a\udc80") == ["z", "\ud7ffx", "\ue000x"]
    assert await state.keys("s", after="a", prefix="\udfff") == []
    assert [entry.key for entry in await state.items("s", after="\ud7ffx\udc80")] == ["\ue000x"]


@pytest.mark.delivery
async def test_a_lone_surrogate_in_a_dead_letters_error_text_is_kept_escaped(state: StateManager) -> None:
    # Given a delivery whose handler failed with a message holding a lone surrogate (a file name decoded
    # with surrogateescape, say)
    backend = state.backend
    await backend.enqueue([NewDelivery("d1", "step", "queue", b"{}")])
    [delivery] = await backend.claim(["step"], owner="w", limit=1, lease=60)
    # When it is dead-lettered, Then that works, and the text keeps the surrogate as an escape
    assert await backend.dead_letter(delivery.id, owner="w", error="no such file: caf\udce9.txt")
    [letter] = await backend.dead_letters("step")
    assert letter.error == "no such file: caf\\udce9.txt"


async def test_sqlite_never_leaks_unicode_encode_error(sqlite_state: StateManager) -> None:
    backend = sqlite_state.backend
    with pytest.raises(StateValueError, match="lone surrogate"):
        await backend.enqueue([NewDelivery("d\ud800", "step", "queue", b"{}")])
    with pytest.raises(StateValueError, match="lone surrogate"):
        await backend.dead_letters("step\udc80")
    with pytest.raises(StateValueError, match="lone surrogate"):
        await backend.claim_tick("job\udc80", 1.0, hold=60)
    # and a bad call in a group commit fails alone
    results = await asyncio.gather(
        backend.enqueue([NewDelivery("d\ud800", "step", "queue", b"{}")]),
        sqlite_state.set("s", "k", 1),
        return_exceptions=True,
    )
    assert isinstance(results[0], StateValueError)
    assert await sqlite_state.get("s", "k") == 1
    assert await backend.pending() == 0
