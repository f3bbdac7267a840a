"""The state contract for update operations (SPEC 1.2, 9), run unchanged against every backend.

Every test gets ``state`` (an opened async StateManager on a fresh store) once per backend, or
``state_factory`` when it needs options such as ``max_value_bytes``. ``clock`` is the fake clock those managers use.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from motia import (
    InvalidUpdateError,
    MotiaError,
    StateError,
    StateValueError,
)
from tests.state.contract.helpers import dumps, increment, snapshot

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
