"""The state contract for errors and the manager's life (the error tree, closing, failures that do not poison), run
unchanged against every backend.

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
    StateClosedError,
    StateConflictError,
    StateError,
    StateManager,
    StateValueError,
)
from tests.state.contract.helpers import increment


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
