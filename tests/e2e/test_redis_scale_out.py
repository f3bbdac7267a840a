"""Several ``motia run`` instances pointed at one Redis, or one PostgreSQL database, form one app (SPEC 2, 3.1,
4): shared state, each queue message and each state event handled once per subscribing step, each cron tick run
once, and the work of an instance killed with SIGKILL taken over by another once its leases expire.

Every test runs on both and gets an empty store: a key prefix of its own on the session's private Redis server,
a schema of its own on the session's private PostgreSQL cluster. Outcomes are read straight from the store
(``store``), not through either instance.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from motia import StateManager, SyncStateManager
from tests.e2e.motia_proc import MotiaProcess, poll

pytestmark = pytest.mark.slow

STEPS = Path(__file__).resolve().parent / "steps_scale_out"
APP_STEPS = STEPS / "app"
CRON_STEPS = Path(__file__).resolve().parent / "steps_cron"  # the per-second ticker the SQLite test uses
#: Short leases and quick polls, so another instance takes over a killed one's work within seconds.
FAST = {"MOTIA_DELIVERY_LEASE": "1", "MOTIA_DELIVERY_POLL_INTERVAL": "0.05"}
CONSOLE_ENTRY = "/__motia/api/entry"


@pytest.fixture(params=["redis", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """A state URL of an empty store on the session's shared server: a key prefix (Redis) or a schema
    (PostgreSQL) no other test uses."""
    if request.param == "postgres":
        return f"{request.getfixturevalue('postgres_server').url}?schema=scale_{uuid.uuid4().hex[:12]}"
    return f"{request.getfixturevalue('redis_server').url}?prefix=scale-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(store_url: str) -> Iterator[SyncStateManager]:
    """The test's own connection to the store the instances share."""
    with SyncStateManager.from_url(store_url) as sm:
        yield sm


def two_instances(
    run_motia: Callable[..., MotiaProcess], steps: Path, url: str, **kwargs: Any
) -> tuple[MotiaProcess, MotiaProcess]:
    a = run_motia(steps, state=url, name="a", **kwargs)
    b = run_motia(steps, state=url, name="b", **kwargs)
    return a.wait_ready(), b.wait_ready()


def records(store: SyncStateManager, scope: str) -> dict[str, Any]:
    return {entry.key: entry.value for entry in store.items(scope)}


def unsettled(url: str) -> int:
    """Deliveries in the store not yet settled (waiting or leased), of every step."""

    async def count() -> int:
        manager = StateManager.from_url(url)
        try:
            return await manager.backend.pending()
        finally:
            await manager.aclose()

    return asyncio.run(count())


def stays_false(predicate: Callable[[], Any], *, seconds: float, interval: float = 0.05) -> bool:
    """Watch ``predicate`` for ``seconds``; ``True`` if it never became truthy (an observation window)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return False
        time.sleep(interval)
    return not predicate()


def test_state_written_through_one_instance_is_read_through_the_other(
    run_motia: Callable[..., MotiaProcess], store_url: str, store: SyncStateManager
) -> None:
    # Given two instances on one shared store
    a, b = two_instances(run_motia, APP_STEPS, store_url)

    # When a value is written through A's console API, then it is read through B's
    written = httpx.put(
        f"{a.url}{CONSOLE_ENTRY}", params={"scope": "profiles", "key": "ada"}, json={"value": {"name": "Ada"}}
    )
    assert written.status_code == 200, written.text
    assert written.json()["version"] == 1
    read_b = httpx.get(f"{b.url}{CONSOLE_ENTRY}", params={"scope": "profiles", "key": "ada"})
    assert read_b.status_code == 200, read_b.text
    assert (read_b.json()["value"], read_b.json()["version"]) == ({"name": "Ada"}, 1)

    # And B's step overwrites it, A's step reads B's write, and a write based on the old version is refused on A
    overwritten = httpx.put(f"{b.url}/kv/profiles/ada", json={"name": "Ada", "born": 1815})
    assert overwritten.json() == {"version": 2}
    assert httpx.get(f"{a.url}/kv/profiles/ada").json() == {"value": {"name": "Ada", "born": 1815}, "version": 2}
    stale = httpx.put(
        f"{a.url}{CONSOLE_ENTRY}",
        params={"scope": "profiles", "key": "ada"},
        json={"value": {"name": "stale"}, "if_version": 1},
    )
    assert stale.status_code == 409, stale.text
    assert stale.json()["actual"] == 2

    # When both instances increment one counter concurrently, 40 times each
    async def increment_through_both() -> list[int]:
        async with httpx.AsyncClient(timeout=10) as client:
            calls = [client.post(f"{proc.url}/counters/hits") for _ in range(40) for proc in (a, b)]
            return [response.status_code for response in await asyncio.gather(*calls)]

    assert asyncio.run(increment_through_both()) == [204] * 80

    # Then no increment was lost, whichever instance (or the store itself) is asked
    assert httpx.get(f"{a.url}/kv/counters/hits").json()["value"] == {"n": 80}
    assert httpx.get(f"{b.url}/kv/counters/hits").json()["value"] == {"n": 80}
    assert store.get("counters", "hits") == {"n": 80}
    assert a.stop() == 0 and b.stop() == 0


def test_each_cron_tick_runs_once_across_instances(
    run_motia: Callable[..., MotiaProcess], store_url: str, store: SyncStateManager
) -> None:
    # Given two instances with a per-second cron on one shared store, both serving (debug logs name lost claims)
    a, b = two_instances(run_motia, CRON_STEPS, store_url, extra=["--log-level", "debug"])
    both_up = datetime.now(UTC)

    def runs_per_tick() -> dict[datetime, dict[str, Any]]:
        return {datetime.fromisoformat(key): value for key, value in records(store, "ticks").items()}

    # When five ticks have come since both were up
    def contested() -> list[datetime]:
        ticks = sorted(tick for tick in runs_per_tick() if tick > both_up)
        return ticks if len(ticks) >= 5 else []

    contested_ticks = poll(contested, timeout=20, interval=0.2, what="five cron ticks with both instances up")
    assert a.stop() == 0 and b.stop() == 0

    # Then no tick ran twice, before, during or after the window
    runs = runs_per_tick()
    assert len(runs) >= 5
    assert {tick: entry for tick, entry in runs.items() if entry["runs"] != 1 or len(entry["pids"]) != 1} == {}
    # And each contested tick (bar the newest, which the stop may have cut short) was scheduled by the other
    # instance too, which lost the claim: both instances really were running the cron
    instances = {a.proc.pid: a, b.proc.pid: b}
    for tick in contested_ticks[:-1]:
        [pid] = runs[tick]["pids"]
        [other] = [proc for p, proc in instances.items() if p != pid]
        assert f"tick {tick.isoformat()} was claimed by another instance" in other.logs(), tick


def test_each_queue_message_is_handled_once_per_subscribing_step(
    run_motia: Callable[..., MotiaProcess], store_url: str, store: SyncStateManager
) -> None:
    # Given two instances on one shared store, each with two queue steps subscribed to "messages"
    a, b = two_instances(run_motia, APP_STEPS, store_url, env=FAST)

    # When 30 messages are enqueued, half through each instance
    ids = [f"m{n:02d}" for n in range(30)]
    assert httpx.post(f"{a.url}/messages", json={"ids": ids[:15]}, timeout=10).status_code == 202
    assert httpx.post(f"{b.url}/messages", json={"ids": ids[15:]}, timeout=10).status_code == 202

    def all_handled() -> bool:
        return all(store.count(f"handled-{step}") == len(ids) for step in ("message-a", "message-b"))

    poll(all_handled, timeout=20, what="every message to be handled by both queue steps")
    # (and settled: nothing is left that could run again)
    poll(lambda: unsettled(store_url) == 0, timeout=10, what="every delivery to be settled")
    assert a.stop() == 0 and b.stop() == 0

    # Then each step handled each message exactly once, at the first attempt
    handled_by: set[int] = set()
    for step in ("message-a", "message-b"):
        handled = records(store, f"handled-{step}")
        assert sorted(handled) == ids
        assert {key: run for key, run in handled.items() if run["runs"] != 1 or run["attempts"] != [1]} == {}
        handled_by.update(run["pids"][0] for run in handled.values())
    # And both instances' workers took part (and nobody else's)
    assert handled_by == {a.proc.pid, b.proc.pid}


def test_each_state_event_is_handled_once_per_subscribing_step(
    run_motia: Callable[..., MotiaProcess], store_url: str, store: SyncStateManager
) -> None:
    # Given two instances on one shared store, each with two state-trigger steps on the scope "items"
    a, b = two_instances(run_motia, APP_STEPS, store_url, env=FAST)

    # When 20 items are created, half through each instance, and 5 of A's are then updated through B
    def write(proc: MotiaProcess, item: str, value: int) -> None:
        assert httpx.post(f"{proc.url}/items/{item}", json={"v": value}, timeout=5).status_code == 204

    for n in range(20):
        write(a if n < 10 else b, f"i{n:02d}", 1)
    for n in range(5):
        write(b, f"i{n:02d}", 2)
    events = sorted([f"i{n:02d}@1" for n in range(20)] + [f"i{n:02d}@2" for n in range(5)])

    def all_seen() -> bool:
        return all(store.count(f"seen-{step}") == len(events) for step in ("item-a", "item-b"))

    poll(all_seen, timeout=20, what="every state event to be handled by both state-trigger steps")
    poll(lambda: unsettled(store_url) == 0, timeout=10, what="every delivery to be settled")
    assert a.stop() == 0 and b.stop() == 0

    # Then each step handled each change (key@version) exactly once
    for step in ("item-a", "item-b"):
        seen = records(store, f"seen-{step}")
        assert sorted(seen) == events
        assert {key: run for key, run in seen.items() if run["runs"] != 1} == {}


def test_work_of_a_killed_instance_is_finished_by_the_other(
    run_motia: Callable[..., MotiaProcess], store_url: str, store: SyncStateManager
) -> None:
    steps = ("message-a", "message-b")
    ids = [f"k{n}" for n in range(6)]
    # Given an instance whose queue handlers hang once started, holding every message of a batch
    doomed = run_motia(APP_STEPS, state=store_url, env={**FAST, "MOTIA_TEST_HANG": "1"}, name="doomed").wait_ready()
    assert httpx.post(f"{doomed.url}/messages", json={"ids": ids}, timeout=10).status_code == 202

    def all_started() -> bool:
        return all(store.count(f"started-{step}") == len(ids) for step in steps)

    poll(all_started, timeout=15, what="the doomed instance to start every handler")

    # And a second instance on the same store, which leaves them alone while the first renews its leases
    survivor = run_motia(APP_STEPS, state=store_url, env=FAST, name="survivor").wait_ready()
    assert stays_false(lambda: any(store.count(f"handled-{step}") for step in steps), seconds=2.0), (
        "the survivor took work whose lease the doomed instance was still renewing"
    )

    # When the first instance is killed with SIGKILL mid-handler
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait(timeout=10)

    # Then, once the leases expire, the survivor handles every message, each once, as the second attempt
    def all_handled() -> bool:
        return all(store.count(f"handled-{step}") == len(ids) for step in steps)

    poll(all_handled, timeout=20, what="the survivor to handle the killed instance's messages")
    poll(lambda: unsettled(store_url) == 0, timeout=10, what="every delivery to be settled")
    assert survivor.stop() == 0
    for step in steps:
        started = records(store, f"started-{step}")
        assert started == {id_: {"runs": 1, "pids": [doomed.proc.pid], "attempts": [1]} for id_ in ids}
        handled = records(store, f"handled-{step}")
        assert handled == {id_: {"runs": 1, "pids": [survivor.proc.pid], "attempts": [2]} for id_ in ids}
