"""SQLite streams beyond the contract (``contract/test_stream*.py``): another process's changes reach a waiting tail
here, in seq order; a schema 3 file is upgraded in place; trimming is bounded; kill -9 of a writer leaves no half
change."""

from __future__ import annotations

import contextlib
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from motia import StateManager
from motia.state.backends.base import StreamChange, StreamTriggerSubscription
from motia.state.backends.sqlite import SQLiteBackend, streams, writer
from tests.state.conftest import FakeClock

CHILD = Path(__file__).with_name("_child_stream_writer.py")
STREAM_TABLES = ("motia_stream_items", "motia_stream_groups", "motia_stream_changes", "motia_stream_subscriptions")


def start_child(path: Path, mode: str, argument: int, env: dict[str, str]) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(path), mode, str(argument)],
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


def rows(path: Path, sql: str, parameters: tuple[Any, ...] = ()) -> list[Any]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return connection.execute(sql, parameters).fetchall()


@pytest.mark.slow
async def test_a_change_from_another_process_reaches_a_waiting_tail_in_seq_order(
    sqlite_path: Path, child_env: dict[str, str]
) -> None:
    backend = SQLiteBackend(sqlite_path)
    child = start_child(sqlite_path, "count", 50, child_env)
    try:
        position = await backend.stream_position()
        # Given a tail waiting here when the other process starts writing
        go(child)
        started = time.monotonic()
        first = await backend.stream_tail(position, limit=1000, wait=30)
        latency = time.monotonic() - started
        # Then the first change arrives within the wait (found by polling: another process's commit wakes nothing)
        assert first and latency < 5
        found: list[StreamChange] = list(first)
        while len(found) < 50:
            more = await backend.stream_tail(found[-1].position, limit=1000, wait=10)
            assert more, f"only {len(found)} of 50 changes arrived"
            found += more
        # in commit order: seq 1..50 of the group, positions increasing, each as the child wrote it
        assert [change.seq for change in found] == list(range(1, 51))
        assert [change.position for change in found] == sorted({change.position for change in found})
        assert [change.kind for change in found[:6]] == ["create"] * 4 + ["event", "update"]
        assert found[5].old_data == b"0" and found[5].new_data == b"5"
        assert child.communicate(timeout=30)[0].strip() == "done"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        await backend.aclose()


@pytest.mark.slow
async def test_two_processes_writing_one_group_are_tailed_in_seq_order(
    sqlite_path: Path, child_env: dict[str, str]
) -> None:
    backend = SQLiteBackend(sqlite_path)
    children = [start_child(sqlite_path, "count", 100, child_env) for _ in range(2)]
    try:
        # Given two processes racing to change the same group
        for child in children:
            go(child)
        found: list[StreamChange] = []
        while len(found) < 200:
            more = await backend.stream_tail(found[-1].position if found else 0, limit=1000, wait=10)
            assert more, f"only {len(found)} of 200 changes arrived"
            found += more
        # Then in position (commit) order the group's seqs run 1..200: no process's change is seen out of order
        assert [change.seq for change in found] == list(range(1, 201))
        assert await backend.stream_history("s", "g", after=0, limit=1000) == found
        for child in children:
            assert child.communicate(timeout=30)[0].strip() == "done"
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        await backend.aclose()


async def test_a_schema_3_file_is_upgraded_in_place(sqlite_url: str, sqlite_path: Path) -> None:
    # Given a file as pymotia before streams left it: state, a lease, a claimed tick, schema version 3
    async with StateManager.from_url(sqlite_url) as sm:
        await sm.set("orders", "o1", {"total": 3})
        assert await sm.backend.acquire_lease("cron:job", "a", ttl=3600)
        assert await sm.backend.claim_tick("cron:job:0", 1_700_000_000.0, hold=3600)
    with contextlib.closing(sqlite3.connect(sqlite_path, isolation_level=None)) as connection:
        for table in STREAM_TABLES:
            connection.execute(f"DROP TABLE {table}")
        connection.execute("UPDATE motia_meta SET value = '3' WHERE name = 'schema_version'")
    assert not {name for (name,) in rows(sqlite_path, "SELECT name FROM sqlite_master")} & set(STREAM_TABLES)
    # When it is opened again
    async with StateManager.from_url(sqlite_url) as sm:
        # Then its state, lease and claim are intact, and streams work
        assert await sm.get("orders", "o1") == {"total": 3}
        assert not await sm.backend.acquire_lease("cron:job", "b", ttl=3600)
        assert not await sm.backend.claim_tick("cron:job:0", 1_700_000_000.0, hold=3600)
        change = await sm.backend.stream_write("orders", "g", "i", b"1", if_version=None, history=10)
        assert change is not None and (change.seq, change.position) == (1, 1)
        assert await sm.backend.stream_groups("orders") == ["g"]
        assert await sm.backend.scopes() == ["orders"]
    # and it is marked as the current schema (8), with every stream table
    assert rows(sqlite_path, "SELECT value FROM motia_meta WHERE name = 'schema_version'") == [("10",)]
    assert set(STREAM_TABLES) <= {name for (name,) in rows(sqlite_path, "SELECT name FROM sqlite_master")}


def group_log(path: Path, group: str) -> list[int]:
    return [seq for (seq,) in rows(path, "SELECT seq FROM motia_stream_changes WHERE grp = ? ORDER BY seq", (group,))]


async def test_each_write_trims_its_group_oldest_first_and_boundedly(
    sqlite_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streams, "TAIL_KEEP", 20)
    monkeypatch.setattr(writer, "TRIM_INTERVAL", 1e9)  # no periodic pass: the writes alone trim
    clock = FakeClock()
    backend = SQLiteBackend(sqlite_path, clock=clock)
    try:
        # Given a group written once a second with a history of 10: the log keeps the last minute (what the
        # tail needs) and trims what is older, write by write
        for index in range(300):
            await backend.stream_write("s", "g", f"i{index % 7}", b"1", if_version=None, history=10)
            clock.advance(1.0)
        kept = group_log(sqlite_path, "g")
        assert kept == list(range(300 - len(kept) + 1, 301))  # the newest, with no gap
        assert 10 <= len(kept) <= streams.TAIL_AGE + 1 + streams.TRIM_PER_WRITE
        # When the tail no longer needs them (a minute later), a write trims at most TRIM_PER_WRITE of them
        clock.advance(streams.TAIL_AGE * 2)
        await backend.stream_write("s", "g", "i0", b"2", if_version=None, history=10)
        after = group_log(sqlite_path, "g")
        assert len(after) == len(kept) + 1 - streams.TRIM_PER_WRITE
        assert after[0] == kept[streams.TRIM_PER_WRITE]
        # and a resume from a trimmed seq asks for a full sync, one still kept gets its changes
        assert await backend.stream_history("s", "g", after=kept[0], limit=1000) is None
        assert [c.seq for c in await backend.stream_history("s", "g", after=after[0] - 1, limit=1000) or []] == after
    finally:
        await backend.aclose()


async def test_the_periodic_pass_trims_groups_no_longer_written_within_its_budget(
    sqlite_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streams, "TAIL_KEEP", 20)
    monkeypatch.setattr(streams, "TRIM_BUDGET", 60)
    clock = FakeClock()
    backend = SQLiteBackend(sqlite_path, clock=clock)
    try:
        # Given groups written in a burst (the tail needed every change then, so no write could trim them)
        for index in range(100):
            for group in ("quiet", "also-quiet"):
                await backend.stream_write("s", group, f"i{index % 3}", b"1", if_version=None, history=5)
        await backend.stream_send("s", "short", None, b"{}", history=5)
        for _ in range(streams.TAIL_KEEP):
            await backend.stream_send("t", "busy", None, b"{}", history=1000)
        assert len(group_log(sqlite_path, "quiet")) == len(group_log(sqlite_path, "also-quiet")) == 100
        # When they are no longer written, and the periodic pass runs (in any write, after TRIM_INTERVAL)
        clock.advance(streams.TAIL_AGE * 2)
        await backend.stream_send("t", "busy", None, b"{}", history=1000)
        # Then one pass removes at most its budget, oldest first
        left = len(group_log(sqlite_path, "quiet")) + len(group_log(sqlite_path, "also-quiet"))
        assert left == 200 - 60
        # and later passes go on where it stopped, until each group keeps its history and no more
        for _ in range(3):
            clock.advance(streams.TRIM_INTERVAL)
            await backend.stream_send("t", "busy", None, b"{}", history=1000)
        assert group_log(sqlite_path, "quiet") == list(range(96, 101))
        assert group_log(sqlite_path, "also-quiet") == list(range(96, 101))
        assert group_log(sqlite_path, "short") == [1]
        backlog = rows(sqlite_path, "SELECT count(*) FROM motia_stream_groups WHERE oldest <= seq - history")
        assert backlog == [(0,)]
    finally:
        await backend.aclose()


def replay(changes: list[StreamChange]) -> dict[str, tuple[bytes, int]]:
    """The items a group's changes leave (item -> (value, version)), checking each change's old value."""
    items: dict[str, tuple[bytes, int]] = {}
    for change in changes:
        if change.kind == "event":
            continue
        assert change.item is not None
        current = items.pop(change.item, None)
        assert (current is None) == (change.kind == "create")
        assert change.old_data == (None if current is None else current[0])
        if change.kind != "delete":
            assert change.new_data is not None
            items[change.item] = (change.new_data, 1 if current is None else current[1] + 1)
    return items


@pytest.mark.slow
async def test_kill_9_of_a_writer_leaves_no_half_change(sqlite_path: Path, child_env: dict[str, str]) -> None:
    subscription = StreamTriggerSubscription("watcher", "s")
    for round_ in range(3):
        backend = SQLiteBackend(sqlite_path)
        await backend.add_stream_subscriptions([subscription])
        await backend.aclose()
        # Given a process writing stream changes, killed at a random moment
        child = start_child(sqlite_path, "forever", round_, child_env)
        go(child)
        assert child.stdout is not None
        acknowledged: list[int] = []
        stop_after = random.randrange(50, 400)
        while len(acknowledged) < stop_after:
            line = child.stdout.readline()
            assert line, f"the writer ended: {child.communicate()[1]}"
            acknowledged.append(int(line.split()[1]))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close()  # type: ignore[union-attr]
        child.stdin.close()  # type: ignore[union-attr]
        # Then every acknowledged change is there, and every item, group and delivery agrees with the log
        assert rows(sqlite_path, "PRAGMA integrity_check") == [("ok",)]
        backend = SQLiteBackend(sqlite_path)
        try:
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
            delivered = rows(sqlite_path, "SELECT id, payload FROM motia_deliveries WHERE step = 'watcher'")
            assert sorted(delivery_id for delivery_id, _ in delivered) == sorted(
                f"stream:{position}:watcher" for position in positions
            )
            for _, payload in delivered:
                assert orjson.loads(payload)["position"] in positions
        finally:
            await backend.aclose()


async def test_a_failing_listener_does_not_fail_the_committed_change(
    sqlite_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = SQLiteBackend(sqlite_path)
    try:

        def broken() -> None:
            raise RuntimeError("listener bug")

        backend.add_stream_listener(broken)
        change = await backend.stream_write("s", "g", "i", b"1", if_version=None, history=10)
        assert change is not None and change.seq == 1
        assert await backend.stream_get("s", "g", "i") is not None
        assert "a stream listener" in caplog.text and "listener bug" in caplog.text
    finally:
        await backend.aclose()
