"""The shortcuts every state write takes (issue 15) give what the full path gives: the ``observed`` wrapper hands
back the method's own coroutine while nothing observes, plain names skip the full checks, and
``encode_value`` folds ``encode(to_json(value))`` into one call."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from motia import StateManager
from motia.exceptions import StateValueError
from motia.state import observe
from motia.state import values as _values


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    @contextmanager
    def operation(
        self, kind: str, op: str, backend: str, target: str | tuple[str, str], key: str | None
    ) -> Iterator[None]:
        try:
            yield
        except BaseException as exc:
            self.seen.append((kind, op, backend, target, key, type(exc).__name__))
            raise
        self.seen.append((kind, op, backend, target, key, None))


async def test_an_unobserved_operation_is_the_methods_own_coroutine() -> None:
    async with StateManager.from_url("memory://") as state:
        assert observe.observer is None
        call = state.set("s", "k", 1)
        # Then the call is the method's coroutine itself, with no wrapper coroutine around it
        assert inspect.iscoroutine(call) and call.cr_code.co_name == "set"
        assert (await call).version == 1
        if sys.version_info >= (3, 12):  # markcoroutinefunction exists from 3.12
            assert inspect.iscoroutinefunction(StateManager.set)


async def test_an_observed_operation_runs_inside_the_observer_with_the_same_result() -> None:
    recorder = Recorder()
    async with StateManager.from_url("memory://") as state:
        old = observe.set_observer(recorder)
        try:
            result = await state.set("s", "k", {"n": 1})
            with pytest.raises(StateValueError):
                await state.set("s", "", 1)
        finally:
            observe.set_observer(old)
        assert (result.old_value, result.new_value, result.version) == (None, {"n": 1}, 1)
        assert recorder.seen == [
            ("state", "set", "memory", "s", "k", None),
            ("state", "set", "memory", "s", "", "StateValueError"),
        ]


class Name(str):
    pass


NAMES: list[object] = ["s", "é-ü", Name("sub"), "", "x" * 1025, 5, None, "bad\udc80", "ok"]


@pytest.mark.parametrize("name", NAMES, ids=repr)
async def test_names_are_accepted_or_refused_as_the_full_checks_do(name: object) -> None:
    def expected(check: Any) -> str | None:
        try:
            check(name)
        except StateValueError as exc:
            return str(exc)
        return None

    async with StateManager.from_url("memory://") as state:
        for kind, check, call in (
            ("key", _values.check_key, lambda: state.set("s", name, 1)),  # type: ignore[arg-type]
            ("scope", _values.check_scope, lambda: state.update(name, "k", [])),  # type: ignore[arg-type]
        ):
            error = expected(check)
            if error is None:
                await call()
            else:
                with pytest.raises(StateValueError) as raised:
                    await call()
                assert str(raised.value) == error, kind


def _cycle() -> dict[str, Any]:
    looped: dict[str, Any] = {"a": []}
    looped["a"].append(looped)
    return looped


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1.5, None, {"c": "d"}]},
        2**70,
        float("nan"),
        "\udc80",
        {"big": "x" * 2000},
        object(),
        {"a": [1, {"b": float("inf")}]},
        {"a": {1: 2}},
        _cycle(),
    ],
    ids=["json", "big-int", "nan", "surrogate", "too-large", "not-json", "nested-inf", "nested-key", "cycle"],
)
def test_encode_value_is_encode_of_to_json(value: object) -> None:
    def outcome(function: Any) -> object:
        try:
            return function()
        except StateValueError as exc:
            return str(exc)

    fast = outcome(lambda: _values.encode_value(value, 1000))
    slow = outcome(lambda: _values.encode(_values.to_json(value), 1000))
    assert fast == slow


def test_encode_value_says_where_a_nested_value_is_not_json() -> None:
    with pytest.raises(StateValueError, match=r"^value\.a\[1\]\.b: inf is not valid JSON"):
        _values.encode_value({"a": [1, {"b": float("inf")}]}, 1000)
