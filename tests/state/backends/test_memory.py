"""What only the memory backend has to prove: ``memory://`` is a fresh private store each time, and tick
claims are forgotten once their hold has passed."""

from __future__ import annotations

from typing import Any

import pytest

from motia.state.backends.memory import MemoryBackend
from motia.state.manager import StateManager


async def test_memory_urls_open_fresh_private_stores():
    # Given two managers opened on "memory://"
    async with StateManager.from_url("memory://") as a, StateManager.from_url("memory://") as b:
        # When one of them writes
        await a.set("s", "k", 1)
        # Then the other does not see it
        assert await b.get("s", "k") is None
        assert await b.list_groups() == []
        assert await a.get("s", "k") == 1


# --------------------------------------------------------------------------------------------------------------
# Tick claims: forgotten once their hold has passed, so the dict stays bounded
# --------------------------------------------------------------------------------------------------------------


TICK = 1_700_000_000.0


@pytest.mark.parametrize(
    "claims",
    [
        # each step: (seconds to advance first, job, tick, hold, expected result)
        pytest.param([(0, "a", 10.0, 60, True), (0, "a", 10.0, 60, False)], id="first-wins"),
        pytest.param([(0, "a", 10.0, 60, True), (0, "b", 10.0, 60, True)], id="other-job"),
        pytest.param([(0, "a", 10.0, 60, True), (0, "a", 11.0, 60, True)], id="other-tick"),
        pytest.param([(0, "a", 10.0, 60, True), (0, "a", 10.0004, 60, False)], id="same-millisecond"),
        pytest.param([(0, "a", 10.0, 60, True), (0, "a", 10.0006, 60, True)], id="next-millisecond"),
        pytest.param([(0, "a", 10.0, 60, True), (59.9, "a", 10.0, 60, False)], id="held"),
        pytest.param([(0, "a", 10.0, 60, True), (60, "a", 10.0, 60, True)], id="forgotten-after-hold"),
        pytest.param([(0, "a", 10.0, 60, True), (60, "a", 10.0, 60, True), (59, "a", 10.0, 60, False)], id="reclaim"),
        pytest.param(
            [(0, "a", 10.0, 5, True), (0, "b", 10.0, 60, True), (10, "a", 10.0, 60, True), (0, "b", 10.0, 60, False)],
            id="each-claim-its-own-hold",
        ),
    ],
)
async def test_memory_claims(claims: list[tuple[float, str, float, float, bool]], clock: Any) -> None:
    backend = MemoryBackend(clock=clock)
    for advance, job, tick, hold, expected in claims:
        clock.advance(advance)
        assert await backend.claim_tick(job, tick, hold=hold) is expected, (advance, job, tick, hold)
    await backend.aclose()


async def test_memory_forgets_old_claims(clock: Any) -> None:
    # Given a per-second job claimed for 1,000 seconds with a 10 s hold
    backend = MemoryBackend(clock=clock)
    for second in range(1000):
        assert await backend.claim_tick("cron:job:0", TICK + second, hold=10)
        clock.advance(1)
    # Then only the claims still held are kept
    assert len(backend._ticks) <= 11
    assert len(backend._tick_expiry) == len(backend._ticks)
    await backend.aclose()
