"""The state contract for versions and compare-and-set (SPEC 1.5), run unchanged against every backend.

Every test gets ``state`` (an opened async StateManager on a fresh store) once per backend, or
``state_factory`` when it needs options such as ``max_value_bytes``. ``clock`` is the fake clock those managers use.
"""

from __future__ import annotations

import pytest

from motia import (
    MotiaError,
    StateConflictError,
    StateEntry,
    StateError,
    StateValueError,
)
from tests.state.contract.helpers import increment, populate, snapshot


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
