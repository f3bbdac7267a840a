"""Cron tick claims (SPEC 3.1, 4): ``claim_tick`` is true for exactly one caller per (job, tick) among
every process using a store. The contract runs over every backend; then memory and SQLite specifics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from motia.exceptions import StateBackendError, StateClosedError, StateTimeout
from motia.state.backends import sqlite as sqlite_backend
from motia.state.backends.memory import MemoryBackend
from motia.state.manager import StateManager

TICK = 1_700_000_000.0
HOLD = 3600.0

# --------------------------------------------------------------------------------------------------------------
# The contract, on every backend
# --------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------
# Memory: claims are forgotten once their hold has passed, so the dict stays bounded
# --------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------
# SQLite: schema upgrade in place, pruning, locks, and real processes racing on one file
# --------------------------------------------------------------------------------------------------------------


def downgrade_to_schema_1(path: Path) -> None:
    """Make the file exactly what pymotia before tick claims left: no motia_cron_ticks, schema version 1."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("DROP TABLE motia_cron_ticks")
        connection.execute("DROP TABLE motia_leases")  # and what later versions added (schema version 3)
        connection.execute("DROP TABLE motia_steps")
        connection.execute("DROP INDEX motia_dead_letters_failed")
        connection.execute("UPDATE motia_meta SET value = '1' WHERE name = 'schema_version'")


def schema_version(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return str(connection.execute("SELECT value FROM motia_meta WHERE name = 'schema_version'").fetchone()[0])


async def test_sqlite_upgrades_a_schema_1_file_in_place(sqlite_url: str, sqlite_path: Path) -> None:
    # Given a file written by a pymotia without tick claims
    async with StateManager.from_url(sqlite_url) as sm:
        await sm.set("s", "k", {"n": 1})
    downgrade_to_schema_1(sqlite_path)
    assert schema_version(sqlite_path) == "1"
    # When it is opened again
    async with StateManager.from_url(sqlite_url) as sm:
        # Then its data is intact, claims work, and it is marked as the current schema
        assert await sm.get("s", "k") == {"n": 1}
        assert await sm.backend.claim_tick("cron:job:0", TICK, hold=HOLD)
        assert not await sm.backend.claim_tick("cron:job:0", TICK, hold=HOLD)
    assert schema_version(sqlite_path) == str(sqlite_backend.SCHEMA_VERSION) == "3"


async def test_sqlite_prunes_forgotten_claims(sqlite_url: str, sqlite_path: Path, clock: Any) -> None:
    async with StateManager.from_url(sqlite_url, clock=clock) as sm:
        for second in range(5):
            assert await sm.backend.claim_tick("cron:job:0", TICK + second, hold=10)
        clock.advance(10 + sqlite_backend.TICK_PRUNE_INTERVAL)
        assert await sm.backend.claim_tick("cron:job:0", TICK + 100, hold=10)
    with contextlib.closing(sqlite3.connect(sqlite_path)) as connection:
        rows = connection.execute("SELECT job, tick FROM motia_cron_ticks").fetchall()
    assert rows == [("cron:job:0", round((TICK + 100) * 1000))]


async def test_sqlite_claim_blocked_by_a_foreign_lock_times_out_cleanly(sqlite_path: Path, sqlite_url: str) -> None:
    async with StateManager.from_url(f"{sqlite_url}?timeout=0.3") as sm:
        with contextlib.closing(sqlite3.connect(sqlite_path, isolation_level=None)) as foreign:
            foreign.execute("BEGIN IMMEDIATE")
            try:
                with pytest.raises(StateTimeout) as excinfo:
                    await sm.backend.claim_tick("cron:job:0", TICK, hold=HOLD)
                assert isinstance(excinfo.value, StateBackendError)
            finally:
                foreign.execute("ROLLBACK")
        # Nothing was claimed by the attempt that timed out
        assert await sm.backend.claim_tick("cron:job:0", TICK, hold=HOLD)


CHILD = Path(__file__).with_name("_child_tick_claimer.py")
PROCESSES = 4
TICKS = 200


def test_processes_racing_on_one_sqlite_file_claim_each_tick_once(sqlite_url: str, child_env: dict[str, str]) -> None:
    # Given four processes on one file, each about to claim the same 200 ticks
    children = [
        subprocess.Popen(
            [sys.executable, str(CHILD), sqlite_url, str(TICKS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
        # When they are released together
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    won: list[list[int]] = []
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
        [line] = [line for line in out.splitlines() if line.startswith("won ")]
        won.append(json.loads(line.removeprefix("won ")))
    # Then every tick was won by exactly one process
    every = sorted(tick for ticks in won for tick in ticks)
    assert every == list(range(TICKS))
