"""SQLite backend specifics (SPEC 2): URL handling, fail closed, persistence, no raw sqlite3 errors."""

from __future__ import annotations

import contextlib
import os
import sqlite3

import pytest

from motia import (
    MotiaError,
    StateBackendError,
    StateBackendUnavailable,
    StateError,
    StateManager,
    StateTimeout,
    SyncStateManager,
)
from motia.exceptions import ConfigError


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
# URLs and options
# --------------------------------------------------------------------------------------------------------------


async def test_relative_path_resolves_against_the_cwd(tmp_path, monkeypatch):
    # Given the cwd is a temp dir
    monkeypatch.chdir(tmp_path)
    # When a relative sqlite URL is used
    async with StateManager.from_url("sqlite:///relative.db") as sm:
        await sm.set("s", "k", 1)
    # Then the file lives in the cwd, and holds the data
    assert (tmp_path / "relative.db").is_file()
    monkeypatch.chdir(tmp_path.parent)
    async with StateManager.from_url(f"sqlite:///{tmp_path / 'relative.db'}") as sm:
        assert await sm.get("s", "k") == 1


async def test_relative_path_with_subdirectory(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    async with StateManager.from_url("sqlite:///sub/state.db") as sm:
        await sm.set("s", "k", 1)
    assert (tmp_path / "sub" / "state.db").is_file()


@pytest.mark.parametrize("query", ["?durability=full", "?durability=normal"])
async def test_durability_option_is_accepted(tmp_path, query):
    db = tmp_path / "state.db"
    async with StateManager.from_url(f"sqlite:///{db}{query}") as sm:
        await sm.set("s", "k", {"a": 1})
        assert await sm.get("s", "k") == {"a": 1}
    async with StateManager.from_url(f"sqlite:///{db}") as sm:
        assert await sm.get("s", "k") == {"a": 1}


def test_database_is_in_wal_mode(tmp_path):
    db = tmp_path / "state.db"
    with SyncStateManager.from_url(f"sqlite:///{db}") as sm:
        sm.set("s", "k", 1)
    with contextlib.closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"


@pytest.mark.parametrize(
    "url",
    [
        "postgres://localhost/db",
        "mysql://localhost/db",
        "file:///tmp/x.db",
        "",
        "not a url",
    ],
)
@pytest.mark.parametrize("opener", [StateManager.from_url, SyncStateManager.from_url], ids=["async", "sync"])
def test_unknown_scheme_raises_config_error(url, opener):
    with pytest.raises(ConfigError) as excinfo:
        opener(url)
    assert isinstance(excinfo.value, MotiaError)


@pytest.mark.parametrize("query", ["?foo=bar", "?durability=bogus", "?durability=full&nope=1", "?journal=delete"])
@pytest.mark.parametrize("opener", [StateManager.from_url, SyncStateManager.from_url], ids=["async", "sync"])
def test_unknown_sqlite_option_raises_config_error(tmp_path, query, opener):
    db = tmp_path / "state.db"
    with pytest.raises(ConfigError) as excinfo:
        opener(f"sqlite:///{db}{query}")
    assert isinstance(excinfo.value, MotiaError)
    assert not db.exists(), "a store was created from an invalid URL"


def test_unknown_memory_option_raises_config_error():
    with pytest.raises(ConfigError):
        StateManager.from_url("memory://?foo=bar")


def test_config_error_is_a_motia_error_not_a_state_value_error():
    assert issubclass(ConfigError, MotiaError)
    assert not issubclass(ConfigError, StateError)


# --------------------------------------------------------------------------------------------------------------
# Persistence
# --------------------------------------------------------------------------------------------------------------


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


@pytest.mark.parametrize("query", ["?timeout=abc", "?timeout="])
def test_bad_timeout_option_raises_config_error(tmp_path, query):
    with pytest.raises(ConfigError):
        StateManager.from_url(f"sqlite:///{tmp_path / 'state.db'}{query}")
