"""Table tests for value, scope and key validation (no I/O)."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import uuid
from typing import Any

import pydantic
import pytest

from motia.exceptions import StateValueError
from motia.state.values import (
    MAX_DEPTH,
    check_key,
    check_scope,
    check_ttl,
    decode,
    encode,
    encode_value,
    prefix_upper_bound,
    to_json,
)


class Color(enum.IntEnum):
    RED = 1


class Profile(pydantic.BaseModel):
    name: str
    born: datetime.date
    tags: list[str] = []


@dataclasses.dataclass
class Point:
    x: int
    y: float


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ({"a": [1, 2.5, "x", True, None]}, {"a": [1, 2.5, "x", True, None]}),
        ((1, 2), [1, 2]),
        ({"t": (1, {"u": 2})}, {"t": [1, {"u": 2}]}),
        (Profile(name="a", born=datetime.date(2020, 1, 2)), {"name": "a", "born": "2020-01-02", "tags": []}),
        (
            {"nested": Profile(name="b", born=datetime.date(2021, 3, 4))},
            {"nested": {"name": "b", "born": "2021-03-04", "tags": []}},
        ),
        (Point(1, 2.0), {"x": 1, "y": 2.0}),
        ([Point(0, 0.5)], [{"x": 0, "y": 0.5}]),
        (Color.RED, 1),
        ("ünïcödé ✓ 🎉 \x00", "ünïcödé ✓ 🎉 \x00"),
        (2**63 - 1, 2**63 - 1),
        # beyond 64 bits: exact, never a float (stdlib JSON takes over from orjson)
        (2**64, 2**64),
        ({"big": -(10**40), "list": [10**30, 1.5]}, {"big": -(10**40), "list": [10**30, 1.5]}),
        # a long digit string is not a number: the slow decoder must read it the same
        ({"id": "123456789012345678901234567890", "n": 1}, {"id": "123456789012345678901234567890", "n": 1}),
    ],
)
def test_json_values_round_trip(value: Any, stored: Any) -> None:
    decoded = decode(encode_value(value, 1 << 20))
    assert decoded == stored
    assert repr(decoded) == repr(stored)  # same types too: an int stays an int


def _cycle() -> Any:
    items: list[Any] = []
    items.append(items)
    return items


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (float("nan"), ["nan"]),
        ({"a": [1, float("inf")]}, ["value.a[1]", "inf"]),
        (datetime.datetime(2020, 1, 1), ["datetime"]),
        ({"when": datetime.date(2020, 1, 1)}, ["value.when", "date"]),
        ({1, 2}, ["set"]),
        (b"bytes", ["bytes"]),
        ({1: "x"}, ["dict keys must be str"]),
        ({"a": {(1, 2): "x"}}, ["dict keys"]),
        (uuid.UUID(int=1), ["UUID"]),
        (decimal.Decimal("1.5"), ["Decimal"]),
        (object(), ["object"]),
        (_cycle(), ["cycle"]),
        ("\ud800", ["cannot be stored"]),
    ],
)
def test_non_json_values_are_rejected(value: Any, words: list[str]) -> None:
    with pytest.raises(StateValueError) as caught:
        encode_value(value, 1 << 20)
    for word in words:
        assert word in str(caught.value)


def test_size_limit_is_on_the_encoded_bytes() -> None:
    exactly = "x" * 98  # encodes to 100 bytes with its quotes
    assert len(encode(exactly, 100)) == 100
    with pytest.raises(StateValueError, match="max_value_bytes=100"):
        encode(exactly + "x", 100)


def test_to_json_does_not_copy_plain_values() -> None:
    value = {"a": [1, 2]}
    assert to_json(value) is value


@pytest.mark.parametrize(
    ("check", "name", "words"),
    [
        (check_scope, "", ["scope", "empty"]),
        (check_scope, "s" * 257, ["scope", "257", "256"]),
        (check_key, "k" * 1025, ["key", "1025", "1024"]),
        (check_key, 5, ["key", "str", "int"]),
        (check_key, None, ["key", "NoneType"]),
        (check_scope, "a\ud800", ["surrogate"]),
    ],
)
def test_bad_names(check: Any, name: Any, words: list[str]) -> None:
    with pytest.raises(StateValueError) as caught:
        check(name)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize("name", ["a", "s" * 256, "a:b/c d", "ключ", "🎉", "\x00"])
def test_good_scope_names(name: str) -> None:
    assert check_scope(name) == name


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), True, "5"])
def test_bad_ttl(ttl: Any) -> None:
    with pytest.raises(StateValueError, match="ttl"):
        check_ttl(ttl)


@pytest.mark.parametrize(
    ("prefix", "bound"),
    [
        ("ab", "ac"),
        ("a\U0010ffff", "b"),
        ("\U0010ffff", None),
        ("a\ud7ff", "a\ue000"),
        ("user:", "user;"),
    ],
)
def test_prefix_upper_bound(prefix: str, bound: str | None) -> None:
    assert prefix_upper_bound(prefix) == bound


@pytest.mark.parametrize("offset", range(8))
@pytest.mark.parametrize("run", [16, 17, 19, 20, 21, 24, 40])
def test_decode_takes_the_exact_path_for_a_digit_run_of_any_length_and_alignment(offset: int, run: int) -> None:
    # Given a lone surrogate, which the stdlib reads and orjson refuses, beside a digit run at every alignment
    # (the pre-check samples every 4th byte: a run of 20 must never slip between its samples)
    digits = ("1234567890" * 4)[:run]
    data = b'["\\ud800", ' + b" " * offset + b'"' + digits.encode() + b'", 1764448229.1234567]'
    if run >= 20:
        # Then a run of 20 or more takes the stdlib's exact road
        assert decode(data) == ["\ud800", digits, 1764448229.1234567]
        big = b"[" + b" " * offset + digits.encode() + b"]"
        assert decode(big) == [int(digits)]  # an int beyond 64 bits stays exact
    else:
        # And a shorter one orjson's (which refuses the surrogate), as before the pre-check
        with pytest.raises(ValueError):
            decode(data)


@pytest.mark.parametrize("empty", [{}, []])
@pytest.mark.parametrize("container", [dict, list])
def test_an_empty_object_or_list_counts_as_a_level_of_nesting(empty: Any, container: type) -> None:
    # Empty containers are skipped without a call (issue 15); the depth limit still counts them
    def nested(levels: int) -> Any:
        value: Any = empty
        for _ in range(levels):
            value = {"a": value} if container is dict else [value]
        return value

    assert encode_value(nested(MAX_DEPTH), 1 << 20)
    with pytest.raises(StateValueError, match="nested deeper than 200"):
        encode_value(nested(MAX_DEPTH + 1), 1 << 20)
