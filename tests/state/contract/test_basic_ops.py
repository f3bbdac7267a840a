"""The state contract for get, set, delete, list, clear and list_groups (SPEC 1.1, 9), run unchanged against every
backend.

Every test gets ``state`` (an opened async StateManager on a fresh store) once per backend, or
``state_factory`` when it needs options such as ``max_value_bytes``. ``clock`` is the fake clock those managers use.
"""

from __future__ import annotations

import pytest

from motia import (
    StateSetResult,
)

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
