"""The state contract for values (JSON round trips, copies, models, refusals and size limits; SPEC 1.3), run unchanged
against every backend.

Every test gets ``state`` (an opened async StateManager on a fresh store) once per backend, or
``state_factory`` when it needs options such as ``max_value_bytes``. ``clock`` is the fake clock those managers use.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import math
from typing import Any

import pydantic
import pytest

from motia import (
    InvalidUpdateError,
    StateError,
    StateValueError,
)
from tests.state.contract.helpers import dumps, increment, populate, snapshot

ROUND_TRIP_VALUES = [
    {"name": "Ann", "nested": {"list": [1, 2.5, "x", None, True, {"deep": []}]}},
    [1, "two", 3.0, False, None, [], {}],
    "plain string",
    'unicode ✓ 😀 中文 \x00 nul \n newline "quotes" \\ backslash',
    42,
    -(2**63),
    2**63 - 1,
    2**53 + 1,
    3.14159,
    0.1,
    1e308,
    -2.5e-308,
    True,
    False,
    0,
    0.0,
    "",
    [],
    {},
    {"": "empty key", " ": "space key", "a.b": "dotted key"},
]


@pytest.mark.parametrize("value", ROUND_TRIP_VALUES, ids=[f"v{i}" for i in range(len(ROUND_TRIP_VALUES))])
async def test_json_values_round_trip_exactly(state, value):
    # When a JSON value is stored
    await state.set("s", "k", value)
    # Then get, list, get_entry and items return it exactly (same types: 1 is not 1.0 is not True)
    assert dumps(await state.get("s", "k")) == dumps(value)
    assert dumps(await state.list("s")) == dumps([value])
    entry = await state.get_entry("s", "k")
    assert dumps(entry.value) == dumps(value)
    assert dumps([e.value for e in await state.items("s")]) == dumps([value])


@pytest.mark.parametrize("value", [0, 0.0, "", False, [], {}], ids=repr)
async def test_falsy_values_are_not_read_as_missing(state, value):
    # Given a falsy value
    await state.set("s", "k", value)
    # Then it is there, with its type, and counted everywhere
    got = await state.get("s", "k")
    assert got is not None
    assert dumps(got) == dumps(value)
    assert dumps(await state.list("s")) == dumps([value])
    assert await state.count("s") == 1
    assert await state.list_groups() == ["s"]
    # And replacing it reports it as the old value
    result = await state.set("s", "k", "next")
    assert dumps(result.old_value) == dumps(value)
    assert result.version == 2


async def test_none_value_is_stored_as_an_entry(state):
    # When None itself is stored
    await state.set("s", "k", None)
    # Then get returns None but the key exists (get_entry, count, keys)
    assert await state.get("s", "k") is None
    entry = await state.get_entry("s", "k")
    assert entry is not None
    assert entry.value is None
    assert entry.version == 1
    assert await state.count("s") == 1
    assert await state.keys("s") == ["k"]


async def test_tuple_is_stored_as_list(state):
    await state.set("s", "k", {"t": (1, 2, (3, 4))})
    assert await state.get("s", "k") == {"t": [1, 2, [3, 4]]}


async def test_dict_key_order_is_preserved(state):
    # Given dicts whose key order is not sorted
    value = {"z": 1, "a": {"y": 1, "b": 2, "x": 3}, "m": [{"q": 1, "c": 2}]}
    await state.set("s", "k", value)
    # Then the order survives storage, at every level
    got = await state.get("s", "k")
    assert list(got) == ["z", "a", "m"]
    assert list(got["a"]) == ["y", "b", "x"]
    assert list(got["m"][0]) == ["q", "c"]
    assert list((await state.list("s"))[0]) == ["z", "a", "m"]
    # And an update keeps existing keys in place and appends new ones at the end
    await state.update(
        "s", "k", [{"type": "set", "path": "a.b", "value": 20}, {"type": "set", "path": "new", "value": 0}]
    )
    got = await state.get("s", "k")
    assert list(got) == ["z", "a", "m", "new"]
    assert list(got["a"]) == ["y", "b", "x"]


async def test_get_returns_a_fresh_object(state):
    # Given a stored value
    await state.set("s", "k", {"list": [1], "obj": {"a": 1}})
    # When the object returned by get (and by list / get_entry / items) is mutated
    got = await state.get("s", "k")
    got["list"].append(2)
    got["obj"]["a"] = 99
    got["added"] = True
    (await state.list("s"))[0]["list"].append(3)
    (await state.get_entry("s", "k")).value["obj"]["b"] = 2
    (await state.items("s"))[0].value["list"].clear()
    # Then the stored value is unchanged
    assert await state.get("s", "k") == {"list": [1], "obj": {"a": 1}}


async def test_mutating_the_object_passed_to_set_changes_nothing(state):
    # Given a value that was set
    value: dict[str, Any] = {"list": [1], "obj": {"a": 1}}
    await state.set("s", "k", value)
    # When the caller mutates its own object afterwards
    value["list"].append(2)
    value["obj"]["a"] = 99
    value["x"] = 1
    # Then the stored value is what was set
    assert await state.get("s", "k") == {"list": [1], "obj": {"a": 1}}


async def test_mutating_a_set_result_changes_nothing(state):
    result = await state.set("s", "k", {"list": [1]})
    result.new_value["list"].append(2)
    assert await state.get("s", "k") == {"list": [1]}


async def test_mutating_an_update_op_value_after_update_changes_nothing(state):
    # Given an update whose op value is a mutable object
    payload = {"a": [1]}
    await state.update("s", "k", [{"type": "set", "path": "p", "value": payload}])
    # When the caller mutates that object afterwards
    payload["a"].append(2)
    # Then the stored value is unchanged
    assert await state.get("s", "k") == {"p": {"a": [1]}}


class Profile(pydantic.BaseModel):
    name: str
    age: int
    joined: datetime.date
    tags: list[str] = []


@dataclasses.dataclass
class Point:
    x: int
    y: float
    label: str = "p"


async def test_pydantic_model_is_stored_as_its_json_form(state):
    # When a pydantic model is stored
    await state.set("s", "k", Profile(name="Ann", age=30, joined=datetime.date(2024, 1, 2), tags=["x"]))
    # Then its JSON form is what comes back (a date becomes its ISO string)
    assert await state.get("s", "k") == {"name": "Ann", "age": 30, "joined": "2024-01-02", "tags": ["x"]}


async def test_dataclass_is_stored_as_its_json_form(state):
    await state.set("s", "k", Point(1, 2.5))
    assert await state.get("s", "k") == {"x": 1, "y": 2.5, "label": "p"}


def _cyclic_list() -> list[Any]:
    cycle: list[Any] = [1]
    cycle.append(cycle)
    return cycle


def _cyclic_dict() -> dict[str, Any]:
    cycle: dict[str, Any] = {"a": 1}
    cycle["self"] = {"parent": cycle}
    return cycle


BAD_VALUES = {
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "nested-nan": {"a": [1, {"b": math.nan}]},
    "datetime": datetime.datetime(2024, 1, 1, 12, 0),
    "date-in-dict": {"d": datetime.date(2024, 1, 1)},
    "set": {1, 2},
    "frozenset-in-list": [frozenset({1})],
    "bytes": b"abc",
    "bytearray-in-dict": {"b": bytearray(b"x")},
    "int-key": {1: "a"},
    "none-key": {None: "a"},
    "tuple-key": {(1, 2): "a"},
    "nested-int-key": {"a": {2: "b"}},
    "cycle-list": _cyclic_list(),
    "cycle-dict": _cyclic_dict(),
    "object": object(),
    "decimal": decimal.Decimal("1.5"),
    "complex": 1 + 2j,
    "function": len,
    "lone-surrogate": "bad \ud800 string",
    "lone-surrogate-key": {"\udc00": 1},
}


@pytest.mark.parametrize("value", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
async def test_non_json_values_raise_state_value_error_and_write_nothing(state, value):
    # Given a store with an existing value at the key
    await populate(state)
    before = await snapshot(state)
    # When a non-JSON value is set (new key and existing key)
    with pytest.raises(StateValueError):
        await state.set("users", "u1", value)
    with pytest.raises(StateValueError):
        await state.set("users", "brand-new", value)
    # Then nothing changed
    assert await snapshot(state) == before


@pytest.mark.parametrize("value", list(BAD_VALUES.values()), ids=list(BAD_VALUES))
async def test_non_json_values_in_update_ops_are_rejected_and_write_nothing(state, value):
    await populate(state)
    before = await snapshot(state)
    # When an update op carries a non-JSON value (after a valid op)
    ops = [increment("age"), {"type": "set", "path": "bad", "value": value}]
    with pytest.raises(StateError) as excinfo:
        await state.update("users", "u1", ops)
    # Then it is a value/update error (both are ValueErrors) and nothing was written
    assert isinstance(excinfo.value, StateValueError | InvalidUpdateError)
    assert isinstance(excinfo.value, ValueError)
    assert await snapshot(state) == before


# --------------------------------------------------------------------------------------------------------------
# Size limits
# --------------------------------------------------------------------------------------------------------------


async def test_value_size_limit_at_configured_boundary(state_factory):
    # Given a store limited to 1024 bytes of encoded JSON
    sm = state_factory(max_value_bytes=1024)
    # When a value encoding to exactly 1024 bytes is stored ('"' + 1022 chars + '"')
    await sm.set("s", "k", "x" * 1022)
    # Then it is accepted
    assert await sm.get("s", "k") == "x" * 1022
    before = await snapshot(sm)
    # When a value one byte larger is stored (replacing, and on a new key)
    with pytest.raises(StateValueError, match=r"1024|1 ?KiB"):
        await sm.set("s", "k", "y" * 1023)
    with pytest.raises(StateValueError, match=r"1024|1 ?KiB"):
        await sm.set("s", "new", "y" * 1023)
    # Then the error names the limit and nothing was written
    assert await snapshot(sm) == before


async def test_update_growing_a_value_past_the_limit_writes_nothing(state_factory):
    sm = state_factory(max_value_bytes=1024)
    await sm.set("s", "k", {"log": ["x" * 900]})
    before = await snapshot(sm)
    # When an update would make the value larger than the limit
    with pytest.raises(StateValueError, match=r"1024|1 ?KiB"):
        await sm.update("s", "k", [{"type": "append", "path": "log", "value": "y" * 200}])
    # Then nothing was written
    assert await snapshot(sm) == before


async def test_default_value_limit_is_one_mebibyte(state):
    # Given the default limit of 1 MiB (1048576 bytes of encoded JSON)
    await state.set("s", "k", "x" * (1048576 - 2))
    assert len(await state.get("s", "k")) == 1048576 - 2
    # When one byte more is stored
    with pytest.raises(StateValueError, match=r"1048576|1 ?MiB"):
        await state.set("s", "k", "y" * (1048576 - 1))
    # Then the old value stays
    assert (await state.get_entry("s", "k")).version == 1
    assert (await state.get("s", "k"))[:1] == "x"


# --------------------------------------------------------------------------------------------------------------
# More value edge cases
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("number", [2**64, -(2**64) - 1, 10**30, -(10**40), 2**63], ids=repr)
async def test_big_ints_round_trip_exactly(state, number):
    # Given an int outside 64 bits: still an int, so still a JSON value (SPEC 1.3)
    value = {"n": number, "l": [number]}
    await state.set("s", "k", value)
    # Then it comes back exactly, never as a float or a truncated int
    got = await state.get("s", "k")
    assert got == value
    assert type(got["n"]) is int


async def test_deeply_nested_value_within_reason_round_trips(state):
    # 100 levels of containers (50 x {"d": [...]}) is ordinary JSON
    value: Any = "leaf"
    for _ in range(50):
        value = {"d": [value]}
    await state.set("s", "k", value)
    assert await state.get("s", "k") == value


async def test_absurdly_nested_value_is_a_state_value_error_not_a_crash(state):
    # Given a value nested deeper than any encoder recurses
    value: Any = []
    for _ in range(100_000):
        value = [value]
    await state.set("s", "k", 1)
    # Then it is refused cleanly with our error (never RecursionError or an encoder's own exception)
    with pytest.raises(StateValueError):
        await state.set("s", "k", value)
    assert await state.get("s", "k") == 1


async def test_nested_pydantic_models_and_dataclasses_are_stored_as_json(state):
    # Given models and dataclasses inside plain containers
    value = {
        "profile": Profile(name="Ann", age=30, joined=datetime.date(2024, 1, 2)),
        "points": [Point(1, 2.0), Point(3, 4.5, label="q")],
    }
    await state.set("s", "k", value)
    # Then each is stored as its JSON form
    assert await state.get("s", "k") == {
        "profile": {"name": "Ann", "age": 30, "joined": "2024-01-02", "tags": []},
        "points": [{"x": 1, "y": 2.0, "label": "p"}, {"x": 3, "y": 4.5, "label": "q"}],
    }


async def test_update_op_values_may_be_models_and_dataclasses(state):
    await state.update(
        "s",
        "k",
        [
            {"type": "set", "path": "profile", "value": Profile(name="A", age=1, joined=datetime.date(2024, 5, 6))},
            {"type": "append", "path": "points", "value": Point(1, 2.5)},
        ],
    )
    assert await state.get("s", "k") == {
        "profile": {"name": "A", "age": 1, "joined": "2024-05-06", "tags": []},
        "points": [{"x": 1, "y": 2.5, "label": "p"}],
    }
