"""Named leases (``acquire_lease``/``release_lease``): one owner at a time among every process using a store, until
the lease expires unless renewed. The contract runs over every backend with the fake clock; then the same lease
contended by real processes (SQLite and Redis), expiry in real time, retried Redis calls and the SQLite upgrade."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from motia.exceptions import StateValueError
from motia.state.backends import sqlite as sqlite_backend
from motia.state.backends.types import PruneResult
from motia.state.manager import StateManager
from tests.state.children import run_released_together

pytestmark = pytest.mark.delivery  # runs on DELIVERY_BACKENDS (tests/state/conftest.py)

TTL = 10.0

# --------------------------------------------------------------------------------------------------------------
# The contract, on every backend
# --------------------------------------------------------------------------------------------------------------


async def test_a_free_lease_is_acquired_and_another_owner_is_refused_while_it_is_held(state: StateManager) -> None:
    backend = state.backend
    assert await backend.acquire_lease("cron:job", "a", ttl=TTL) is True
    assert await backend.acquire_lease("cron:job", "b", ttl=TTL) is False
    assert await backend.acquire_lease("cron:job", "b", ttl=TTL) is False
    # the refusals changed nothing: a still holds it and may give it up
    assert await backend.release_lease("cron:job", "a") is True


async def test_leases_of_different_names_are_independent(state: StateManager) -> None:
    backend = state.backend
    assert await backend.acquire_lease("cron:one", "a", ttl=TTL)
    assert await backend.acquire_lease("cron:two", "b", ttl=TTL)
    assert not await backend.acquire_lease("cron:one", "b", ttl=TTL)
    assert not await backend.acquire_lease("cron:two", "a", ttl=TTL)


async def test_renewal_by_the_owner_extends_the_lease(state: StateManager, clock: Any) -> None:
    backend = state.backend
    assert await backend.acquire_lease("cron:job", "a", ttl=TTL)
    clock.advance(8)
    assert await backend.acquire_lease("cron:job", "a", ttl=TTL)  # renewed: now held until 18
    clock.advance(8)  # 16: past the first expiry (10), before the renewed one (18)
    assert not await backend.acquire_lease("cron:job", "b", ttl=TTL)
    clock.advance(2)  # 18: the renewed lease has expired
    assert await backend.acquire_lease("cron:job", "b", ttl=TTL)


async def test_an_expired_lease_is_free_for_another_owner(state: StateManager, clock: Any) -> None:
    backend = state.backend
    assert await backend.acquire_lease("cron:job", "a", ttl=TTL)
    clock.advance(TTL - 0.5)
    assert not await backend.acquire_lease("cron:job", "b", ttl=TTL)
    clock.advance(0.5)  # expired from the instant it expires
    assert await backend.acquire_lease("cron:job", "b", ttl=TTL)
    # the old owner no longer holds it: it can neither release nor renew it
    assert not await backend.release_lease("cron:job", "a")
    assert not await backend.acquire_lease("cron:job", "a", ttl=TTL)


async def test_release_frees_the_lease_and_only_its_owner_may_release(state: StateManager, clock: Any) -> None:
    backend = state.backend
    assert not await backend.release_lease("cron:job", "a")  # never taken
    assert await backend.acquire_lease("cron:job", "a", ttl=TTL)
    assert not await backend.release_lease("cron:job", "b")  # not b's
    assert not await backend.acquire_lease("cron:job", "b", ttl=TTL)  # still a's
    assert await backend.release_lease("cron:job", "a")
    assert not await backend.release_lease("cron:job", "a")  # already released
    assert await backend.acquire_lease("cron:job", "b", ttl=TTL)  # free at once, long before its ttl
    clock.advance(TTL)
    assert not await backend.release_lease("cron:job", "b")  # expired: nothing to give up


async def test_concurrent_acquires_have_one_winner(state: StateManager) -> None:
    # Given 30 owners asking at once (on SQLite they share one group-committed batch)
    results = await asyncio.gather(*(state.backend.acquire_lease("cron:job", f"o{i}", ttl=TTL) for i in range(30)))
    # Then exactly one holds it
    assert sorted(results) == [False] * 29 + [True]
    winner = f"o{results.index(True)}"
    assert await state.backend.release_lease("cron:job", winner)


@pytest.mark.parametrize(
    ("name", "owner", "ttl"),
    [
        ("", "a", TTL),
        ("cron:job", "", TTL),
        (None, "a", TTL),
        ("cron:job", 7, TTL),
        ("cron:\ud800", "a", TTL),  # a lone surrogate cannot be stored as UTF-8
        ("cron:job", "a", 0),
        ("cron:job", "a", -1),
        ("cron:job", "a", None),
        ("cron:job", "a", float("nan")),
        ("cron:job", "a", float("inf")),
        ("cron:job", "a", True),
    ],
)
async def test_bad_arguments_are_refused_and_change_nothing(
    state: StateManager, name: Any, owner: Any, ttl: Any
) -> None:
    with pytest.raises(StateValueError):
        await state.backend.acquire_lease(name, owner, ttl=ttl)
    if ttl == TTL:
        with pytest.raises(StateValueError):
            await state.backend.release_lease(name, owner)
    # nothing was taken
    assert await state.backend.acquire_lease("cron:job", "b", ttl=TTL)


async def test_a_lease_is_held_against_every_manager_of_the_store(backend: str, state_factory: Any) -> None:
    if backend == "memory":
        pytest.skip("each manager opens a private store on this backend (memory://)")
    first, second = state_factory(), state_factory()
    assert await first.backend.acquire_lease("cron:job", "a", ttl=TTL)
    assert not await second.backend.acquire_lease("cron:job", "b", ttl=TTL)
    assert not await second.backend.release_lease("cron:job", "b")
    assert await second.backend.release_lease("cron:job", "a")  # the owner is a name, not a connection
    assert await second.backend.acquire_lease("cron:job", "b", ttl=TTL)
    assert not await first.backend.acquire_lease("cron:job", "a", ttl=TTL)


# --------------------------------------------------------------------------------------------------------------
# Real time and real processes (SQLite, Redis and PostgreSQL)
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def shared_url(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh store that several processes can share."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


async def test_a_lease_its_owner_stopped_renewing_frees_after_its_ttl(shared_url: str) -> None:
    # Given an owner that took a short lease and then died (it never renews nor releases)
    async with StateManager.from_url(shared_url) as dead, StateManager.from_url(shared_url) as other:
        taken = time.monotonic()
        assert await dead.backend.acquire_lease("cron:job", "dead", ttl=0.5)
        # When another instance keeps trying
        while not await other.backend.acquire_lease("cron:job", "other", ttl=TTL):
            assert time.monotonic() - taken < 10, "the lease never expired"
            await asyncio.sleep(0.02)
        # Then it gets the lease, and not before the ttl ran out
        assert time.monotonic() - taken >= 0.5


CHILD = Path(__file__).with_name("_child_lease_holder.py")
PROCESSES = 4
ROUNDS = 25


def test_processes_contending_for_one_lease_never_hold_it_at_once(shared_url: str, child_env: dict[str, str]) -> None:
    # Given four processes on one store, each about to take the same lease 25 times
    commands = [[str(CHILD), shared_url, f"owner-{number}", str(ROUNDS)] for number in range(PROCESSES)]
    # When they are released together
    outputs = run_released_together(commands, child_env, timeout=180)
    intervals: list[tuple[float, float, int]] = []
    for number, out in enumerate(outputs):
        [line] = [line for line in out.splitlines() if line.startswith("held ")]
        intervals += [(start, end, number) for start, end in json.loads(line.removeprefix("held "))]
    # Then every process held it every round, and no two hold intervals overlap
    assert len(intervals) == PROCESSES * ROUNDS
    intervals.sort()
    for (_, end, holder), (start, _, next_holder) in zip(intervals, intervals[1:], strict=False):
        assert start >= end, f"process {next_holder} took the lease at {start} while {holder} held it until {end}"
    # (and the lease really changed hands: the test exercised contention, not one process after another)
    handovers = sum(1 for a, b in zip(intervals, intervals[1:], strict=False) if a[2] != b[2])
    assert handovers >= PROCESSES - 1


# --------------------------------------------------------------------------------------------------------------
# Redis: a retried call (its reply lost) gives the same answer
# --------------------------------------------------------------------------------------------------------------


async def test_redis_a_retried_release_gets_the_first_answer(redis_state: StateManager, clock: Any) -> None:
    backend: Any = redis_state.backend
    assert await backend.acquire_lease("cron:job", "a", ttl=TTL)
    now = repr(clock())
    # When the same release reaches Redis twice (the client retried it after the reply was lost)
    token = backend._token()
    first = await backend._write("motia1_release_lease", token, "cron:job", "a", now)
    again = await backend._write("motia1_release_lease", token, "cron:job", "a", now)
    # Then both get the answer of the one release that happened
    assert first == again == 1
    # and a new release (a new token) finds nothing to release
    assert not await backend.release_lease("cron:job", "a")


async def test_redis_a_retried_acquire_gets_the_first_answer(redis_state: StateManager, clock: Any) -> None:
    backend: Any = redis_state.backend
    now = clock()
    args = ("cron:job", "a", repr(now), repr(now + TTL), 60_000)
    token = backend._token()
    assert await backend._write("motia1_acquire_lease", token, *args) == 1
    assert await backend.release_lease("cron:job", "a")
    assert await backend.acquire_lease("cron:job", "b", ttl=TTL)
    # a's retry, arriving after b took the lease, is answered as the call was, and does not take it from b
    assert await backend._write("motia1_acquire_lease", token, *args) == 1
    assert not await backend.acquire_lease("cron:job", "a", ttl=TTL)
    assert await backend.release_lease("cron:job", "b")


# --------------------------------------------------------------------------------------------------------------
# SQLite: schema version 3 upgrades a version 2 file in place
# --------------------------------------------------------------------------------------------------------------


def downgrade_to_schema_2(path: Path) -> None:
    """Make the file what pymotia before leases and retention left: no motia_leases/motia_steps, schema 2."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("DROP TABLE motia_leases")
        connection.execute("DROP TABLE motia_steps")
        connection.execute("DROP INDEX motia_dead_letters_failed")
        for table in (
            "motia_stream_items",
            "motia_stream_groups",
            "motia_stream_changes",
            "motia_stream_subscriptions",
        ):
            connection.execute(f"DROP TABLE {table}")  # and what schema version 4 added (streams)
        connection.execute("UPDATE motia_meta SET value = '2' WHERE name = 'schema_version'")


def sqlite_schema(path: Path) -> tuple[str, set[str]]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        version = connection.execute("SELECT value FROM motia_meta WHERE name = 'schema_version'").fetchone()[0]
        names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    return str(version), names


async def test_sqlite_upgrades_a_schema_2_file_in_place(sqlite_url: str, sqlite_path: Path) -> None:
    # Given a file written by a pymotia with tick claims but without leases
    async with StateManager.from_url(sqlite_url) as sm:
        await sm.set("s", "k", {"n": 1})
        assert await sm.backend.claim_tick("cron:job:0", 1_700_000_000.0, hold=3600)
    downgrade_to_schema_2(sqlite_path)
    version, names = sqlite_schema(sqlite_path)
    assert version == "2" and "motia_leases" not in names
    # When it is opened again
    async with StateManager.from_url(sqlite_url) as sm:
        # Then its data and claims are intact, and leases and retention work
        assert await sm.get("s", "k") == {"n": 1}
        assert not await sm.backend.claim_tick("cron:job:0", 1_700_000_000.0, hold=3600)
        assert await sm.backend.acquire_lease("cron:job", "a", ttl=TTL)
        assert not await sm.backend.acquire_lease("cron:job", "b", ttl=TTL)
        await sm.backend.touch_steps(["step"])
        assert await sm.backend.prune(dead_letter_age=0, step_age=3600) == PruneResult(
            0, 0, 0
        )  # touched just now: kept
    # and it is marked as the current schema (8), with every new table and index
    version, names = sqlite_schema(sqlite_path)
    assert version == str(sqlite_backend.SCHEMA_VERSION) == "10"
    assert {"motia_leases", "motia_steps", "motia_dead_letters_failed"} <= names


async def test_sqlite_a_lease_survives_reopening_the_file(sqlite_url: str) -> None:
    async with StateManager.from_url(sqlite_url) as sm:
        assert await sm.backend.acquire_lease("cron:job", "a", ttl=3600)
    async with StateManager.from_url(sqlite_url) as sm:
        assert not await sm.backend.acquire_lease("cron:job", "b", ttl=TTL)
        assert await sm.backend.release_lease("cron:job", "a")
