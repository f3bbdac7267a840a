"""Typed scopes (SPEC 1.5): ``state.scope(name, Model)`` validates writes and reads, over every backend."""

from __future__ import annotations

import pydantic
import pytest

from motia.exceptions import StateValueError
from motia.state.manager import StateManager


class Address(pydantic.BaseModel):
    city: str
    zip: str | None = None


class Session(pydantic.BaseModel):
    user_id: str
    visits: int = 0
    address: Address | None = None
    tags: list[str] = []


async def test_typed_scope_round_trips_models(state: StateManager) -> None:
    sessions = state.scope("user-sessions", Session)
    await sessions.set("s1", Session(user_id="42", address=Address(city="Oslo")))
    await sessions.set("s2", {"user_id": "7"})  # a dict is validated into the model
    got = await sessions.get("s1")
    assert isinstance(got, Session) and got.address == Address(city="Oslo") and got.visits == 0
    assert [s.user_id for s in await sessions.list()] == ["42", "7"]
    page = await sessions.items(limit=1)
    assert page[0].key == "s1" and isinstance(page[0].value, Session)
    # untyped access sees the JSON form
    assert await state.get("user-sessions", "s2") == {"user_id": "7", "visits": 0, "address": None, "tags": []}
    removed = await sessions.delete("s2")
    assert isinstance(removed, Session) and await sessions.get("s2") is None


async def test_typed_scope_rejects_invalid_values_and_writes_nothing(state: StateManager) -> None:
    sessions = state.scope("user-sessions", Session)
    with pytest.raises(StateValueError) as caught:
        await sessions.set("s1", {"user_id": 42, "visits": "many"})
    assert "visits" in str(caught.value) and "Session" in str(caught.value)
    assert await state.get("user-sessions", "s1") is None


async def test_typed_update_validates_the_result_atomically(state: StateManager) -> None:
    sessions = state.scope("user-sessions", Session)
    await sessions.set("s1", Session(user_id="42"))
    result = await sessions.update("s1", [{"type": "increment", "path": "visits", "value": 2}])
    assert isinstance(result.new_value, Session) and result.new_value.visits == 2
    with pytest.raises(StateValueError):
        await sessions.update("s1", [{"type": "set", "path": "visits", "value": "lots"}])
    assert (await sessions.get("s1")).visits == 2  # type: ignore[union-attr]


async def test_typed_read_of_an_invalid_stored_value_names_the_key(state: StateManager) -> None:
    await state.set("user-sessions", "broken", {"visits": 1})
    with pytest.raises(StateValueError, match="broken"):
        await state.scope("user-sessions", Session).get("broken")
