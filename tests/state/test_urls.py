"""State URLs (SPEC 2): schemes, relative paths, options, unknown options as ConfigError, masked passwords."""

from __future__ import annotations

import pytest

from motia import (
    MotiaError,
    StateError,
    StateManager,
    SyncStateManager,
)
from motia.exceptions import ConfigError
from motia.state.urls import mask_url

# --------------------------------------------------------------------------------------------------------------
# SQLite paths and options
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


@pytest.mark.parametrize("query", ["?timeout=abc", "?timeout="])
def test_bad_timeout_option_raises_config_error(tmp_path, query):
    with pytest.raises(ConfigError):
        StateManager.from_url(f"sqlite:///{tmp_path / 'state.db'}{query}")


# --------------------------------------------------------------------------------------------------------------
# Unknown schemes and options
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "mongodb://localhost/db",
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
# Passwords are masked in messages
# --------------------------------------------------------------------------------------------------------------


def test_mask_url_hides_passwords():
    assert mask_url("redis://user:hunter2@host:6379/0") == "redis://user:***@host:6379/0"
    assert mask_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
