"""The state contract for TTLs and expiry (SPEC 1.5), run unchanged against every backend.

Every test gets ``state`` (an opened async StateManager on a fresh store) once per backend, or
``state_factory`` when it needs options such as ``max_value_bytes``. ``clock`` is the fake clock those managers use.
"""

from __future__ import annotations

import math
import time

import pytest

from motia import (
    StateManager,
    StateValueError,
)
from tests.state.contract.helpers import increment, populate, snapshot


async def test_ttl_key_is_visible_until_expiry(state, clock):
    # Given a key set with a 10 s TTL
    await state.set("s", "k", {"a": 1}, ttl=10)
    entry = await state.get_entry("s", "k")
    assert entry.expires_at == pytest.approx(clock() + 10)
    # When 9 s pass, it is still there
    clock.advance(9)
    assert await state.get("s", "k") == {"a": 1}
    assert await state.count("s") == 1


async def test_expired_key_is_invisible_to_every_read_at_once(state, clock):
    # Given one expiring key alone in its scope, and an expiring key next to a permanent one
    await state.set("temp", "k", {"a": 1}, ttl=10)
    await state.set("mixed", "gone", 1, ttl=10)
    await state.set("mixed", "stays", 2)
    # When the clock passes the expiry (no purge, no wait)
    clock.advance(10.5)
    # Then no read sees the expired keys
    assert await state.get("temp", "k") is None
    assert await state.get_entry("temp", "k") is None
    assert await state.list("temp") == []
    assert await state.items("temp") == []
    assert await state.keys("temp") == []
    assert await state.count("temp") == 0
    assert await state.get("mixed", "gone") is None
    assert await state.list("mixed") == [2]
    assert await state.keys("mixed") == ["stays"]
    assert [e.key for e in await state.items("mixed")] == ["stays"]
    assert await state.count("mixed") == 1
    assert await state.list_groups() == ["mixed"]


async def test_set_without_ttl_makes_key_permanent(state, clock):
    await state.set("s", "k", 1, ttl=10)
    result = await state.set("s", "k", 2)
    assert result.old_value == 1
    assert (await state.get_entry("s", "k")).expires_at is None
    clock.advance(1000)
    assert await state.get("s", "k") == 2


async def test_set_with_ttl_resets_expiry(state, clock):
    await state.set("s", "k", 1, ttl=10)
    clock.advance(8)
    await state.set("s", "k", 2, ttl=10)
    assert (await state.get_entry("s", "k")).expires_at == pytest.approx(clock() + 10)
    clock.advance(8)
    assert await state.get("s", "k") == 2


async def test_update_without_ttl_keeps_expiry(state, clock):
    # Given a key expiring in 10 s
    await state.set("s", "k", {"n": 0}, ttl=10)
    expires_at = (await state.get_entry("s", "k")).expires_at
    # When it is updated without ttl
    clock.advance(5)
    await state.update("s", "k", [increment()])
    # Then the expiry is unchanged and still applies
    entry = await state.get_entry("s", "k")
    assert entry.expires_at == pytest.approx(expires_at)
    assert entry.value == {"n": 1}
    clock.advance(5.5)
    assert await state.get("s", "k") is None


async def test_update_without_ttl_on_permanent_key_stays_permanent(state, clock):
    await state.set("s", "k", {"n": 0})
    await state.update("s", "k", [increment()])
    assert (await state.get_entry("s", "k")).expires_at is None


async def test_update_with_ttl_sets_expiry(state, clock):
    await state.set("s", "k", {"n": 0})
    await state.update("s", "k", [increment()], ttl=5)
    assert (await state.get_entry("s", "k")).expires_at == pytest.approx(clock() + 5)
    await state.update("s", "new", [increment()], ttl=7)
    assert (await state.get_entry("s", "new")).expires_at == pytest.approx(clock() + 7)
    clock.advance(6)
    assert await state.get("s", "k") is None
    assert await state.get("s", "new") == {"n": 1}


async def test_fractional_ttl(state, clock):
    await state.set("s", "k", 1, ttl=0.5)
    clock.advance(0.25)
    assert await state.get("s", "k") == 1
    clock.advance(0.5)
    assert await state.get("s", "k") is None


async def test_expired_key_is_absent_for_writes(state, clock):
    # Given keys that expired
    await state.set("s", "a", {"n": 5}, ttl=1)
    await state.set("s", "a", {"n": 6}, ttl=1)
    await state.set("s", "b", {"n": 5}, ttl=1)
    await state.set("s", "c", "old", ttl=1)
    await state.set("s", "d", "old", ttl=1)
    clock.advance(2)
    # Then set sees no old value and starts at version 1
    result = await state.set("s", "a", "new")
    assert result.old_value is None
    assert result.version == 1
    # update starts from {}
    result = await state.update("s", "b", [increment()])
    assert result.old_value is None
    assert result.new_value == {"n": 1}
    assert result.version == 1
    # delete finds nothing
    assert await state.delete("s", "c") is None
    # if_version=0 (only if absent) succeeds
    assert (await state.set("s", "d", "fresh", if_version=0)).version == 1
    assert await state.list("s") == ["new", {"n": 1}, "fresh"]


async def test_purge_expired_removes_expired_keys_and_counts_them(state, clock):
    # Given 3 keys that will expire, 1 expiring later and 2 permanent ones
    await state.set("s1", "a", 1, ttl=10)
    await state.set("s1", "b", 2, ttl=10)
    await state.set("s2", "c", 3, ttl=5)
    await state.set("s2", "later", 4, ttl=100)
    await state.set("s1", "p", 5)
    await state.set("s3", "p", 6)
    clock.advance(20)
    # When expired keys are purged
    removed = await state.purge_expired()
    # Then exactly the 3 expired keys are counted, and a second purge finds nothing
    assert removed == 3
    assert await state.purge_expired() == 0
    assert await state.keys("s1") == ["p"]
    assert await state.keys("s2") == ["later"]
    assert await state.list_groups() == ["s1", "s2", "s3"]
    # And the later key still expires on time
    clock.advance(100)
    assert await state.purge_expired() == 1
    assert await state.list_groups() == ["s1", "s3"]


async def test_purge_expired_on_empty_store(state):
    assert await state.purge_expired() == 0


@pytest.mark.parametrize("ttl", [0, -1, -0.5, "10", math.nan, [10]], ids=repr)
async def test_bad_ttl_raises_and_writes_nothing(state, ttl):
    await populate(state)
    before = await snapshot(state)
    with pytest.raises(StateValueError):
        await state.set("users", "u1", 1, ttl=ttl)
    with pytest.raises(StateValueError):
        await state.set("users", "new", 1, ttl=ttl)
    with pytest.raises(StateValueError):
        await state.update("users", "u1", [increment("age")], ttl=ttl)
    assert await snapshot(state) == before


async def test_default_clock_is_wall_time(backend_url):
    # Given a manager without a clock option
    async with StateManager.from_url(backend_url) as sm:
        before = time.time()
        await sm.set("s", "k", 1, ttl=3600)
        after = time.time()
        # Then expires_at is Unix time in seconds
        expires_at = (await sm.get_entry("s", "k")).expires_at  # type: ignore[union-attr]
    assert expires_at is not None
    assert before + 3600 - 1 <= expires_at <= after + 3600 + 1
