"""The state contract for scope and key names (odd Unicode, ordering, refusals and length limits; SPEC 1.3), run
unchanged against every backend.

Every test gets ``state`` (an opened async StateManager on a fresh store) once per backend, or
``state_factory`` when it needs options such as ``max_value_bytes``. ``clock`` is the fake clock those managers use.
"""

from __future__ import annotations

import pytest

from motia import (
    StateValueError,
)
from tests.state.contract.helpers import increment, populate, snapshot

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
