"""The app applies the store's retention (issue 11): it touches its steps at start and every
``retention_interval``, and prunes old dead letters and the subscriptions and waiting deliveries of steps
no running app serves any more (a renamed step), logging what it moved or removed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import motia
from motia import ConfigError, StateManager, queue, state, step
from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions
from motia.runtime.project_config import retention_config
from motia.runtime.retention import RETENTION_LEASE
from motia.state.backends.sqlite import SQLiteBackend
from tests.polling import eventually


async def noop(input, ctx):
    return None


async def fail(input, ctx):
    raise RuntimeError("always fails")


async def test_a_renamed_step_is_pruned_and_old_dead_letters_deleted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="motia.runtime")
    url = f"sqlite:///{tmp_path / 'state.db'}"
    # Given version 1 of an app ran on a store: a state step "old-name", and a queue step whose one
    # message was dead-lettered
    v1 = MotiaApp(
        [
            step({"name": "old-name", "triggers": [state(scope="orders")]}, noop),
            step({"name": "failing", "triggers": [queue("jobs", config={"max_retries": 0})]}, fail),
        ],
        state=url,
        cron=False,
        delivery=DeliveryOptions(poll_interval=0.05, dead_letter_retention=0, step_retention=0),
    )
    await v1.startup()
    await motia.enqueue({"topic": "jobs", "data": {}})
    await v1.drain()
    await v1.shutdown()
    # And a write made while no app ran
    async with StateManager.from_url(url) as sm:
        await sm.set("orders", "k1", {"n": 1})

    # When version 2, where the step is renamed "new-name", runs with short retention ages
    handled: list[str] = []

    async def on_order(input, ctx):
        handled.append(input.key)

    options = DeliveryOptions(poll_interval=0.05, retention_interval=0.1, step_retention=0.5, dead_letter_retention=2.0)
    v2 = MotiaApp(
        [step({"name": "new-name", "triggers": [state(scope="orders")]}, on_order)],
        state=url,
        cron=False,
        delivery=options,
    )
    await v2.startup()
    backend = v2.state.backend
    try:
        # Then the renamed step's waiting delivery becomes a dead letter saying why, never silently dropped
        orphans = await eventually(
            lambda: backend.dead_letters("old-name"), timeout=10, what="old-name's delivery dead-lettered"
        )
        assert [letter.payload for letter in orphans] and "retention moved it here" in orphans[0].error
        # And its subscription is gone: a new write makes a delivery for new-name only
        await v2.state.set("orders", "k2", {"n": 2})
        await v2.drain()
        assert await backend.pending("old-name") == 0
        assert sorted(handled) == ["k1", "k2"]
        # And the dead letter older than 2 s is deleted, while the app's own step is kept
        await eventually(lambda: _no_dead_letters(backend, "failing"), timeout=10, what="the old dead letter deleted")
        await v2.state.set("orders", "k3", {"n": 3})
        await v2.drain()
        assert sorted(handled) == ["k1", "k2", "k3"]
    finally:
        await v2.shutdown()
    # And retention said what it did
    messages = [r.getMessage() for r in caplog.records]
    assert any("retention: forgot 2 step(s)" in m and "1 of their waiting deliveries" in m for m in messages)
    assert any("retention: deleted 1 dead letter(s)" in m for m in messages)


async def _no_dead_letters(backend, step_name: str) -> bool:
    return not await backend.dead_letters(step_name)


def test_retention_settings_come_from_the_environment() -> None:
    options = DeliveryOptions.from_env(
        {
            "MOTIA_DELIVERY_DEAD_LETTER_RETENTION": "86400",
            "MOTIA_DELIVERY_STEP_RETENTION": "0",
            "MOTIA_DELIVERY_RETENTION_INTERVAL": "60",
        }
    )
    assert (options.dead_letter_retention, options.step_retention, options.retention_interval) == (86400, 0, 60)
    defaults = DeliveryOptions()
    assert defaults.dead_letter_retention == 30 * 86400 and defaults.step_retention == 7 * 86400
    assert defaults.stream_retention == 7 * 86400
    assert DeliveryOptions.from_env({"MOTIA_DELIVERY_STREAM_RETENTION": "3600"}).stream_retention == 3600
    assert defaults.dead_letter_limit == 0  # no limit: dead letters go by age
    assert DeliveryOptions.from_env({"MOTIA_DELIVERY_DEAD_LETTER_LIMIT": "1000"}).dead_letter_limit == 1000


def test_retention_settings_of_motia_config_are_overridden_by_the_environment(tmp_path: Path) -> None:
    # Given a project whose motia_config.py sets two retention ages
    (tmp_path / "motia_config.py").write_text("retention = {'stream_retention': 0, 'dead_letter_retention': 86400}\n")
    configured = retention_config(tmp_path)
    assert configured == {"stream_retention": 0, "dead_letter_retention": 86400}
    # When options are read with it, and with the environment setting one of them too
    options = DeliveryOptions.from_env({}, retention=configured)
    overridden = DeliveryOptions.from_env({"MOTIA_DELIVERY_DEAD_LETTER_RETENTION": "60"}, retention=configured)
    # Then the file's values replace the defaults, and the environment's replace the file's
    assert (options.stream_retention, options.dead_letter_retention, options.step_retention) == (0, 86400, 7 * 86400)
    assert (overridden.stream_retention, overridden.dead_letter_retention) == (0, 60)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("retention = 3600\n", "must be a dict of seconds"),
        ("retention = {'dead_letters': 3600}\n", "unknown setting 'dead_letters'"),
        ("retention = {'stream_retention': -5}\n", "stream_retention must be a number of seconds >= 0"),
    ],
)
def test_a_bad_retention_in_motia_config_is_a_config_error(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "motia_config.py").write_text(text)
    with pytest.raises(ConfigError, match=message):
        DeliveryOptions.from_env({}, retention=retention_config(tmp_path))


@pytest.mark.parametrize(
    "fields",
    [
        {"dead_letter_retention": -1},
        {"step_retention": float("inf")},
        {"stream_retention": -1},
        {"dead_letter_limit": -1},
        {"dead_letter_limit": 1.5},
        {"retention_interval": 0},
        {"step_retention": 100, "retention_interval": 60},  # shorter than two touches apart
    ],
)
def test_bad_retention_settings_are_a_config_error(fields) -> None:
    with pytest.raises(ConfigError):
        DeliveryOptions(**fields)


async def test_old_stream_history_is_pruned_by_the_app(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="motia.runtime")
    url = f"sqlite:///{tmp_path / 'state.db'}"
    # Given a stream group created and emptied in a store, and an app keeping a second of stream history
    async with StateManager.from_url(url) as sm:
        await sm.backend.stream_write("chat", "room", "m1", b"{}", if_version=None, history=100)
        await sm.backend.stream_write("chat", "room", "m1", None, if_version=None, history=100)
        await sm.backend.stream_write("chat", "other", "m1", b"{}", if_version=None, history=100)
    options = DeliveryOptions(poll_interval=0.05, retention_interval=0.1, step_retention=0, stream_retention=1.0)
    app = MotiaApp([step({"name": "noop", "triggers": [queue("jobs")]}, noop)], state=url, cron=False, delivery=options)
    # (the SQLite log keeps every change its tail may need for a minute: age the changes past that)
    async with StateManager.from_url(url) as sm:
        assert isinstance(sm.backend, SQLiteBackend)
        await sm.backend._write(_age_stream_changes, 120.0)
    await app.startup()
    try:
        # Then the empty group is forgotten with its changes; the group with an item keeps it
        backend = app.state.backend
        await eventually(lambda: _groups_left(backend, 1), timeout=10, what="the empty stream group forgotten")
        assert await backend.stream_groups("chat") == ["other"]
    finally:
        await app.shutdown()
    messages = [r.getMessage() for r in caplog.records]
    assert any("forgot 1 empty stream group(s)" in m for m in messages)


def _age_stream_changes(tx, seconds: float) -> None:
    """Make every logged stream change ``seconds`` older (a store that has run that long)."""
    tx.connection.execute("UPDATE motia_stream_changes SET timestamp = timestamp - ?", (seconds,))


async def _groups_left(backend, count: int) -> bool:
    return (await backend.stats()).stream_groups == count


async def test_one_instance_at_a_time_applies_retention(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    options = DeliveryOptions(poll_interval=0.05, retention_interval=0.1, step_retention=0)
    apps = [
        MotiaApp([step({"name": "noop", "triggers": [queue("jobs")]}, noop)], state=url, cron=False, delivery=options)
        for _ in range(2)
    ]
    for app in apps:
        await app.startup()
    try:
        # Given two instances on one store, both past their first retention round
        async with StateManager.from_url(url) as probe:
            await eventually(lambda: _lease_taken(probe), timeout=10, what="the retention lease taken by an instance")
            # Then exactly one of them holds the retention lease (only its holder prunes)
            owners = [app.delivery.owner for app in apps if app.delivery is not None]
            held = [await probe.backend.release_lease(RETENTION_LEASE, owner) for owner in owners]
            assert sorted(held) == [False, True]
    finally:
        for app in apps:
            await app.shutdown()
    # And once they stop, the lease is free at once (released, not left to lapse)
    async with StateManager.from_url(url) as probe:
        assert await probe.backend.acquire_lease(RETENTION_LEASE, "probe", ttl=1)


async def _lease_taken(probe: StateManager) -> bool:
    return not await probe.backend.acquire_lease(RETENTION_LEASE, "probe", ttl=0.001)


async def test_dead_letters_beyond_the_limit_are_deleted_by_the_app(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    # Given an app keeping at most 2 dead letters, and 5 messages that all fail
    options = DeliveryOptions(poll_interval=0.05, retention_interval=0.1, step_retention=0, dead_letter_limit=2)
    app = MotiaApp(
        [step({"name": "failing", "triggers": [queue("jobs", config={"max_retries": 0})]}, fail)],
        state=url,
        cron=False,
        delivery=options,
    )
    await app.startup()
    try:
        for n in range(5):
            await motia.enqueue({"topic": "jobs", "data": {"n": n}})
        await app.drain()
        # Then retention keeps the newest 2
        await eventually(lambda: _dead_letter_count(app, 2), timeout=10, what="the dead letters capped at 2")
    finally:
        await app.shutdown()


async def _dead_letter_count(app: MotiaApp, count: int) -> bool:
    return len(await app.state.backend.dead_letters()) == count
