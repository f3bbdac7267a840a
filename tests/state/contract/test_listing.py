"""The state contract for items, keys and count: filters and pages (SPEC 1.5), run unchanged against every backend.

Every test gets ``state`` (an opened async StateManager on a fresh store) once per backend, or
``state_factory`` when it needs options such as ``max_value_bytes``. ``clock`` is the fake clock those managers use.
"""

from __future__ import annotations

import pytest

from motia import (
    StateEntry,
    StateValueError,
)
from tests.state.contract.helpers import increment, populate, snapshot


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


async def test_motia_0x_names_get_group_and_trace_ids(state):
    # Motia 0.x steps call context.state.get_group(group_id) and state.trace_ids()
    await state.set("orders", "b", {"n": 2})
    await state.set("orders", "a", {"n": 1})
    await state.set("carts", "c", 3)
    assert await state.get_group("orders") == [{"n": 1}, {"n": 2}] == await state.list("orders")
    assert await state.get_group("none") == []
    assert await state.trace_ids() == ["carts", "orders"]
