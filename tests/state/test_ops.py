"""Table tests for the pure update-operation logic (no I/O)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from motia.exceptions import InvalidUpdateError
from motia.state import ops
from motia.state.ops import Operation, apply_operations, parse_operations, parse_path


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        (None, ()),
        ("", ()),
        ([], ()),
        ("a", ("a",)),
        ("a.b.c", ("a", "b", "c")),
        ("items.0.qty", ("items", "0", "qty")),
        (["a.b", "c"], ("a.b", "c")),
        (["list", 2], ("list", 2)),
        ([""], ("",)),
    ],
)
def test_parse_path(path: Any, segments: tuple[Any, ...]) -> None:
    assert parse_path(path) == segments


@pytest.mark.parametrize("path", ["a..b", ".a", "a.", 5, {"a": 1}, ["a", None], ["a", -1], ["a", True]])
def test_parse_path_rejects(path: Any) -> None:
    with pytest.raises(ValueError):
        parse_path(path)


# (document before, operations, document after)
APPLY_TABLE: list[tuple[Any, list[dict[str, Any]], Any]] = [
    # set: top level, nested (creating intermediates), root, into a list, appending at the end
    ({}, [{"type": "set", "path": "name", "value": "Alice"}], {"name": "Alice"}),
    ({}, [{"type": "set", "path": "profile.age", "value": 30}], {"profile": {"age": 30}}),
    ({"a": 1}, [{"type": "set", "path": "", "value": [1, 2]}], [1, 2]),
    ({"a": 1}, [{"type": "set", "value": {"b": 2}}], {"b": 2}),
    (
        {"items": [{"qty": 1}, {"qty": 2}]},
        [{"type": "set", "path": "items.1.qty", "value": 5}],
        {"items": [{"qty": 1}, {"qty": 5}]},
    ),
    ({"items": [1, 2]}, [{"type": "set", "path": "items.2", "value": 3}], {"items": [1, 2, 3]}),
    ({}, [{"type": "set", "path": ["a.b", "c"], "value": 1}], {"a.b": {"c": 1}}),
    ({"0": "x"}, [{"type": "set", "path": "0", "value": "y"}], {"0": "y"}),
    # delete / remove: present, missing (no-op), through missing intermediates (no-op), list element
    ({"a": 1, "b": 2}, [{"type": "delete", "path": "a"}], {"b": 2}),
    ({"a": 1}, [{"type": "remove", "path": "zzz"}], {"a": 1}),
    ({"a": 1}, [{"type": "delete", "path": "x.y.z"}], {"a": 1}),
    ({"l": [1, 2, 3]}, [{"type": "delete", "path": "l.1"}], {"l": [1, 3]}),
    ({"l": [1]}, [{"type": "delete", "path": "l.7"}], {"l": [1]}),
    # increment / decrement: value or by, missing starts at 0, ints stay ints, floats allowed
    ({"n": 1}, [{"type": "increment", "path": "n", "value": 2}], {"n": 3}),
    ({}, [{"type": "increment", "path": "n", "by": 1}], {"n": 1}),
    ({"n": 10}, [{"type": "decrement", "path": "n", "value": 3}], {"n": 7}),
    ({"n": 10}, [{"type": "decrement", "path": "n", "by": 2.5}], {"n": 7.5}),
    ({}, [{"type": "increment", "path": "a.b.c", "value": 1}], {"a": {"b": {"c": 1}}}),
    ({"n": 1.5}, [{"type": "increment", "path": "n", "value": 1}], {"n": 2.5}),
    (5, [{"type": "increment", "value": 1}], 6),
    # merge: shallow, into missing, at the root
    (
        {"p": {"a": 1, "b": {"x": 1}}},
        [{"type": "merge", "path": "p", "value": {"b": {"y": 2}, "c": 3}}],
        {"p": {"a": 1, "b": {"y": 2}, "c": 3}},
    ),
    ({}, [{"type": "merge", "path": "p", "value": {"a": 1}}], {"p": {"a": 1}}),
    ({"a": 1}, [{"type": "merge", "value": {"b": 2}}], {"a": 1, "b": 2}),
    # append: to an existing list, creating the list
    ({"h": [1]}, [{"type": "append", "path": "h", "value": {"at": 2}}], {"h": [1, {"at": 2}]}),
    ({}, [{"type": "append", "path": "h", "value": 1}], {"h": [1]}),
    # several operations apply in order
    (
        {},
        [
            {"type": "set", "path": "a", "value": 1},
            {"type": "increment", "path": "a", "value": 1},
            {"type": "append", "path": "log", "value": "x"},
            {"type": "delete", "path": "a"},
        ],
        {"log": ["x"]},
    ),
    # a missing key starts as {} (the caller passes it); a stored null is not missing: see ERROR_TABLE
    ({}, [{"type": "set", "path": "a", "value": 1}], {"a": 1}),
    # dict order is kept: new keys go last, replaced keys stay in place
    (
        {"z": 1, "a": 2},
        [{"type": "set", "path": "z", "value": 3}, {"type": "set", "path": "m", "value": 4}],
        {"z": 3, "a": 2, "m": 4},
    ),
]


@pytest.mark.parametrize(("before", "operations", "after"), APPLY_TABLE)
def test_apply(before: Any, operations: list[dict[str, Any]], after: Any) -> None:
    result = apply_operations(copy.deepcopy(before), parse_operations(operations))
    assert result == after
    if isinstance(after, dict):
        assert list(result) == list(after)  # key order, not only equality


# (document, operations, index of the failing op, words the message must contain)
ERROR_TABLE: list[tuple[Any, Any, int | None, list[str]]] = [
    ({"n": "x"}, [{"type": "increment", "path": "n", "value": 1}], 0, ["increment", "'n'", "str"]),
    ({"n": True}, [{"type": "increment", "path": "n", "value": 1}], 0, ["bool"]),
    ({"n": None}, [{"type": "increment", "path": "n", "value": 1}], 0, ["null"]),
    (None, [{"type": "set", "path": "a", "value": 1}], 0, ["'a'"]),
    ({"n": 1}, [{"type": "increment", "path": "n", "value": True}], 0, ["amount"]),
    ({"n": 1}, [{"type": "increment", "path": "n", "value": "1"}], 0, ["amount"]),
    ({"n": 1}, [{"type": "increment", "path": "n", "value": float("nan")}], 0, ["amount"]),
    ({"n": 1}, [{"type": "increment", "path": "n"}], 0, ["missing"]),
    ({"n": 1}, [{"type": "increment", "path": "n", "value": 1, "by": 1}], 0, ["not both"]),
    ({"n": 1e308}, [{"type": "increment", "path": "n", "value": 1e308}], 0, ["finite"]),
    ({"a": 5}, [{"type": "set", "path": "a.b", "value": 1}], 0, ["'a'", "int"]),
    ({"a": "s"}, [{"type": "set", "path": "a.b.c", "value": 1}], 0, ["'a'"]),
    ({"a": None}, [{"type": "set", "path": "a.b", "value": 1}], 0, ["'a'", "null"]),
    ({"l": [1]}, [{"type": "set", "path": "l.x", "value": 1}], 0, ["not a list index"]),
    ({"l": [1]}, [{"type": "set", "path": "l.5", "value": 1}], 0, ["out of range"]),
    ({"m": 1}, [{"type": "merge", "path": "m", "value": {"a": 1}}], 0, ["merge"]),
    ({}, [{"type": "merge", "path": "m", "value": [1]}], 0, ["object"]),
    ({"h": {}}, [{"type": "append", "path": "h", "value": 1}], 0, ["append"]),
    ({}, [{"type": "explode", "path": "a"}], 0, ["unknown type", "'explode'"]),
    ({}, [{"type": "set", "path": "a"}], 0, ["missing 'value'"]),
    ({}, [{"type": "set", "path": "a", "value": 1, "extra": 2}], 0, ["unexpected", "extra"]),
    ({}, [{"type": "delete", "path": ""}], 0, ["whole value"]),
    ({}, [{"type": "set", "path": "a..b", "value": 1}], 0, ["invalid path"]),
    ({}, [{"type": "set", "path": "a", "value": float("inf")}], 0, ["inf"]),
    ({}, [{"type": "set", "path": "a", "value": {1: 2}}], 0, ["dict keys"]),
    ({}, ["set a 1"], 0, ["must be a dict"]),
    ({}, [{"path": "a", "value": 1}], 0, ["unknown type"]),
    ({}, {"type": "set"}, None, ["list"]),
    # the failing op is named by its index, after good ones
    (
        {},
        [{"type": "set", "path": "a", "value": 1}, {"type": "increment", "path": "a.b", "value": 1}],
        1,
        ["op 1", "'a.b'"],
    ),
]


@pytest.mark.parametrize(("document", "operations", "index", "words"), ERROR_TABLE)
def test_errors_name_index_and_path(document: Any, operations: Any, index: int | None, words: list[str]) -> None:
    original = copy.deepcopy(document)
    with pytest.raises(InvalidUpdateError) as caught:
        apply_operations(copy.deepcopy(document), parse_operations(operations))
    assert caught.value.index == index
    message = str(caught.value)
    if index is not None:
        assert f"op {index}" in message
    for word in words:
        assert word in message
    assert document == original


def test_operation_values_are_not_shared_between_applications() -> None:
    # Given one parsed operation list applied twice (as a retrying backend would)
    operations = parse_operations(
        [{"type": "set", "path": "a", "value": {"n": 1}}, {"type": "increment", "path": "a.n", "value": 1}]
    )
    # When each application mutates the value it inserted
    first = apply_operations({}, operations)
    second = apply_operations({}, operations)
    # Then neither sees the other's change, and the caller's op value is untouched
    assert first == second == {"a": {"n": 2}}


def test_caller_value_is_not_aliased() -> None:
    value = {"n": 1}
    result = apply_operations({}, parse_operations([{"type": "set", "path": "a", "value": value}]))
    result["a"]["n"] = 99
    assert value == {"n": 1}


def test_big_ints_through_update_operations() -> None:
    # An increment may leave 64 bits; the operand itself may be bigger than 64 bits
    result = apply_operations(
        {"n": 2**63 - 1},
        parse_operations(
            [{"type": "increment", "path": "n", "value": 2**70}, {"type": "set", "path": "m", "value": 10**30}]
        ),
    )
    assert result == {"n": 2**63 - 1 + 2**70, "m": 10**30}
    assert type(result["n"]) is int


def test_parsed_operations_are_frozen_and_compare_by_their_fields() -> None:
    # Operations are built through their slots (issue 15): still immutable, still equal field by field
    parsed = parse_operations([{"type": "decrement", "path": "a.b", "by": 2}, {"type": "delete", "path": ["x"]}])
    assert parsed == [Operation("increment", ("a", "b"), 0, "a.b", -2), Operation("delete", ("x",), 1, ["x"])]
    assert parsed[1].operand is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed[0].kind = "set"  # type: ignore[misc]


def test_a_repeated_increment_is_parsed_once_and_alike() -> None:
    # Given an increment parsed once (issue 15: kept, by index, type, path and amount)
    first = parse_operations([{"type": "increment", "path": "hits", "value": 3}])
    # When the same one is given again, alone or in a list of several
    again = parse_operations([{"type": "increment", "path": "hits", "value": 3}])
    listed = parse_operations([{"type": "increment", "path": "hits", "value": 3}, {"type": "delete", "path": "x"}])
    # Then the same operation serves, equal to what a full parse makes
    assert again[0] is first[0]
    assert listed[0] is first[0]
    assert first == [Operation("increment", ("hits",), 0, "hits", 3)]
    # And what differs in any field, or only in type, is its own operation
    assert parse_operations([{"type": "decrement", "path": "hits", "value": 3}])[0].operand == -3
    assert parse_operations([{"type": "increment", "path": "hits", "value": 4}])[0].operand == 4
    assert parse_operations([{"type": "delete", "path": "x"}, {"type": "increment", "path": "hits", "value": 3}])[
        1
    ] == Operation("increment", ("hits",), 1, "hits", 3)
    as_float = parse_operations([{"type": "increment", "path": "hits", "value": 3.0}])[0].operand
    assert type(as_float) is float
    as_bool = {"type": "increment", "path": "hits", "value": True}
    with pytest.raises(InvalidUpdateError, match="finite number"):
        parse_operations([as_bool])
    assert apply_operations({"hits": 1}, parse_operations([{"type": "increment", "path": "a.b", "value": 3}])) == {
        "hits": 1,
        "a": {"b": 3},
    }


def test_a_bad_operation_of_the_kept_shape_is_refused_every_time() -> None:
    # Given operations of the shape that is looked up ({type, path, value}: str, str, int) that do not parse
    for bad in ({"type": "incr", "path": "n", "value": 1}, {"type": "merge", "path": "n", "value": 1}):
        for _ in range(2):
            # Then each is refused, the second time as the first
            with pytest.raises(InvalidUpdateError):
                parse_operations([bad])


def test_the_kept_increments_stay_bounded() -> None:
    # When increments by ever new amounts are parsed
    for amount in range(3 * ops._PARSED_MAX):
        assert parse_operations([{"type": "increment", "path": "n", "value": amount}])[0].operand == amount
    # Then no more of them are kept than the bound
    assert len(ops._PARSED) <= ops._PARSED_MAX
