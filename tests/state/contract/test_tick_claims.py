"""Cron tick claims (SPEC 3.1, 4): ``claim_tick`` is true for exactly one caller per (job, tick) among
every process using a store, run over every backend (memory and SQLite specifics: ``backends/``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from motia.exceptions import StateClosedError
from motia.state.manager import StateManager

pytestmark = pytest.mark.delivery  # runs on DELIVERY_BACKENDS (tests/state/conftest.py)

TICK = 1_700_000_000.0
HOLD = 3600.0


async def test_the_first_claim_of_a_tick_wins_and_every_later_one_loses(state: StateManager) -> None:
    backend = state.backend
    assert await backend.claim_tick("cron:job:0", TICK, hold=HOLD) is True
    assert await backend.claim_tick("cron:job:0", TICK, hold=HOLD) is False
    assert await backend.claim_tick("cron:job:0", TICK, hold=HOLD) is False


async def test_concurrent_claims_of_one_tick_have_one_winner(state: StateManager) -> None:
    # Given 50 tasks claiming the same tick at once (on SQLite they share one group-committed batch)
    results = await asyncio.gather(*(state.backend.claim_tick("cron:job:0", TICK, hold=HOLD) for _ in range(50)))
    # Then exactly one wins
    assert sorted(results) == [False] * 49 + [True]


async def test_jobs_and_ticks_are_claimed_independently(state: StateManager) -> None:
    backend = state.backend
    assert await backend.claim_tick("cron:a:0", TICK, hold=HOLD)
    assert await backend.claim_tick("cron:a:1", TICK, hold=HOLD)  # another trigger of the same step
    assert await backend.claim_tick("cron:b:0", TICK, hold=HOLD)
    assert await backend.claim_tick("cron:a:0", TICK + 1, hold=HOLD)
    assert await backend.claim_tick("cron:a:0", TICK + 0.001, hold=HOLD)  # one millisecond apart
    assert not await backend.claim_tick("cron:a:1", TICK, hold=HOLD)


async def test_ticks_compare_at_millisecond_precision(state: StateManager) -> None:
    # Given a tick computed one way (a datetime's timestamp) ...
    assert await state.backend.claim_tick("cron:job:0", TICK, hold=HOLD)
    # ... then the same instant computed another way, off by float noise, is the same tick
    assert not await state.backend.claim_tick("cron:job:0", TICK + 1e-7, hold=HOLD)
    assert not await state.backend.claim_tick("cron:job:0", TICK - 0.0004, hold=HOLD)


async def test_a_claim_is_remembered_for_its_hold(state: StateManager, clock: Any) -> None:
    assert await state.backend.claim_tick("cron:job:0", TICK, hold=60)
    clock.advance(59.5)
    assert not await state.backend.claim_tick("cron:job:0", TICK, hold=60)


async def test_claims_are_not_state_and_fire_no_events(state: StateManager) -> None:
    backend = state.backend
    await backend.enable_events()
    assert await backend.claim_tick("cron:job:0", TICK, hold=HOLD)
    assert await state.list_groups() == []
    assert await backend.dispatch_events([]) == 0


async def test_claiming_on_a_closed_store_raises(state: StateManager) -> None:
    await state.aclose()
    with pytest.raises(StateClosedError):
        await state.backend.claim_tick("cron:job:0", TICK, hold=HOLD)


async def test_managers_sharing_a_store_share_claims(state_factory: Any) -> None:
    a, b = state_factory(), state_factory()
    await a.set("probe", "k", 1)
    if await b.get("probe", "k") is None:
        pytest.skip("each manager opens a private store on this backend (memory://)")
    assert await a.backend.claim_tick("cron:job:0", TICK, hold=HOLD)
    assert not await b.backend.claim_tick("cron:job:0", TICK, hold=HOLD)
    assert await b.backend.claim_tick("cron:job:0", TICK + 1, hold=HOLD)
    assert not await a.backend.claim_tick("cron:job:0", TICK + 1, hold=HOLD)
