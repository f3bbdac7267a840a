"""PostgreSQL streams and wake-ups beyond the contract (``contract/``): another process's changes reach a waiting
tail woken by ``NOTIFY`` (not by its safety poll), in seq order even when two processes race on one group; kill -9
of a writer leaves no half change; a lost listening connection is re-established and logged; another process's
enqueue wakes this one's listeners."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
import pytest

from motia.state.backends.base import NewDelivery, StreamChange, StreamTriggerSubscription
from motia.state.backends.postgres import PostgresBackend, notify, streams
from tests.polling import eventually

CHILD = Path(__file__).with_name("_child_pg_writer.py")

#: Longer than any wait below: a tail still waiting when it expires was not woken by a notification.
NO_SAFETY_POLL = 120.0


@pytest.fixture
async def opened(postgres_url: str) -> AsyncIterator[Callable[[], PostgresBackend]]:
    """``opened()``: a new PostgresBackend instance on one fresh store, closed after the test."""
    backends: list[PostgresBackend] = []

    def open_one() -> PostgresBackend:
        backend = PostgresBackend(postgres_url)
        backends.append(backend)
        return backend

    yield open_one
    for backend in backends:
        await backend.aclose()


@pytest.fixture
def no_safety_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a notification can wake a waiting tail within the tests' waits."""
    monkeypatch.setattr(streams, "TAIL_SAFETY_POLL", NO_SAFETY_POLL)


def start_child(url: str, mode: str, argument: int, env: dict[str, str]) -> subprocess.Popen[str]:
    # A patient child: on a loaded machine a write may wait longer than the tests' usual 5 s timeout
    url = url.replace("timeout=5", "timeout=60")
    child = subprocess.Popen(
        [sys.executable, str(CHILD), url, mode, str(argument)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    if line != "ready":
        child.kill()
        pytest.fail(f"the child did not start: {line!r} {child.communicate()[1]}")
    return child


def go(child: subprocess.Popen[str]) -> None:
    assert child.stdin is not None
    child.stdin.write("go\n")
    child.stdin.flush()


def stop(child: subprocess.Popen[str]) -> str:
    """Kill the child if it still runs; return what it wrote on stderr."""
    if child.poll() is None:
        child.kill()
    return child.communicate()[1]


async def listening(backend: PostgresBackend, connections: int = 1) -> None:
    """Start the backend's listener and wait until it has listened ``connections`` times."""
    backend._notifier.start()
    await eventually(lambda: backend._notifier.listening and backend._notifier.connections >= connections, timeout=10)


async def tail_all(backend: PostgresBackend, count: int, wait: float) -> list[StreamChange]:
    return await tail_all_after(backend, [], count, wait)


async def tail_all_after(
    backend: PostgresBackend, found: list[StreamChange], count: int, wait: float = 10
) -> list[StreamChange]:
    """The changes after ``found`` until ``count`` in all."""
    found = list(found)
    while len(found) < count:
        more = await backend.stream_tail(found[-1].position if found else 0, limit=1000, wait=wait)
        assert more, f"only {len(found)} of {count} changes arrived"
        found += more
    return found


@pytest.mark.slow
async def test_a_change_from_another_process_wakes_a_waiting_tail_by_its_notification(
    postgres_url: str, opened: Callable[[], PostgresBackend], child_env: dict[str, str], no_safety_poll: None
) -> None:
    backend = opened()
    await listening(backend)
    child = start_child(postgres_url, "count", 50, child_env)
    try:
        # Given a tail waiting here (its safety poll longer than the test) when another process starts writing
        position = await backend.stream_position()
        waiting = asyncio.create_task(backend.stream_tail(position, limit=1000, wait=60))
        await eventually(lambda: backend._stream_waiters._waiters, what="the tail waiting")
        go(child)
        # Then the first change ends its wait (a notification: else it would wait 60 s), and every change
        # follows in the group's seq order
        try:
            found = await asyncio.wait_for(waiting, 30)
        except TimeoutError:
            errors = stop(child)
            pytest.fail(f"no change woke the tail; the writer ended with {child.returncode}: {errors!r}")
        found = await tail_all_after(backend, found, 50)
        assert [change.seq for change in found] == list(range(1, 51))
        assert [change.position for change in found] == sorted({change.position for change in found})
        assert found[0].position > position
        assert [change.kind for change in found[:6]] == ["create"] * 4 + ["event", "update"]
        assert found[5].old_data == b"0" and found[5].new_data == b"5"
        assert child.communicate(timeout=30)[0].strip() == "done"
    finally:
        stop(child)


@pytest.mark.slow
async def test_two_processes_writing_one_group_are_tailed_in_seq_order(
    postgres_url: str, opened: Callable[[], PostgresBackend], child_env: dict[str, str]
) -> None:
    backend = opened()
    children = [start_child(postgres_url, "count", 100, child_env) for _ in range(2)]
    try:
        # Given two processes racing to change the same group
        for child in children:
            go(child)
        # Then in position (commit) order the group's seqs run 1..200: no change is seen out of order
        found = await tail_all(backend, 200, wait=10)
        assert [change.seq for change in found] == list(range(1, 201))
        assert await backend.stream_history("s", "g", after=0, limit=1000) == found
        for child in children:
            assert child.communicate(timeout=30)[0].strip() == "done"
    finally:
        for child in children:
            stop(child)


@pytest.mark.slow
async def test_a_tail_never_skips_a_change_committed_after_a_higher_one_was_read(
    postgres_url: str, opened: Callable[[], PostgresBackend], child_env: dict[str, str]
) -> None:
    # Given four processes writing many groups at once (8 concurrent writes each) while this one tails
    backend = opened()
    children = [start_child(postgres_url, "forever", seed, child_env) for seed in range(4)]
    try:
        for child in children:
            go(child)
        tailed: list[StreamChange] = []
        while len(tailed) < 600:
            tailed += await backend.stream_tail(tailed[-1].position if tailed else 0, limit=50, wait=10)
    finally:
        for child in children:
            stop(child)
    # Then what the tail returned, read in small pages while writers committed, is exactly the log: positions
    # are handed out in commit order, so none appeared later below a position already read
    log: list[StreamChange] = []
    while batch := await backend.stream_tail(log[-1].position if log else 0, limit=1000, wait=0):
        log += batch
    assert tailed == log[: len(tailed)]
    assert [change.position for change in log] == list(range(1, len(log) + 1))


@pytest.mark.slow
async def test_kill_9_of_a_writer_leaves_no_half_change(
    postgres_url: str, opened: Callable[[], PostgresBackend], child_env: dict[str, str]
) -> None:
    subscription = StreamTriggerSubscription("watcher", "s")
    setup = opened()
    await setup.add_stream_subscriptions([subscription])
    for round_ in range(2):
        # Given a process writing stream changes, killed at a random moment
        child = start_child(postgres_url, "forever", round_, child_env)
        go(child)
        assert child.stdout is not None
        acknowledged: list[int] = []
        stop_after = random.randrange(50, 300)
        while len(acknowledged) < stop_after:
            line = child.stdout.readline()
            assert line, f"the writer ended: {child.communicate()[1]}"
            acknowledged.append(int(line.split()[1]))
        child.send_signal(signal.SIGKILL)
        stop(child)
    # Then every acknowledged change is there, and every item, group and delivery agrees with the log
    backend = opened()
    log: list[StreamChange] = []
    while batch := await backend.stream_tail(log[-1].position if log else 0, limit=1000, wait=0):
        log += batch
    positions = {change.position for change in log}
    assert set(acknowledged) <= positions
    for group in (f"g{n}" for n in range(4)):
        changes = [change for change in log if change.group == group]
        seq, records = await backend.stream_snapshot("s", group, None)
        assert [change.seq for change in changes] == list(range(1, seq + 1))
        assert {record.key: (record.data, record.version) for record in records} == replay(changes)
        assert (group in await backend.stream_groups("s")) == bool(records)
    # one delivery per change, none for a change that is not there
    delivered = await backend._fetch("SELECT id, payload FROM motia_deliveries WHERE step = 'watcher'")
    assert sorted(delivery_id for delivery_id, _ in delivered) == sorted(f"stream:{p}:watcher" for p in positions)
    assert {orjson.loads(payload)["position"] for _, payload in delivered} == positions


def replay(changes: list[StreamChange]) -> dict[str, tuple[bytes, int]]:
    """The items the changes leave, with their versions."""
    items: dict[str, tuple[bytes, int]] = {}
    for change in changes:
        assert change.item is not None
        if change.kind == "delete":
            del items[change.item]
        elif change.kind in ("create", "update"):
            assert change.new_data is not None
            version = items[change.item][1] + 1 if change.item in items else 1
            items[change.item] = (change.new_data, version)
    return items


async def test_another_instances_enqueue_wakes_this_ones_listeners(opened: Callable[[], PostgresBackend]) -> None:
    here, there = opened(), opened()
    woken = threading.Event()
    here.add_listener(woken.set)
    await listening(here)
    # When another instance (another connection, as another process would) enqueues a delivery
    assert await there.enqueue([NewDelivery("m1", "worker", "queue", b"1")]) == 1
    # Then this instance's listener is called, from its listening thread
    assert await asyncio.to_thread(woken.wait, 10)
    (claimed,) = await here.claim(["worker"], owner="a", limit=10, lease=30)
    assert claimed.id == "m1"


async def test_an_instance_is_not_woken_twice_by_its_own_commit(opened: Callable[[], PostgresBackend]) -> None:
    here, there = opened(), opened()
    calls: list[str] = []
    here.add_listener(lambda: calls.append("here"))
    there.add_listener(lambda: calls.append("there"))
    await listening(here)
    await listening(there)
    await here.enqueue([NewDelivery("m1", "worker", "queue", b"1")])
    # "here" is called at its commit, "there" by the notification; "here" does not hear its own
    await eventually(lambda: "there" in calls, timeout=10)
    await there.enqueue([NewDelivery("m2", "worker", "queue", b"2")])
    await eventually(lambda: calls.count("here") == 2, timeout=10)
    assert sorted(calls) == ["here", "here", "there", "there"]


async def test_a_lost_listening_connection_is_re_established_and_logged(
    opened: Callable[[], PostgresBackend], caplog: pytest.LogCaptureFixture, no_safety_poll: None
) -> None:
    here, there = opened(), opened()
    await listening(here)
    # When the server ends the listening connection (as a restart or an operator would)
    killed = await here._fetch("SELECT pg_terminate_backend($1)", here._notifier.pid)
    assert killed[0][0] is True
    # Then it is re-established, saying so
    await listening(here, connections=2)
    assert "lost the wake-up connection" in caplog.text
    # and another instance's change wakes a waiting tail again, by its notification
    position = await here.stream_position()
    waiting = asyncio.create_task(here.stream_tail(position, limit=10, wait=30))
    await asyncio.sleep(0)
    change = await there.stream_write("s", "g", "i", b"1", if_version=None, history=10)
    assert await asyncio.wait_for(waiting, 20) == [change]


async def test_waiters_poll_while_nobody_listens(
    opened: Callable[[], PostgresBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an instance whose listener cannot connect (it keeps retrying)
    here, there = opened(), opened()

    refused = threading.Event()

    async def refuse() -> None:
        refused.set()  # on the listener's own thread
        raise OSError("connection refused")

    monkeypatch.setattr(here._notifier, "_connect", refuse)
    monkeypatch.setattr(streams, "TAIL_SAFETY_POLL", NO_SAFETY_POLL)
    position = await here.stream_position()
    waiting = asyncio.create_task(here.stream_tail(position, limit=10, wait=30))
    assert await asyncio.to_thread(refused.wait, 10)  # the tail started the listener, which was refused
    assert not here._notifier.listening
    # When another instance writes, a tail waiting here finds it by polling (TAIL_POLL), not after its wait
    change = await there.stream_write("s", "g", "i", b"1", if_version=None, history=10)
    assert await asyncio.wait_for(waiting, 10) == [change]


def test_a_long_schema_gets_a_channel_name_within_the_identifier_limit() -> None:
    assert notify.channel_for("app") == "motia.app"
    long = notify.channel_for("s" * 63)
    assert len(long.encode()) <= 63 and long.startswith("motia.")
    assert long != notify.channel_for("s" * 62 + "t")


async def test_closing_the_store_stops_its_listener(opened: Callable[[], PostgresBackend]) -> None:
    backend = opened()
    await listening(backend)
    thread = backend._notifier._thread
    assert thread is not None and thread.is_alive()
    await backend.aclose()
    assert not thread.is_alive()


async def test_concurrent_changes_commit_together_and_a_conflict_fails_alone(
    opened: Callable[[], PostgresBackend],
) -> None:
    backend = opened()
    await backend.stream_write("s", "g", "taken", b"1", if_version=None, history=10)
    # When many changes of one loop are made at once, one of them with a stale version
    results = await asyncio.gather(
        *(backend.stream_write("s", "g", f"i{n}", b"%d" % n, if_version=None, history=10) for n in range(50)),
        backend.stream_write("s", "g", "taken", b"2", if_version=0, history=10),
        *(backend.stream_send("s", "h", None, b"{}", history=10) for _ in range(50)),
        return_exceptions=True,
    )
    # Then only that one fails, and the others are all there, numbered without gaps
    assert [type(result).__name__ for result in results].count("StateConflictError") == 1
    seq, records = await backend.stream_snapshot("s", "g", None)
    assert seq == 51 and len(records) == 51
    assert await backend.stream_get("s", "g", "taken") is not None
    positions = sorted(result.position for result in results if isinstance(result, StreamChange))
    assert positions == list(range(2, 102))


async def test_a_cancelled_caller_does_not_cancel_the_others_changes(opened: Callable[[], PostgresBackend]) -> None:
    backend = opened()
    writes = [
        asyncio.create_task(backend.stream_write("s", "g", f"i{n}", b"1", if_version=None, history=10))
        for n in range(20)
    ]
    await asyncio.sleep(0)
    writes[0].cancel()
    done = await asyncio.gather(*writes[1:])
    assert all(change is not None for change in done)
    assert len((await backend.stream_snapshot("s", "g", None))[1]) >= 19
