"""SQLite backend specifics (SPEC 2, 3.1, 4): fail closed, persistence, no raw sqlite3 errors, events in the write's
transaction, tick claims across processes."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from motia import (
    MotiaError,
    StateBackendError,
    StateBackendUnavailable,
    StateManager,
    StateTimeout,
    SyncStateManager,
)
from motia.state.backends import sqlite as sqlite_backend
from motia.state.backends.base import NewDelivery, Subscription
from tests.state.children import run_released_together


def assert_not_raw_driver_error(exc: BaseException) -> None:
    assert isinstance(exc, MotiaError)
    assert not isinstance(exc, sqlite3.Error)


# --------------------------------------------------------------------------------------------------------------
# Fail closed
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opener", [StateManager.from_url, SyncStateManager.from_url], ids=["async", "sync"])
def test_unwritable_path_fails_at_open_naming_the_absolute_path(tmp_path, opener):
    # Given a path whose "directory" is a regular file (unwritable even for root)
    afile = tmp_path / "afile"
    afile.write_text("I am a file")
    db = afile / "x.db"
    # When a store is opened there
    with pytest.raises(StateBackendUnavailable) as excinfo:
        opener(f"sqlite:///{db}")
    # Then it fails at once, naming the absolute path, with no raw sqlite3 error
    assert str(db) in str(excinfo.value)
    assert_not_raw_driver_error(excinfo.value)
    assert afile.read_text() == "I am a file"


def test_unwritable_path_under_proc_fails(tmp_path):
    with pytest.raises(StateBackendUnavailable) as excinfo:
        StateManager.from_url("sqlite:////proc/pymotia-no-such-dir/state.db")
    assert "/proc/pymotia-no-such-dir/state.db" in str(excinfo.value)
    assert_not_raw_driver_error(excinfo.value)


def test_relative_unwritable_path_is_reported_absolute(tmp_path, monkeypatch):
    # Given a relative URL under a regular file, from a known cwd
    (tmp_path / "afile").write_text("x")
    monkeypatch.chdir(tmp_path)
    # Then the error names the absolute path
    with pytest.raises(StateBackendUnavailable) as excinfo:
        StateManager.from_url("sqlite:///afile/x.db")
    assert str(tmp_path / "afile" / "x.db") in str(excinfo.value)


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(os.urandom(8192), id="random-bytes"),
        pytest.param(b"this is not a database\n" * 400, id="text"),
        pytest.param(b"SQLite format 3\x00" + os.urandom(8192 - 16), id="sqlite-header-then-garbage"),
    ],
)
@pytest.mark.parametrize("opener", [StateManager.from_url, SyncStateManager.from_url], ids=["async", "sync"])
def test_corrupt_file_fails_closed_and_is_not_overwritten(tmp_path, garbage, opener):
    # Given a file full of garbage where the database should be
    db = tmp_path / "state.db"
    db.write_bytes(garbage)
    # When a store is opened on it
    with pytest.raises(StateBackendError) as excinfo:
        opener(f"sqlite:///{db}")
    # Then it is an error naming the path (never a silent fresh store) and the file is untouched
    assert str(db) in str(excinfo.value)
    assert_not_raw_driver_error(excinfo.value)
    assert db.read_bytes() == garbage


async def test_corruption_found_after_open_is_a_state_backend_error(tmp_path):
    # Given a real store with enough data to span many pages, fully checkpointed into the main file
    db = tmp_path / "state.db"
    async with StateManager.from_url(f"sqlite:///{db}") as sm:
        for i in range(400):
            await sm.set("s", f"k{i:04d}", {"i": i, "pad": "p" * 500})
    with contextlib.closing(sqlite3.connect(db)) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db.stat().st_size
    assert size > 64 * 1024
    # When the pages after the first few are overwritten with garbage (the header stays valid)
    with db.open("r+b") as f:
        f.seek(16 * 1024)
        f.write(os.urandom(size - 16 * 1024))
    # Then opening or reading raises StateBackendError (never a raw sqlite3 error, never silently empty)
    with pytest.raises(StateBackendError) as excinfo:
        sm = StateManager.from_url(f"sqlite:///{db}")
        try:
            values = await sm.list("s")
            for i in range(400):
                await sm.get("s", f"k{i:04d}")
            assert len(values) == 400, "corrupt store silently lost data"
        finally:
            await sm.aclose()
    assert_not_raw_driver_error(excinfo.value)


# --------------------------------------------------------------------------------------------------------------
# Journal mode and persistence
# --------------------------------------------------------------------------------------------------------------


def test_database_is_in_wal_mode(tmp_path):
    db = tmp_path / "state.db"
    with SyncStateManager.from_url(f"sqlite:///{db}") as sm:
        sm.set("s", "k", 1)
    with contextlib.closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"


async def test_data_persists_across_close_and_reopen(sqlite_url, clock):
    # Given a store with values, versions and expiries
    async with StateManager.from_url(sqlite_url, clock=clock) as sm:
        await sm.set("users", "u1", {"name": "Ann", "z": 1, "a": 2})
        await sm.update("users", "u1", [{"type": "increment", "path": "logins", "value": 1}])
        await sm.update("users", "u1", [{"type": "increment", "path": "logins", "value": 1}])
        await sm.set("sessions", "s1", {"t": "tok"}, ttl=60)
        await sm.set("sessions", "s2", {"t": "tok2"}, ttl=3600)
        await sm.set("gone", "x", 1)
        await sm.delete("gone", "x")
        before = {
            scope: [(e.key, e.value, e.version, e.expires_at) for e in await sm.items(scope)]
            for scope in await sm.list_groups()
        }
    # When it is reopened by a new manager
    async with StateManager.from_url(sqlite_url, clock=clock) as sm:
        after = {
            scope: [(e.key, e.value, e.version, e.expires_at) for e in await sm.items(scope)]
            for scope in await sm.list_groups()
        }
        # Then everything is there: values (key order too), versions and expiries
        assert after == before
        assert list((await sm.get("users", "u1")).keys()) == ["name", "z", "a", "logins"]
        assert (await sm.get_entry("users", "u1")).version == 3  # type: ignore[union-attr]
        assert (await sm.get_entry("sessions", "s1")).expires_at == pytest.approx(clock() + 60)  # type: ignore[union-attr]
        assert await sm.list_groups() == ["sessions", "users"]
        # And versions continue from where they were
        assert (await sm.update("users", "u1", [{"type": "increment", "path": "logins", "value": 1}])).version == 4


async def test_expiry_applies_after_reopen(sqlite_url, clock):
    async with StateManager.from_url(sqlite_url, clock=clock) as sm:
        await sm.set("sessions", "short", 1, ttl=60)
        await sm.set("sessions", "long", 2, ttl=3600)
    # When the store is reopened later than the short key's expiry
    clock.advance(120)
    async with StateManager.from_url(sqlite_url, clock=clock) as sm:
        # Then the expired key is invisible and purgeable, the other stays
        assert await sm.get("sessions", "short") is None
        assert await sm.keys("sessions") == ["long"]
        assert await sm.count("sessions") == 1
        assert await sm.purge_expired() == 1
        assert await sm.get("sessions", "long") == 2


async def test_two_managers_on_one_file_see_each_other(sqlite_url):
    async with StateManager.from_url(sqlite_url) as a, StateManager.from_url(sqlite_url) as b:
        await a.set("s", "k", 1)
        assert await b.get("s", "k") == 1
        await b.update("s", "k", [{"type": "set", "value": {"n": 1}}])
        assert await a.get("s", "k") == {"n": 1}
        await b.clear("s")
        assert await a.list_groups() == []


# --------------------------------------------------------------------------------------------------------------
# Locks held by another process: StateTimeout, never a raw "database is locked"
# --------------------------------------------------------------------------------------------------------------


async def test_write_blocked_by_a_foreign_lock_times_out_cleanly(sqlite_path, sqlite_url):
    # Given a store, and another connection holding the write lock (as another process would)
    async with StateManager.from_url(sqlite_url) as sm:
        await sm.set("s", "k", {"n": 0})
    async with StateManager.from_url(f"{sqlite_url}?timeout=0.5") as sm:
        with contextlib.closing(sqlite3.connect(sqlite_path, isolation_level=None)) as foreign:
            foreign.execute("BEGIN IMMEDIATE")
            try:
                # When a write needs the lock past the timeout
                with pytest.raises(StateTimeout) as excinfo:
                    await sm.update("s", "k", [{"type": "increment", "path": "n", "value": 1}])
                assert_not_raw_driver_error(excinfo.value)
                with pytest.raises(StateTimeout):
                    await sm.set("s", "other", 1)
                # Then reads still work (a WAL reader never waits for a writer) and nothing was written
                assert await sm.get("s", "k") == {"n": 0}
                assert await sm.keys("s") == ["k"]
            finally:
                foreign.execute("ROLLBACK")
        # And once the lock is released, writes work again
        result = await sm.update("s", "k", [{"type": "increment", "path": "n", "value": 1}])
        assert result.new_value == {"n": 1}
        assert result.version == 2


def test_sync_write_blocked_by_a_foreign_lock_times_out_cleanly(sqlite_path, sqlite_url):
    with SyncStateManager.from_url(f"{sqlite_url}?timeout=0.3") as sm:
        sm.set("s", "k", 1)
        with contextlib.closing(sqlite3.connect(sqlite_path, isolation_level=None)) as foreign:
            foreign.execute("BEGIN IMMEDIATE")
            try:
                with pytest.raises(StateTimeout):
                    sm.set("s", "k", 2)
                with pytest.raises(StateTimeout):
                    sm.clear("s")
                assert sm.get("s", "k") == 1
            finally:
                foreign.execute("ROLLBACK")
        assert sm.set("s", "k", 3).version == 2


# --------------------------------------------------------------------------------------------------------------
# Change events: recorded in the write's transaction, the events flag shared by every process
# --------------------------------------------------------------------------------------------------------------


EVERYTHING = [Subscription("watcher")]


async def test_sqlite_records_events_in_the_same_transaction(sqlite_state: StateManager, sqlite_path: Path) -> None:
    await sqlite_state.backend.enable_events()
    await sqlite_state.set("s", "k", {"n": 1})
    # Acknowledged means committed, the event with it: another connection sees both
    with sqlite3.connect(sqlite_path) as connection:
        assert connection.execute("SELECT count(*) FROM motia_state").fetchone()[0] == 1
        rows = connection.execute("SELECT event_type, scope, key, new_value FROM motia_state_events").fetchall()
    assert rows == [("created", "s", "k", b'{"n":1}')]


async def test_sqlite_events_flag_is_shared_by_every_process(sqlite_url: str, clock: Any) -> None:
    # Given a store opened before another one enabled events (a script and `motia run`)
    script = StateManager.from_url(sqlite_url, clock=clock)
    app = StateManager.from_url(sqlite_url, clock=clock)
    try:
        await app.backend.enable_events()
        # When the other one writes (a fresh open reads the flag at its first write)
        late = StateManager.from_url(sqlite_url, clock=clock)
        await late.set("s", "from-late-open", 1)
        await late.aclose()
        # Then the app dispatches its event
        assert await app.backend.dispatch_events(EVERYTHING) == 1
    finally:
        await script.aclose()
        await app.aclose()


# --------------------------------------------------------------------------------------------------------------
# Tick claims: schema upgrade in place, pruning, locks, and real processes racing on one file
# --------------------------------------------------------------------------------------------------------------


TICK = 1_700_000_000.0


HOLD = 3600.0

#: The tables schema version 4 added (streams); their indexes go with them.
STREAM_TABLES = ("motia_stream_items", "motia_stream_groups", "motia_stream_changes", "motia_stream_subscriptions")


def downgrade_to_schema_1(path: Path) -> None:
    """Make the file exactly what pymotia before tick claims left: no motia_cron_ticks, schema version 1."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("DROP TABLE motia_cron_ticks")
        connection.execute("DROP TABLE motia_leases")  # and what later versions added (schema version 3)
        connection.execute("DROP TABLE motia_steps")
        connection.execute("DROP INDEX motia_dead_letters_failed")
        for table in STREAM_TABLES:  # and the stream tables (schema version 4)
            connection.execute(f"DROP TABLE {table}")
        connection.execute("ALTER TABLE motia_state_events DROP COLUMN trace")  # and the trace (version 5)
        drop_error_columns(connection)  # and the errors of failed attempts (schema version 7)
        connection.execute("DELETE FROM motia_meta WHERE name IN ('event_seq', 'triggers')")  # (version 9)
        connection.execute("UPDATE motia_meta SET value = '1' WHERE name = 'schema_version'")


def drop_error_columns(connection: sqlite3.Connection) -> None:
    """Remove what schema version 5 added: the errors of a delivery's failed attempts."""
    for table, column in (
        ("motia_deliveries", "first_error"),
        ("motia_deliveries", "last_error"),
        ("motia_dead_letters", "first_error"),
    ):
        connection.execute(f"ALTER TABLE {table} DROP COLUMN {column}")


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
    assert schema_version(sqlite_path) == str(sqlite_backend.SCHEMA_VERSION) == "10"


async def test_sqlite_upgrades_an_older_file_keeping_its_deliveries_and_dead_letters(
    sqlite_url: str, sqlite_path: Path
) -> None:
    # Given a file of an older schema version holding a pending delivery and a dead letter (no error columns)
    async with StateManager.from_url(sqlite_url) as sm:
        await sm.backend.enqueue(
            [NewDelivery("p1", "worker", "queue", b"1"), NewDelivery("d1", "worker", "queue", b"2")]
        )
        await sm.backend.add_dead_letters([NewDelivery("d0", "gone", "queue", b"0")], error="old")
    with contextlib.closing(sqlite3.connect(sqlite_path, isolation_level=None)) as connection:
        drop_error_columns(connection)
        connection.execute("UPDATE motia_meta SET value = '4' WHERE name = 'schema_version'")
    # When it is opened again
    async with StateManager.from_url(sqlite_url) as sm:
        # Then what it held is there, the old dead letter without a first error, and failures are recorded
        old = await sm.backend.get_dead_letter("d0")
        assert old is not None and (old.error, old.first_error) == ("old", None)
        claimed = await sm.backend.claim(["worker"], owner="w", limit=5, lease=30)
        assert sorted(d.id for d in claimed) == ["d1", "p1"]
        assert await sm.backend.retry("p1", owner="w", delay=0, error="first")
        assert await sm.backend.dead_letter("d1", owner="w", error="last")
        (pending,) = await sm.backend.pending_page()
        assert (pending.id, pending.first_error, pending.last_error) == ("p1", "first", "first")
        letter = await sm.backend.get_dead_letter("d1")
        assert letter is not None and letter.first_error == "last"
    assert schema_version(sqlite_path) == "10"


async def test_sqlite_upgrades_a_schema_6_file_keeping_its_ordered_deliveries(
    sqlite_url: str, sqlite_path: Path
) -> None:
    # Given a file written before order slots (schema 6) holding two deliveries of one order key
    async with StateManager.from_url(sqlite_url) as sm:
        await sm.backend.enqueue([NewDelivery(f"m{n}", "worker", "queue", b"1", order_key="fifo:g") for n in range(2)])
    with contextlib.closing(sqlite3.connect(sqlite_path, isolation_level=None)) as connection:
        connection.execute("ALTER TABLE motia_deliveries DROP COLUMN order_slots")
        connection.execute("UPDATE motia_meta SET value = '6' WHERE name = 'schema_version'")
    # When it is opened again
    async with StateManager.from_url(sqlite_url) as sm:
        # Then the old deliveries are still one at a time, and new ones may have several slots
        assert [d.id for d in await sm.backend.claim(["worker"], owner="w", limit=5, lease=60)] == ["m0"]
        await sm.backend.enqueue(
            [NewDelivery(f"s{n}", "worker", "queue", b"1", order_key="key:k", order_slots=2) for n in range(3)]
        )
        assert [d.id for d in await sm.backend.claim(["worker"], owner="w", limit=5, lease=60)] == ["s0", "s1"]
    assert schema_version(sqlite_path) == str(sqlite_backend.SCHEMA_VERSION) == "10"


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
    # When they are released together
    outputs = run_released_together([[str(CHILD), sqlite_url, str(TICKS)]] * PROCESSES, child_env, timeout=120)
    won: list[list[int]] = []
    for out in outputs:
        [line] = [line for line in out.splitlines() if line.startswith("won ")]
        won.append(json.loads(line.removeprefix("won ")))
    # Then every tick was won by exactly one process
    every = sorted(tick for ticks in won for tick in ticks)
    assert every == list(range(TICKS))
