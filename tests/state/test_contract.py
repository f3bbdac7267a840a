"""The state contract (SPEC 1.1-1.3, 1.5, 9), run unchanged against every backend.

Every test gets ``state`` (an opened async StateManager on a fresh store) once per backend, or
``state_factory`` when it needs options such as ``max_value_bytes``. ``clock`` is the fake clock those managers use.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
import math
import time
from typing import Any

import pydantic
import pytest

from motia import (
    InvalidUpdateError,
    MotiaError,
    StateClosedError,
    StateConflictError,
    StateEntry,
    StateError,
    StateManager,
    StateSetResult,
    StateValueError,
)


def dumps(value: Any) -> str:
    """Exact JSON form: distinguishes 1 from 1.0 and True, and keeps dict key order."""
    return json.dumps(value, allow_nan=True)


async def snapshot(sm: StateManager) -> dict[str, list[tuple[str, str, int, float | None]]]:
    """Everything visible in the store, to compare before and after a call that must change nothing."""
    groups = await sm.list_groups()
    return {
        scope: [(e.key, dumps(e.value), e.version, e.expires_at) for e in await sm.items(scope)] for scope in groups
    }


async def populate(sm: StateManager) -> None:
    await sm.set("users", "u1", {"name": "Ann", "age": 30, "tags": ["a"]})
    await sm.set("users", "u2", {"name": "Bob", "n": 1}, ttl=100)
    await sm.update("users", "u2", [{"type": "increment", "path": "n", "value": 1}])
    await sm.set("other", "x", [1, 2, 3])


def increment(path: str | list[Any] = "n", value: Any = 1) -> dict[str, Any]:
    return {"type": "increment", "path": path, "value": value}


# --------------------------------------------------------------------------------------------------------------
# 1.1 get / set
# --------------------------------------------------------------------------------------------------------------


async def test_get_missing_key_and_missing_scope_return_none(state):
    # Given a store holding one key
    await state.set("s", "k", 1)
    # When reading a key that does not exist, and a scope that does not exist
    # Then both are None
    assert await state.get("s", "nope") is None
    assert await state.get("no-such-scope", "k") is None


async def test_set_new_key_returns_result_with_old_none(state):
    # When a new key is set
    result = await state.set("s", "k", {"a": 1})
    # Then the result is a StateSetResult: old None, new the value, version 1; item access works too
    assert isinstance(result, StateSetResult)
    assert result.old_value is None
    assert result.new_value == {"a": 1}
    assert result.version == 1
    assert result["old_value"] is None
    assert result["new_value"] == {"a": 1}
    assert await state.get("s", "k") == {"a": 1}


async def test_set_replaces_and_returns_previous_value(state):
    # Given an existing key
    await state.set("s", "k", {"a": 1, "b": 2})
    # When it is set again
    result = await state.set("s", "k", {"c": 3})
    # Then the value is replaced (not merged) and the old one returned
    assert result.old_value == {"a": 1, "b": 2}
    assert result.new_value == {"c": 3}
    assert result["old_value"] == {"a": 1, "b": 2}
    assert result.version == 2
    assert await state.get("s", "k") == {"c": 3}


async def test_same_key_in_different_scopes_is_independent(state):
    await state.set("s1", "k", 1)
    await state.set("s2", "k", 2)
    assert await state.get("s1", "k") == 1
    assert await state.get("s2", "k") == 2
    await state.delete("s1", "k")
    assert await state.get("s2", "k") == 2


@pytest.mark.parametrize(
    ("scope1", "key1", "scope2", "key2"),
    [
        ("a:b", "c", "a", "b:c"),
        ("a/b", "c", "a", "b/c"),
        ("a\x00b", "c", "a", "b\x00c"),
        ("a.b", "c", "a", "b.c"),
        ("a", "bc", "ab", "c"),
        ("a|b", "c", "a", "b|c"),
    ],
)
async def test_scope_key_pairs_never_collide(state, scope1, key1, scope2, key2):
    # Given two (scope, key) pairs that a naive "scope:key" encoding would merge
    await state.set(scope1, key1, "first")
    await state.set(scope2, key2, "second")
    # Then they are two different entries
    assert await state.get(scope1, key1) == "first"
    assert await state.get(scope2, key2) == "second"
    assert await state.list(scope1) == ["first"]
    assert await state.list(scope2) == ["second"]
    assert await state.keys(scope1) == [key1]
    assert await state.keys(scope2) == [key2]
    assert await state.list_groups() == sorted([scope1, scope2])


async def test_memory_urls_open_fresh_private_stores():
    # Given two managers opened on "memory://"
    async with StateManager.from_url("memory://") as a, StateManager.from_url("memory://") as b:
        # When one of them writes
        await a.set("s", "k", 1)
        # Then the other does not see it
        assert await b.get("s", "k") is None
        assert await b.list_groups() == []
        assert await a.get("s", "k") == 1


# --------------------------------------------------------------------------------------------------------------
# Values (1.3)
# --------------------------------------------------------------------------------------------------------------

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
# Scopes and keys (1.3)
# --------------------------------------------------------------------------------------------------------------

ODD_KEYS = [
    "😀",
    "ключ",
    "键",
    "a\x00b",
    "\x00",
    "with space",
    " leading",
    "a/b:c",
    "'; DROP TABLE state; --",
    "%",
    "_",
    "a%b_c",
    "tab\tnewline\n",
    "\uffff",
    "\U0010ffff",
    "é",
    "e\u0301",
    "*",
    "[x]",
    "\\",
]


@pytest.mark.parametrize("key", ODD_KEYS, ids=[ascii(k) for k in ODD_KEYS])
async def test_odd_unicode_keys_and_scopes_round_trip(state, key):
    # When a key (and a scope) with odd characters is used
    await state.set(key, key, {"k": key})
    # Then it reads back exactly, and listing returns the exact string
    assert await state.get(key, key) == {"k": key}
    assert await state.keys(key) == [key]
    assert [e.key for e in await state.items(key)] == [key]
    assert await state.list_groups() == [key]
    assert await state.delete(key, key) == {"k": key}
    assert await state.list_groups() == []


async def test_list_is_ordered_by_key_in_code_point_order(state):
    # Given keys inserted in a scrambled order, including non-ASCII and astral characters
    keys = ["b", "a", "B", "é", "z", "10", "9", "ä", "😀", "\uffff", "a\x00", "a ", "aa", "A", "_", "%", "~"]
    for i, key in enumerate(keys):
        await state.set("s", key, i)
    # Then list/keys/items follow Python str order (code point order) on every backend
    expected = sorted(keys)
    assert await state.keys("s") == expected
    assert [e.key for e in await state.items("s")] == expected
    assert await state.list("s") == [keys.index(k) for k in expected]


async def test_list_unknown_scope_is_empty_list(state):
    assert await state.list("nothing-here") == []
    assert await state.items("nothing-here") == []
    assert await state.keys("nothing-here") == []
    assert await state.count("nothing-here") == 0


@pytest.mark.parametrize(
    "bad",
    ["", 1, None, b"bytes", ["list"], 1.5, "lone \ud800 surrogate", "\udfff"],
    ids=["empty", "int", "none", "bytes", "list", "float", "surrogate", "lone-low-surrogate"],
)
async def test_bad_scope_or_key_raises_for_every_method_and_changes_nothing(state, bad):
    # Given a populated store
    await populate(state)
    before = await snapshot(state)
    calls = {
        "get(scope)": lambda: state.get(bad, "k"),
        "get(key)": lambda: state.get("users", bad),
        "set(scope)": lambda: state.set(bad, "k", 1),
        "set(key)": lambda: state.set("users", bad, 1),
        "update(scope)": lambda: state.update(bad, "k", [increment()]),
        "update(key)": lambda: state.update("users", bad, [increment()]),
        "delete(scope)": lambda: state.delete(bad, "u1"),
        "delete(key)": lambda: state.delete("users", bad),
        "get_entry(scope)": lambda: state.get_entry(bad, "u1"),
        "get_entry(key)": lambda: state.get_entry("users", bad),
        "list": lambda: state.list(bad),
        "clear": lambda: state.clear(bad),
        "items": lambda: state.items(bad),
        "keys": lambda: state.keys(bad),
        "count": lambda: state.count(bad),
    }
    # When each method gets the bad scope or key
    for name, call in calls.items():
        with pytest.raises(StateValueError):
            await call()
        # Then nothing changed
        assert await snapshot(state) == before, name


async def test_scope_length_limit_is_256_characters(state):
    # Given a scope of exactly 256 characters (astral characters count as one each)
    ok_scope = "s" * 256
    emoji_scope = "😀" * 256
    await state.set(ok_scope, "k", 1)
    await state.set(emoji_scope, "k", 2)
    assert await state.get(ok_scope, "k") == 1
    assert await state.get(emoji_scope, "k") == 2
    before = await snapshot(state)
    # When a scope of 257 characters is written
    with pytest.raises(StateValueError, match="256"):
        await state.set("s" * 257, "k", 1)
    with pytest.raises(StateValueError, match="256"):
        await state.update("😀" * 257, "k", [increment()])
    # Then the error names the limit and nothing was written
    assert await snapshot(state) == before


async def test_key_length_limit_is_1024_characters(state):
    ok_key = "k" * 1024
    emoji_key = "😀" * 1024
    await state.set("s", ok_key, 1)
    await state.set("s", emoji_key, 2)
    assert await state.get("s", ok_key) == 1
    assert await state.get("s", emoji_key) == 2
    assert await state.keys("s") == sorted([ok_key, emoji_key])
    before = await snapshot(state)
    with pytest.raises(StateValueError, match="1024"):
        await state.set("s", "k" * 1025, 1)
    with pytest.raises(StateValueError, match="1024"):
        await state.update("s", "😀" * 1025, [increment()])
    assert await snapshot(state) == before


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
# delete / list / clear / list_groups (1.1, 9)
# --------------------------------------------------------------------------------------------------------------


async def test_delete_returns_previous_value_and_removes_key(state):
    await state.set("s", "k", {"a": 1})
    await state.set("s", "other", 2)
    assert await state.delete("s", "k") == {"a": 1}
    assert await state.get("s", "k") is None
    assert await state.get_entry("s", "k") is None
    assert await state.list("s") == [2]


async def test_delete_of_missing_key_returns_none(state):
    # Given a scope without the key, and a scope that does not exist
    await state.set("s", "k", 1)
    # Then delete returns None and changes nothing
    assert await state.delete("s", "missing") is None
    assert await state.delete("no-scope", "k") is None
    assert await state.list_groups() == ["s"]
    assert (await state.get_entry("s", "k")).version == 1


async def test_delete_of_falsy_value_returns_it(state):
    await state.set("s", "k", 0)
    assert await state.delete("s", "k") == 0
    await state.set("s", "k", False)
    assert await state.delete("s", "k") is False


async def test_list_returns_all_values_in_key_order(state):
    # Given values without ids, in scrambled key order
    await state.set("s", "c", {"v": 3})
    await state.set("s", "a", {"v": 1})
    await state.set("s", "b", [2])
    # Then list returns a list of the values, ordered by key
    values = await state.list("s")
    assert isinstance(values, list)
    assert values == [{"v": 1}, [2], {"v": 3}]


async def test_clear_removes_every_value_whatever_its_shape(state):
    # Given a scope holding values with and without "id" fields, and scalars
    values = {"a": {"id": "a", "x": 1}, "b": {"no_id": True}, "c": 5, "d": "str", "e": [1], "f": None, "g": {}}
    for key, value in values.items():
        await state.set("s", key, value)
    await state.set("keep", "k", {"id": "k"})
    # When the scope is cleared
    assert await state.clear("s") is None
    # Then all of it is gone, and other scopes are untouched
    assert await state.list("s") == []
    assert await state.count("s") == 0
    for key in values:
        assert await state.get_entry("s", key) is None
    assert await state.list_groups() == ["keep"]
    assert await state.get("keep", "k") == {"id": "k"}


async def test_clear_unknown_scope_is_a_no_op(state):
    await state.set("s", "k", 1)
    assert await state.clear("unknown") is None
    assert await state.list_groups() == ["s"]


async def test_cleared_keys_start_again_at_version_one(state):
    await state.set("s", "k", 1)
    await state.set("s", "k", 2)
    await state.clear("s")
    result = await state.set("s", "k", 3)
    assert result.old_value is None
    assert result.version == 1


async def test_list_groups_is_a_sorted_list(state):
    # Given keys in scopes inserted out of order
    for scope in ["zeta", "alpha", "Beta", "a:b", "😀", "mid"]:
        await state.set(scope, "k", 1)
    await state.set("alpha", "k2", 2)
    # Then list_groups is a plain sorted list (not {"groups": [...]}) without duplicates
    groups = await state.list_groups()
    assert isinstance(groups, list)
    assert groups == sorted(["zeta", "alpha", "Beta", "a:b", "😀", "mid"])


async def test_list_groups_empty_store(state):
    assert await state.list_groups() == []


async def test_list_groups_hides_scopes_emptied_by_delete_and_clear(state):
    # Given three scopes
    await state.set("by-delete", "a", 1)
    await state.set("by-delete", "b", 2)
    await state.set("by-clear", "a", 1)
    await state.set("stays", "a", 1)
    # When one is emptied key by key and another is cleared
    await state.delete("by-delete", "a")
    assert await state.list_groups() == ["by-clear", "by-delete", "stays"]
    await state.delete("by-delete", "b")
    await state.clear("by-clear")
    # Then both disappear from list_groups
    assert await state.list_groups() == ["stays"]


# --------------------------------------------------------------------------------------------------------------
# update (1.2, 9)
# --------------------------------------------------------------------------------------------------------------

UPDATE_CASES: list[Any] = [
    # (id, initial value or None for missing key, ops, expected value)
    ("set-top", {"a": 1}, [{"type": "set", "path": "b", "value": 2}], {"a": 1, "b": 2}),
    ("set-replace", {"a": 1}, [{"type": "set", "path": "a", "value": [1]}], {"a": [1]}),
    ("set-nested-creates", None, [{"type": "set", "path": "profile.age", "value": 30}], {"profile": {"age": 30}}),
    (
        "set-nested-keeps-siblings",
        {"profile": {"name": "Ann", "age": 1}, "x": 0},
        [{"type": "set", "path": "profile.age", "value": 30}],
        {"profile": {"name": "Ann", "age": 30}, "x": 0},
    ),
    ("set-deep-creates", {}, [{"type": "set", "path": "a.b.c.d", "value": 1}], {"a": {"b": {"c": {"d": 1}}}}),
    (
        "set-list-index",
        {"items": [{"qty": 1}, {"qty": 2}]},
        [{"type": "set", "path": "items.1.qty", "value": 5}],
        {"items": [{"qty": 1}, {"qty": 5}]},
    ),
    ("set-list-element", {"l": [1, 2, 3]}, [{"type": "set", "path": "l.0", "value": "x"}], {"l": ["x", 2, 3]}),
    ("set-dotted-key", {}, [{"type": "set", "path": ["a.b", "c"], "value": 1}], {"a.b": {"c": 1}}),
    ("set-dotted-key-top", {"a": {"b": 0}}, [{"type": "set", "path": ["a.b"], "value": 1}], {"a": {"b": 0}, "a.b": 1}),
    ("set-segments-list", {}, [{"type": "set", "path": ["x", "y"], "value": 1}], {"x": {"y": 1}}),
    (
        "set-segments-int-index",
        {"items": [{"qty": 1}]},
        [{"type": "set", "path": ["items", 0, "qty"], "value": 5}],
        {"items": [{"qty": 5}]},
    ),
    ("set-digit-key-in-object", {"o": {}}, [{"type": "set", "path": "o.0", "value": 1}], {"o": {"0": 1}}),
    ("set-root-empty-path", {"a": 1}, [{"type": "set", "path": "", "value": {"b": 2}}], {"b": 2}),
    ("set-root-no-path", {"a": 1}, [{"type": "set", "value": [1, 2]}], [1, 2]),
    ("set-root-scalar", {"a": 1}, [{"type": "set", "path": "", "value": 7}], 7),
    ("delete-field", {"a": 1, "b": 2}, [{"type": "delete", "path": "a"}], {"b": 2}),
    ("remove-alias", {"a": 1, "b": 2}, [{"type": "remove", "path": "b"}], {"a": 1}),
    ("delete-nested", {"a": {"b": 1, "c": 2}}, [{"type": "delete", "path": "a.b"}], {"a": {"c": 2}}),
    ("delete-missing-noop", {"a": 1}, [{"type": "delete", "path": "zzz"}], {"a": 1}),
    ("delete-missing-nested-noop", {"a": 1}, [{"type": "delete", "path": "x.y.z"}], {"a": 1}),
    ("delete-list-element", {"l": [1, 2, 3]}, [{"type": "delete", "path": "l.1"}], {"l": [1, 3]}),
    ("delete-dotted-key", {"a.b": 1, "a": {"b": 2}}, [{"type": "delete", "path": ["a.b"]}], {"a": {"b": 2}}),
    ("increment-existing", {"n": 5}, [increment("n", 2)], {"n": 7}),
    ("increment-missing", {}, [increment("n", 3)], {"n": 3}),
    ("increment-missing-key", None, [increment("loginCount", 1)], {"loginCount": 1}),
    ("increment-by-alias", {"n": 1}, [{"type": "increment", "path": "n", "by": 4}], {"n": 5}),
    ("increment-float", {"n": 1}, [increment("n", 0.5)], {"n": 1.5}),
    ("increment-float-field", {"n": 0.25}, [increment("n", 1)], {"n": 1.25}),
    ("increment-negative", {"n": 1}, [increment("n", -3)], {"n": -2}),
    ("increment-nested-creates", None, [increment("stats.views", 1)], {"stats": {"views": 1}}),
    ("increment-list-index", {"items": [{"qty": 1}]}, [increment("items.0.qty", 2)], {"items": [{"qty": 3}]}),
    ("decrement", {"credits": 10}, [{"type": "decrement", "path": "credits", "value": 2}], {"credits": 8}),
    ("decrement-by-alias", {"credits": 10}, [{"type": "decrement", "path": "credits", "by": 3}], {"credits": 7}),
    ("decrement-missing", {}, [{"type": "decrement", "path": "c", "value": 2}], {"c": -2}),
    ("merge-root-no-path", {"a": 1, "b": 2}, [{"type": "merge", "value": {"b": 3, "c": 4}}], {"a": 1, "b": 3, "c": 4}),
    ("merge-root-empty-path", {"a": 1}, [{"type": "merge", "path": "", "value": {"c": 4}}], {"a": 1, "c": 4}),
    (
        "merge-path",
        {"prefs": {"theme": "dark", "lang": "en"}},
        [{"type": "merge", "path": "prefs", "value": {"lang": "fr", "tz": "UTC"}}],
        {"prefs": {"theme": "dark", "lang": "fr", "tz": "UTC"}},
    ),
    (
        "merge-is-shallow",
        {"p": {"x": {"y": 1, "k": 0}}},
        [{"type": "merge", "path": "p", "value": {"x": {"z": 2}}}],
        {"p": {"x": {"z": 2}}},
    ),
    ("merge-creates", None, [{"type": "merge", "path": "a.b", "value": {"c": 1}}], {"a": {"b": {"c": 1}}}),
    ("merge-missing-key-root", None, [{"type": "merge", "value": {"c": 1}}], {"c": 1}),
    ("append-existing", {"h": [1]}, [{"type": "append", "path": "h", "value": 2}], {"h": [1, 2]}),
    ("append-creates", {}, [{"type": "append", "path": "history", "value": {"e": 1}}], {"history": [{"e": 1}]}),
    ("append-nested-creates", None, [{"type": "append", "path": "a.b", "value": 1}], {"a": {"b": [1]}}),
    ("append-list-value", {"h": []}, [{"type": "append", "path": "h", "value": [1, 2]}], {"h": [[1, 2]]}),
    (
        "ops-apply-in-order",
        {"n": 1},
        [
            increment("n", 1),
            {"type": "set", "path": "copy", "value": "x"},
            increment("n", 10),
            {"type": "delete", "path": "copy"},
            {"type": "append", "path": "log", "value": "a"},
            {"type": "append", "path": "log", "value": "b"},
        ],
        {"n": 12, "log": ["a", "b"]},
    ),
]


@pytest.mark.parametrize(
    ("initial", "ops", "expected"), [c[1:] for c in UPDATE_CASES], ids=[c[0] for c in UPDATE_CASES]
)
async def test_update_operations(state, initial, ops, expected):
    # Given the key holds `initial` (or does not exist)
    if initial is not None:
        await state.set("s", "k", initial)
    version_before = 1 if initial is not None else 0
    # When the ops are applied
    result = await state.update("s", "k", ops)
    # Then the stored value is `expected` exactly (ints stay ints, key order kept) and the result says so
    assert dumps(await state.get("s", "k")) == dumps(expected)
    assert dumps(result.new_value) == dumps(expected)
    assert dumps(result.old_value) == dumps(initial)
    assert result["new_value"] == expected
    assert result.version == version_before + 1
    assert (await state.get_entry("s", "k")).version == version_before + 1


async def test_increment_keeps_ints_as_ints(state):
    result = await state.update("s", "k", [increment("n", 1), increment("n", 1)])
    assert type(result.new_value["n"]) is int
    assert type((await state.get("s", "k"))["n"]) is int


async def test_update_missing_key_starts_as_empty_object(state):
    result = await state.update("s", "k", [{"type": "set", "path": "a", "value": 1}])
    assert result.old_value is None
    assert result.new_value == {"a": 1}
    assert await state.list_groups() == ["s"]


UPDATE_ERROR_CASES = [
    # (id, initial value, ops, failing op index, failing op path)
    ("increment-string", {"n": "5"}, [increment("n", 1)], 0, "n"),
    ("increment-bool-true", {"n": True}, [increment("n", 1)], 0, "n"),
    ("increment-bool-false", {"n": False}, [increment("n", 1)], 0, "n"),
    ("increment-dict", {"n": {"a": 1}}, [increment("n", 1)], 0, "n"),
    ("increment-list", {"n": [1]}, [increment("n", 1)], 0, "n"),
    ("decrement-string", {"c": "x"}, [{"type": "decrement", "path": "c", "value": 1}], 0, "c"),
    ("increment-by-string", {"n": 1}, [increment("n", "1")], 0, "n"),
    ("increment-by-bool", {"n": 1}, [increment("n", True)], 0, "n"),
    ("increment-by-nan", {"n": 1}, [increment("n", math.nan)], 0, "n"),
    ("increment-by-none", {"n": 1}, [increment("n", None)], 0, "n"),
    ("path-through-number", {"a": 5}, [{"type": "set", "path": "a.b", "value": 1}], 0, "a.b"),
    ("path-through-string", {"a": "str"}, [increment("a.b", 1)], 0, "a.b"),
    ("path-through-null", {"a": None}, [{"type": "set", "path": "a.b", "value": 1}], 0, "a.b"),
    ("path-through-list-non-index", {"a": [1, 2]}, [{"type": "set", "path": "a.x", "value": 1}], 0, "a.x"),
    ("path-list-index-out-of-range", {"items": [{"qty": 1}]}, [increment("items.5.qty", 1)], 0, "items.5.qty"),
    ("path-through-root-scalar", 5, [{"type": "set", "path": "a", "value": 1}], 0, "a"),
    # a stored null is a value, not a missing key: it is not replaced by {}
    ("path-through-root-null", None, [{"type": "set", "path": "a", "value": 1}], 0, "a"),
    ("merge-into-number", {"p": 1}, [{"type": "merge", "path": "p", "value": {"a": 1}}], 0, "p"),
    ("merge-into-list", {"p": [1]}, [{"type": "merge", "path": "p", "value": {"a": 1}}], 0, "p"),
    ("merge-non-object-value", {"p": {}}, [{"type": "merge", "path": "p", "value": [1, 2]}], 0, "p"),
    ("append-to-string", {"h": "x"}, [{"type": "append", "path": "h", "value": 1}], 0, "h"),
    ("append-to-object", {"h": {}}, [{"type": "append", "path": "h", "value": 1}], 0, "h"),
    ("unknown-type", {"a": 1}, [{"type": "frobnicate", "path": "a", "value": 1}], 0, "a"),
    ("type-not-string", {"a": 1}, [{"type": 5, "path": "a"}], 0, "a"),
    ("missing-type", {"a": 1}, [{"path": "a", "value": 1}], 0, "a"),
    ("op-not-a-dict", {"a": 1}, ["set"], 0, None),
    ("path-wrong-type", {"a": 1}, [{"type": "set", "path": 5, "value": 1}], 0, 5),
    ("later-op-fails", {"a": 1, "n": "x"}, [{"type": "set", "path": "a", "value": 2}, increment("n", 1)], 1, "n"),
    (
        "third-op-fails-after-creating",
        {"n": 1},
        [increment("n", 1), {"type": "set", "path": "new.field", "value": 1}, {"type": "bogus", "path": "q.r"}],
        2,
        "q.r",
    ),
]


@pytest.mark.parametrize(
    ("initial", "ops", "index", "path"), [c[1:] for c in UPDATE_ERROR_CASES], ids=[c[0] for c in UPDATE_ERROR_CASES]
)
async def test_invalid_update_raises_and_writes_nothing(state, initial, ops, index, path):
    # Given a stored value (with an expiry, to check that too is untouched)
    await state.set("s", "k", initial, ttl=1000)
    await state.set("s", "other", 1)
    before = await snapshot(state)
    # When an update contains a failing op
    with pytest.raises(InvalidUpdateError) as excinfo:
        await state.update("s", "k", ops)
    # Then InvalidUpdateError names the op index and path
    err = excinfo.value
    assert isinstance(err, StateError)
    assert isinstance(err, MotiaError)
    assert isinstance(err, ValueError)
    assert err.index == index
    if path is not None:
        shown = path if isinstance(path, str) else str(path)
        assert err.path == path or (isinstance(path, str) and list(err.path or []) == path.split("."))  # type: ignore[call-overload]
        assert shown in str(err)
    assert str(index) in str(err)
    # And nothing was written (value, version and expiry unchanged)
    assert await snapshot(state) == before


async def test_invalid_update_on_missing_key_creates_nothing(state):
    # When an update of a missing key fails on its second op
    with pytest.raises(InvalidUpdateError) as excinfo:
        await state.update("s", "k", [{"type": "set", "path": "a", "value": 1}, {"type": "nope", "path": "b"}])
    # Then the key (and the scope) were not created
    assert excinfo.value.index == 1
    assert await state.get_entry("s", "k") is None
    assert await state.list_groups() == []


async def test_invalid_update_error_message_names_index_and_path(state):
    await state.set("s", "k", {"deep": {"field_xyz": "text"}})
    ops = [increment("a"), increment("b"), increment("deep.field_xyz")]
    with pytest.raises(InvalidUpdateError) as excinfo:
        await state.update("s", "k", ops)
    assert excinfo.value.index == 2
    assert "2" in str(excinfo.value)
    assert "deep.field_xyz" in str(excinfo.value)


async def test_update_with_dotted_key_segments_error_names_path(state):
    await state.set("s", "k", {"a.b": "text"})
    with pytest.raises(InvalidUpdateError) as excinfo:
        await state.update("s", "k", [increment(["a.b"])])
    assert excinfo.value.index == 0
    assert "a.b" in str(excinfo.value)


@pytest.mark.parametrize("ops", ["not a list", {"type": "set", "path": "a", "value": 1}, None, 5])
async def test_update_ops_not_a_list_raises_and_writes_nothing(state, ops):
    await state.set("s", "k", {"a": 0})
    before = await snapshot(state)
    with pytest.raises(StateError) as excinfo:
        await state.update("s", "k", ops)
    assert isinstance(excinfo.value, InvalidUpdateError | StateValueError)
    assert await snapshot(state) == before


async def test_update_with_empty_ops_on_existing_key_writes_nothing(state):
    # Given an existing key
    await state.set("s", "k", {"a": 1}, ttl=50)
    entry = await state.get_entry("s", "k")
    # When updated with no ops
    result = await state.update("s", "k", [])
    # Then nothing is written: same value, same version, same expiry; the result reports the current value
    assert result.old_value == {"a": 1}
    assert result.new_value == {"a": 1}
    assert result.version == entry.version
    assert await state.get_entry("s", "k") == entry


async def test_update_with_empty_ops_on_missing_key_creates_nothing(state):
    result = await state.update("s", "k", [])
    assert result.old_value is None
    assert result.new_value is None
    assert result.version == 0
    assert await state.get_entry("s", "k") is None
    assert await state.list_groups() == []
    assert await state.count("s") == 0


async def test_update_with_non_empty_noop_ops_is_still_a_write(state):
    # Given an existing key
    await state.set("s", "k", {"a": 1})
    # When an update whose ops change nothing (delete of a missing path) is applied
    result = await state.update("s", "k", [{"type": "delete", "path": "zzz"}])
    # Then the value is the same and the write is counted
    assert result.new_value == {"a": 1}
    assert result.old_value == {"a": 1}
    assert result.version == 2


# --------------------------------------------------------------------------------------------------------------
# Versions and compare-and-set (1.5)
# --------------------------------------------------------------------------------------------------------------


async def test_versions_start_at_one_and_count_writes(state):
    assert (await state.set("s", "k", 1)).version == 1
    assert (await state.set("s", "k", 2)).version == 2
    assert (await state.update("s", "k", [{"type": "set", "value": {"n": 1}}])).version == 3
    assert (await state.update("s", "k", [increment()])).version == 4
    assert (await state.get_entry("s", "k")).version == 4
    # A deleted key is absent; recreating it starts at 1 again
    await state.delete("s", "k")
    assert await state.get_entry("s", "k") is None
    assert (await state.set("s", "k", 1)).version == 1


async def test_get_entry_shape(state, clock):
    await state.set("s", "perm", {"a": 1})
    await state.set("s", "temp", [1], ttl=30)
    perm = await state.get_entry("s", "perm")
    assert isinstance(perm, StateEntry)
    assert perm.key == "perm"
    assert perm.value == {"a": 1}
    assert perm.version == 1
    assert perm.expires_at is None
    temp = await state.get_entry("s", "temp")
    assert temp.key == "temp"
    assert temp.expires_at == pytest.approx(clock() + 30)
    assert await state.get_entry("s", "missing") is None
    assert await state.get_entry("missing-scope", "perm") is None


async def test_set_if_version_matches(state):
    await state.set("s", "k", "v1")
    result = await state.set("s", "k", "v2", if_version=1)
    assert result.version == 2
    assert result.old_value == "v1"
    assert await state.get("s", "k") == "v2"


async def test_set_if_version_mismatch_raises_conflict_and_writes_nothing(state):
    await state.set("s", "k", "v1")
    await state.set("s", "k", "v2")
    before = await snapshot(state)
    with pytest.raises(StateConflictError) as excinfo:
        await state.set("s", "k", "v3", if_version=1)
    assert excinfo.value.expected == 1
    assert excinfo.value.actual == 2
    assert isinstance(excinfo.value, StateError)
    assert isinstance(excinfo.value, MotiaError)
    assert await snapshot(state) == before


async def test_if_version_zero_means_only_if_absent(state):
    # Given an absent key: if_version=0 creates it
    result = await state.set("s", "k", "first", if_version=0)
    assert result.version == 1
    # Given a present key: if_version=0 conflicts, reporting the actual version
    with pytest.raises(StateConflictError) as excinfo:
        await state.set("s", "k", "second", if_version=0)
    assert excinfo.value.expected == 0
    assert excinfo.value.actual == 1
    assert await state.get("s", "k") == "first"
    # Update with if_version=0 on a present key conflicts too, on an absent key it creates
    with pytest.raises(StateConflictError):
        await state.update("s", "k", [increment()], if_version=0)
    result = await state.update("s", "other", [increment()], if_version=0)
    assert result.new_value == {"n": 1}
    assert result.version == 1


async def test_if_version_on_absent_key_conflicts_with_actual_zero(state):
    with pytest.raises(StateConflictError) as excinfo:
        await state.set("s", "k", 1, if_version=1)
    assert excinfo.value.expected == 1
    assert excinfo.value.actual == 0
    with pytest.raises(StateConflictError) as excinfo:
        await state.update("s", "k", [increment()], if_version=3)
    assert excinfo.value.actual == 0
    with pytest.raises(StateConflictError) as excinfo:
        await state.delete("s", "k", if_version=2)
    assert excinfo.value.expected == 2
    assert excinfo.value.actual == 0
    assert await state.list_groups() == []


async def test_update_if_version(state):
    await state.set("s", "k", {"n": 0})
    result = await state.update("s", "k", [increment()], if_version=1)
    assert result.version == 2
    before = await snapshot(state)
    with pytest.raises(StateConflictError) as excinfo:
        await state.update("s", "k", [increment()], if_version=1)
    assert excinfo.value.expected == 1
    assert excinfo.value.actual == 2
    assert await snapshot(state) == before


async def test_delete_if_version(state):
    await state.set("s", "k", "v1")
    await state.set("s", "k", "v2")
    before = await snapshot(state)
    with pytest.raises(StateConflictError) as excinfo:
        await state.delete("s", "k", if_version=1)
    assert excinfo.value.expected == 1
    assert excinfo.value.actual == 2
    assert await snapshot(state) == before
    assert await state.delete("s", "k", if_version=2) == "v2"
    assert await state.get_entry("s", "k") is None


async def test_conflict_after_recreate_sees_fresh_version(state):
    # Given a key written twice, deleted and recreated
    await state.set("s", "k", 1)
    await state.set("s", "k", 2)
    await state.delete("s", "k")
    await state.set("s", "k", 3)
    # Then its version is 1 again: the old version 2 conflicts
    with pytest.raises(StateConflictError) as excinfo:
        await state.set("s", "k", 4, if_version=2)
    assert excinfo.value.actual == 1
    assert (await state.set("s", "k", 4, if_version=1)).version == 2


# --------------------------------------------------------------------------------------------------------------
# TTL (1.5)
# --------------------------------------------------------------------------------------------------------------


async def test_ttl_key_is_visible_until_expiry(state, clock):
    # Given a key set with a 10 s TTL
    await state.set("s", "k", {"a": 1}, ttl=10)
    entry = await state.get_entry("s", "k")
    assert entry.expires_at == pytest.approx(clock() + 10)
    # When 9 s pass, it is still there
    clock.advance(9)
    assert await state.get("s", "k") == {"a": 1}
    assert await state.count("s") == 1


async def test_expired_key_is_invisible_to_every_read_at_once(state, clock):
    # Given one expiring key alone in its scope, and an expiring key next to a permanent one
    await state.set("temp", "k", {"a": 1}, ttl=10)
    await state.set("mixed", "gone", 1, ttl=10)
    await state.set("mixed", "stays", 2)
    # When the clock passes the expiry (no purge, no wait)
    clock.advance(10.5)
    # Then no read sees the expired keys
    assert await state.get("temp", "k") is None
    assert await state.get_entry("temp", "k") is None
    assert await state.list("temp") == []
    assert await state.items("temp") == []
    assert await state.keys("temp") == []
    assert await state.count("temp") == 0
    assert await state.get("mixed", "gone") is None
    assert await state.list("mixed") == [2]
    assert await state.keys("mixed") == ["stays"]
    assert [e.key for e in await state.items("mixed")] == ["stays"]
    assert await state.count("mixed") == 1
    assert await state.list_groups() == ["mixed"]


async def test_set_without_ttl_makes_key_permanent(state, clock):
    await state.set("s", "k", 1, ttl=10)
    result = await state.set("s", "k", 2)
    assert result.old_value == 1
    assert (await state.get_entry("s", "k")).expires_at is None
    clock.advance(1000)
    assert await state.get("s", "k") == 2


async def test_set_with_ttl_resets_expiry(state, clock):
    await state.set("s", "k", 1, ttl=10)
    clock.advance(8)
    await state.set("s", "k", 2, ttl=10)
    assert (await state.get_entry("s", "k")).expires_at == pytest.approx(clock() + 10)
    clock.advance(8)
    assert await state.get("s", "k") == 2


async def test_update_without_ttl_keeps_expiry(state, clock):
    # Given a key expiring in 10 s
    await state.set("s", "k", {"n": 0}, ttl=10)
    expires_at = (await state.get_entry("s", "k")).expires_at
    # When it is updated without ttl
    clock.advance(5)
    await state.update("s", "k", [increment()])
    # Then the expiry is unchanged and still applies
    entry = await state.get_entry("s", "k")
    assert entry.expires_at == pytest.approx(expires_at)
    assert entry.value == {"n": 1}
    clock.advance(5.5)
    assert await state.get("s", "k") is None


async def test_update_without_ttl_on_permanent_key_stays_permanent(state, clock):
    await state.set("s", "k", {"n": 0})
    await state.update("s", "k", [increment()])
    assert (await state.get_entry("s", "k")).expires_at is None


async def test_update_with_ttl_sets_expiry(state, clock):
    await state.set("s", "k", {"n": 0})
    await state.update("s", "k", [increment()], ttl=5)
    assert (await state.get_entry("s", "k")).expires_at == pytest.approx(clock() + 5)
    await state.update("s", "new", [increment()], ttl=7)
    assert (await state.get_entry("s", "new")).expires_at == pytest.approx(clock() + 7)
    clock.advance(6)
    assert await state.get("s", "k") is None
    assert await state.get("s", "new") == {"n": 1}


async def test_fractional_ttl(state, clock):
    await state.set("s", "k", 1, ttl=0.5)
    clock.advance(0.25)
    assert await state.get("s", "k") == 1
    clock.advance(0.5)
    assert await state.get("s", "k") is None


async def test_expired_key_is_absent_for_writes(state, clock):
    # Given keys that expired
    await state.set("s", "a", {"n": 5}, ttl=1)
    await state.set("s", "a", {"n": 6}, ttl=1)
    await state.set("s", "b", {"n": 5}, ttl=1)
    await state.set("s", "c", "old", ttl=1)
    await state.set("s", "d", "old", ttl=1)
    clock.advance(2)
    # Then set sees no old value and starts at version 1
    result = await state.set("s", "a", "new")
    assert result.old_value is None
    assert result.version == 1
    # update starts from {}
    result = await state.update("s", "b", [increment()])
    assert result.old_value is None
    assert result.new_value == {"n": 1}
    assert result.version == 1
    # delete finds nothing
    assert await state.delete("s", "c") is None
    # if_version=0 (only if absent) succeeds
    assert (await state.set("s", "d", "fresh", if_version=0)).version == 1
    assert await state.list("s") == ["new", {"n": 1}, "fresh"]


async def test_purge_expired_removes_expired_keys_and_counts_them(state, clock):
    # Given 3 keys that will expire, 1 expiring later and 2 permanent ones
    await state.set("s1", "a", 1, ttl=10)
    await state.set("s1", "b", 2, ttl=10)
    await state.set("s2", "c", 3, ttl=5)
    await state.set("s2", "later", 4, ttl=100)
    await state.set("s1", "p", 5)
    await state.set("s3", "p", 6)
    clock.advance(20)
    # When expired keys are purged
    removed = await state.purge_expired()
    # Then exactly the 3 expired keys are counted, and a second purge finds nothing
    assert removed == 3
    assert await state.purge_expired() == 0
    assert await state.keys("s1") == ["p"]
    assert await state.keys("s2") == ["later"]
    assert await state.list_groups() == ["s1", "s2", "s3"]
    # And the later key still expires on time
    clock.advance(100)
    assert await state.purge_expired() == 1
    assert await state.list_groups() == ["s1", "s3"]


async def test_purge_expired_on_empty_store(state):
    assert await state.purge_expired() == 0


@pytest.mark.parametrize("ttl", [0, -1, -0.5, "10", math.nan, [10]], ids=repr)
async def test_bad_ttl_raises_and_writes_nothing(state, ttl):
    await populate(state)
    before = await snapshot(state)
    with pytest.raises(StateValueError):
        await state.set("users", "u1", 1, ttl=ttl)
    with pytest.raises(StateValueError):
        await state.set("users", "new", 1, ttl=ttl)
    with pytest.raises(StateValueError):
        await state.update("users", "u1", [increment("age")], ttl=ttl)
    assert await snapshot(state) == before


# --------------------------------------------------------------------------------------------------------------
# items / keys / count (1.5)
# --------------------------------------------------------------------------------------------------------------


async def _fill(state, scope: str, keys: list[str]) -> None:
    for key in keys:
        await state.set(scope, key, {"key": key})


PAGE_KEYS = ["a", "a1", "a2", "ab", "b", "b1", "ba", "c", "é", "😀"]


async def test_items_returns_entries_in_key_order(state):
    await _fill(state, "s", list(reversed(PAGE_KEYS)))
    await state.update("s", "b", [increment()])
    items = await state.items("s")
    assert all(isinstance(e, StateEntry) for e in items)
    assert [e.key for e in items] == PAGE_KEYS
    assert [e.value for e in items if e.key != "b"] == [{"key": k} for k in PAGE_KEYS if k != "b"]
    assert {e.key: e.version for e in items}["b"] == 2
    assert {e.key: e.version for e in items}["a"] == 1
    assert all(e.expires_at is None for e in items)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"prefix": "a"}, ["a", "a1", "a2", "ab"]),
        ({"prefix": "b"}, ["b", "b1", "ba"]),
        ({"prefix": "ab"}, ["ab"]),
        ({"prefix": "x"}, []),
        ({"prefix": "😀"}, ["😀"]),
        ({"after": "a"}, ["a1", "a2", "ab", "b", "b1", "ba", "c", "é", "😀"]),
        ({"after": "a0"}, ["a1", "a2", "ab", "b", "b1", "ba", "c", "é", "😀"]),
        ({"after": "c"}, ["é", "😀"]),
        ({"after": "😀"}, []),
        ({"after": ""}, PAGE_KEYS),
        ({"limit": 3}, ["a", "a1", "a2"]),
        ({"limit": 100}, PAGE_KEYS),
        ({"prefix": "a", "after": "a1"}, ["a2", "ab"]),
        ({"prefix": "a", "limit": 2}, ["a", "a1"]),
        ({"prefix": "a", "after": "a", "limit": 2}, ["a1", "a2"]),
        ({"prefix": "b", "after": "a"}, ["b", "b1", "ba"]),
        ({"prefix": "a", "after": "b"}, []),
        ({"after": "b", "limit": 2}, ["b1", "ba"]),
    ],
    ids=repr,
)
async def test_items_and_keys_filters(state, kwargs, expected):
    await _fill(state, "s", PAGE_KEYS)
    await _fill(state, "s-other", ["a", "a9", "b"])
    assert [e.key for e in await state.items("s", **kwargs)] == expected
    assert await state.keys("s", **kwargs) == expected


async def test_prefix_treats_sql_wildcards_literally(state):
    keys = ["a%b", "axb", "a_b", "ayb", "a\\b", "a\\c", "a", "A%"]
    await _fill(state, "s", keys)
    assert await state.keys("s", prefix="a%") == ["a%b"]
    assert await state.keys("s", prefix="a_") == ["a_b"]
    assert await state.keys("s", prefix="a\\") == ["a\\b", "a\\c"]
    assert await state.keys("s", prefix="%") == []
    assert await state.keys("s", prefix="_") == []


async def test_prefix_is_case_sensitive_and_exact(state):
    await _fill(state, "s", ["Abc", "abc", "ab", "äb", "a\x00b"])
    assert await state.keys("s", prefix="ab") == ["ab", "abc"]
    assert await state.keys("s", prefix="A") == ["Abc"]
    assert await state.keys("s", prefix="a\x00") == ["a\x00b"]
    assert await state.keys("s", prefix="ä") == ["äb"]


@pytest.mark.parametrize("page_size", [1, 3, 10, 100])
@pytest.mark.parametrize("prefix", [None, "k1"])
async def test_walking_pages_covers_everything_exactly_once(state, page_size, prefix):
    # Given 57 keys with mixed characters (and another scope that must not leak in)
    keys = [f"k{i}" for i in range(40)] + [f"k1-{c}" for c in "αβγ😀"] + ["z", "é", "ß", "k", "k1", "A", "~"]
    keys += ["\uffff", "\U0001f600x", "k1\x00", "k1 ", "k1~", "0", "9"]
    await _fill(state, "s", keys)
    await _fill(state, "t", keys[:5])
    expected = sorted({k for k in keys if prefix is None or k.startswith(prefix)})
    # When walking pages, passing the last key of each page as `after`
    seen: list[str] = []
    after = None
    while True:
        page = await state.items("s", prefix=prefix, after=after, limit=page_size)
        assert len(page) <= page_size
        if not page:
            break
        seen.extend(e.key for e in page)
        after = page[-1].key
    # Then every key comes exactly once, in order
    assert seen == expected
    # And keys() pages the same way
    seen_keys: list[str] = []
    after = None
    while page_keys := await state.keys("s", prefix=prefix, after=after, limit=page_size):
        seen_keys.extend(page_keys)
        after = page_keys[-1]
    assert seen_keys == expected


async def test_count_counts_live_keys(state, clock):
    assert await state.count("s") == 0
    await _fill(state, "s", ["a", "b", "c"])
    await state.set("s", "t", 1, ttl=5)
    await state.set("other", "a", 1)
    assert await state.count("s") == 4
    await state.delete("s", "a")
    assert await state.count("s") == 3
    clock.advance(6)
    assert await state.count("s") == 2
    await state.clear("s")
    assert await state.count("s") == 0
    assert await state.count("other") == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"limit": -1}, {"limit": "3"}, {"limit": 1.5}, {"prefix": 5}, {"after": 5}, {"prefix": b"a"}],
    ids=repr,
)
async def test_items_bad_arguments_raise_state_value_error(state, kwargs):
    await populate(state)
    before = await snapshot(state)
    with pytest.raises(StateValueError):
        await state.items("users", **kwargs)
    with pytest.raises(StateValueError):
        await state.keys("users", **kwargs)
    assert await snapshot(state) == before


# --------------------------------------------------------------------------------------------------------------
# Errors and lifecycle
# --------------------------------------------------------------------------------------------------------------


def test_error_hierarchy():
    from motia import StateBackendError, StateBackendUnavailable, StateTimeout

    cls: type[StateError]
    for cls in (StateValueError, InvalidUpdateError):
        assert issubclass(cls, StateError)
        assert issubclass(cls, MotiaError)
        assert issubclass(cls, ValueError)
    for cls in (StateConflictError, StateClosedError, StateBackendError, StateBackendUnavailable, StateTimeout):
        assert issubclass(cls, StateError)
    assert issubclass(StateBackendUnavailable, StateBackendError)
    assert issubclass(StateTimeout, StateBackendError)


def _all_calls(sm: StateManager) -> dict[str, Any]:
    return {
        "get": lambda: sm.get("s", "k"),
        "set": lambda: sm.set("s", "k", 1),
        "update": lambda: sm.update("s", "k", [increment()]),
        "delete": lambda: sm.delete("s", "k"),
        "list": lambda: sm.list("s"),
        "clear": lambda: sm.clear("s"),
        "list_groups": lambda: sm.list_groups(),
        "get_entry": lambda: sm.get_entry("s", "k"),
        "items": lambda: sm.items("s"),
        "keys": lambda: sm.keys("s"),
        "count": lambda: sm.count("s"),
        "purge_expired": lambda: sm.purge_expired(),
    }


async def test_closed_manager_raises_state_closed_error(state_factory):
    # Given a manager that was used and closed
    sm = state_factory()
    await sm.set("s", "k", 1)
    await sm.aclose()
    # Then every operation raises StateClosedError
    for name, call in _all_calls(sm).items():
        with pytest.raises(StateClosedError):
            await call()
            pytest.fail(f"{name} worked on a closed manager")


async def test_aclose_is_idempotent(state_factory):
    sm = state_factory()
    await sm.aclose()
    await sm.aclose()
    with pytest.raises(StateClosedError):
        await sm.get("s", "k")


async def test_async_with_closes_on_exit(backend_url, clock):
    # When a manager is used as an async context manager
    async with StateManager.from_url(backend_url, clock=clock) as sm:
        assert isinstance(sm, StateManager)
        await sm.set("s", "k", 1)
        assert await sm.get("s", "k") == 1
    # Then it is closed afterwards
    with pytest.raises(StateClosedError):
        await sm.get("s", "k")


async def test_failed_calls_do_not_poison_the_manager(state):
    # A broken call in the middle of a sequence does not poison the manager
    await state.set("s", "k", 1)
    with pytest.raises(StateValueError):
        await state.set("s", "k", math.nan)
    with pytest.raises(InvalidUpdateError):
        await state.update("s", "k", [{"type": "bogus"}])
    with pytest.raises(StateConflictError):
        await state.set("s", "k", 2, if_version=7)
    assert await state.get("s", "k") == 1
    assert (await state.set("s", "k", 2)).version == 2


# --------------------------------------------------------------------------------------------------------------
# More value and name edge cases
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


async def test_unicode_keys_are_compared_exactly_not_normalized_or_case_folded(state):
    # Given keys that normalization, case folding or trailing-space trimming would merge
    keys = ["é", "e\u0301", "K", "k", "\u212a", "a", "a ", "ß", "ss", "ﬁ", "fi"]
    for i, key in enumerate(keys):
        await state.set("s", key, i)
    # Then they are all distinct
    assert await state.count("s") == len(keys)
    for i, key in enumerate(keys):
        assert await state.get("s", key) == i
    assert await state.keys("s") == sorted(keys)


async def test_over_limit_names_are_refused_by_reads_too(state):
    await populate(state)
    before = await snapshot(state)
    for call in (
        lambda: state.get("users", "k" * 1025),
        lambda: state.get_entry("users", "k" * 1025),
        lambda: state.delete("users", "k" * 1025),
        lambda: state.get("s" * 257, "u1"),
        lambda: state.list("s" * 257),
        lambda: state.clear("s" * 257),
        lambda: state.count("s" * 257),
        lambda: state.items("s" * 257),
    ):
        with pytest.raises(StateValueError):
            await call()
    assert await snapshot(state) == before


@pytest.mark.parametrize("if_version", [-1, "1", 1.5, [1]], ids=repr)
async def test_bad_if_version_raises_and_writes_nothing(state, if_version):
    await populate(state)
    before = await snapshot(state)
    for call in (
        lambda: state.set("users", "u1", 1, if_version=if_version),
        lambda: state.update("users", "u1", [increment("age")], if_version=if_version),
        lambda: state.delete("users", "u1", if_version=if_version),
    ):
        with pytest.raises(StateValueError):
            await call()
    assert await snapshot(state) == before


async def test_default_clock_is_wall_time(backend_url):
    # Given a manager without a clock option
    async with StateManager.from_url(backend_url) as sm:
        before = time.time()
        await sm.set("s", "k", 1, ttl=3600)
        after = time.time()
        # Then expires_at is Unix time in seconds
        expires_at = (await sm.get_entry("s", "k")).expires_at  # type: ignore[union-attr]
    assert expires_at is not None
    assert before + 3600 - 1 <= expires_at <= after + 3600 + 1
