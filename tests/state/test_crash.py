"""kill -9 at random moments during writes (SPEC 2 durability, 8): every acknowledged write survives and the
store opens cleanly. On SQLite (the file) and on PostgreSQL (the writer killed, the server keeps running)."""

from __future__ import annotations

import contextlib
import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from motia import StateManager

CHILD = Path(__file__).with_name("_child_crash_writer.py")
ROUNDS = 9  # async, sync and batch (group commit) writers; odd rounds with ?durability=full

pytestmark = pytest.mark.slow


def integrity_check(db: Path) -> list[tuple[str]]:
    with contextlib.closing(sqlite3.connect(db)) as con:
        return con.execute("PRAGMA integrity_check").fetchall()


class Store:
    """Where a crash test writes: ``url(round)`` for each writer, ``check()`` after each kill."""

    def __init__(self, url: Callable[[int], str], check: Callable[[], None]) -> None:
        self.url = url
        self.check = check


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        db = tmp_path / "crash.db"

        def check() -> None:
            assert integrity_check(db) == [("ok",)]

        # odd rounds with ?durability=full
        return Store(lambda rnd: f"sqlite:///{db}" + ("?durability=full" if rnd % 2 == 1 else ""), check)
    url = request.getfixturevalue("postgres_url")
    return Store(lambda rnd: url, lambda: None)


def start_writer(mode: str, url: str, prefix: str, seed: int, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), mode, url, prefix, str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def kill_and_drain(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGKILLs the child and returns what was still unread in its pipes.

    Reads through the same text streams used by readline (not communicate(), which would skip what they
    already buffered)."""
    assert proc.stdout is not None and proc.stderr is not None
    if proc.stdout.closed:
        return "", ""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    out = proc.stdout.read()
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    return out, err


BATCH = 16  # the "batch" child runs 16 iterations concurrently, then the next 16


class Round:
    """What one child acknowledged before it was killed."""

    def __init__(self, prefix: str, mode: str) -> None:
        self.prefix = prefix
        self.mode = mode
        self.keys: dict[str, dict[str, object]] = {}
        self.max_index = -1
        self.inc_acks = 0
        self.max_inc = 0

    def record(self, line: str) -> None:
        parts = line.split()
        if parts[0] == "set":
            key, i, size = parts[1], int(parts[2]), int(parts[3])
            assert key == f"{self.prefix}-{i:06d}"
            self.keys[key] = {"i": i, "pad": "x" * size}
            self.max_index = max(self.max_index, i)
        elif parts[0] == "inc":
            self.inc_acks += 1
            self.max_inc = max(self.max_inc, int(parts[1]))
        else:  # pragma: no cover - only on a broken child
            raise AssertionError(f"unexpected child line {line!r}")

    def may_have_landed_unacknowledged(self, i: int) -> bool:
        """Whether iteration i could have been in flight at the kill."""
        if self.mode == "batch":  # anything in the batch running at the kill (or the first one)
            return i < (self.max_index // BATCH + 2) * BATCH
        return i == self.max_index + 1  # sequential: only the next write


async def test_sigkill_at_random_moments_loses_no_acknowledged_write(store, child_env):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    expected: dict[str, dict[str, object]] = {}  # every key known to be stored, with its value
    counter = 0
    for rnd in range(ROUNDS):
        # Given a child writing keys, acknowledging each on stdout only after the write returned
        mode = ("async", "sync", "batch")[rnd % 3]
        url = store.url(rnd)
        ack = Round(f"r{rnd}", mode)
        where = f"seed={seed} round={rnd} mode={mode}"
        acks_before_kill = rng.randint(20, 300)
        proc = start_writer(mode, url, ack.prefix, rng.randrange(2**32), child_env)
        assert proc.stdout is not None
        try:
            line = proc.stdout.readline()
            if line != "ready\n":
                pytest.fail(f"{where}: child did not start: {line!r}\n{kill_and_drain(proc)[1]}")
            # When it is killed with SIGKILL after a random number of acknowledged writes
            for _ in range(acks_before_kill):
                line = proc.stdout.readline()
                if not line.endswith("\n"):
                    pytest.fail(f"{where}: child died early:\n{kill_and_drain(proc)[1]}")
                ack.record(line)
        finally:
            out, err = kill_and_drain(proc)
        assert proc.returncode == -signal.SIGKILL, f"{where}: child exited by itself: {err}"
        # (complete lines already in the pipe were acknowledged too; a partial last line was not)
        for line in out.splitlines(keepends=True):
            if line.endswith("\n"):
                ack.record(line)

        # Then the store reopens cleanly and every acknowledged write is there, with its value
        async with StateManager.from_url(store.url(0)) as sm:
            stored = {e.key: e.value for e in await sm.items("crash")}
            stored_counter = await sm.get("crash-counter", "n")
        expected.update(ack.keys)
        missing = [k for k in expected if k not in stored]
        assert not missing, f"{where}: acknowledged keys lost: {missing[:5]} ({len(missing)} of {len(expected)})"
        wrong = [k for k, v in expected.items() if stored[k] != v]
        assert not wrong, f"{where}: acknowledged keys with wrong values: {wrong[:5]}"
        # Only writes in flight at the kill may have landed unacknowledged, and they are whole, never torn
        for key in set(stored) - set(expected):
            prefix, i = key.rsplit("-", 1)[0], int(key.rsplit("-", 1)[1])
            assert prefix == ack.prefix and ack.may_have_landed_unacknowledged(i), f"{where}: unexpected key {key}"
            assert stored[key]["i"] == i
            assert set(stored[key]["pad"]) <= {"x"}
            expected[key] = stored[key]
        # The counter holds every acknowledged increment, plus at most the ones in flight
        assert stored_counter is not None
        landed_this_round = sum(1 for k in stored if k.startswith(ack.prefix + "-"))
        n = stored_counter["n"]
        assert n >= counter + ack.inc_acks, f"{where}: acknowledged increments lost ({n} < {counter}+{ack.inc_acks})"
        assert n >= ack.max_inc, f"{where}: counter {n} below an acknowledged value {ack.max_inc}"
        assert n <= counter + landed_this_round, f"{where}: more increments than iterations"
        counter = n
        store.check()
    assert len(expected) >= ROUNDS * 10


async def test_sigkill_right_after_open_leaves_a_clean_store(store, child_env):
    # Given a child that opened a fresh store and is about to write
    proc = start_writer("async", store.url(0), "p", 1, child_env)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == "ready\n"
    finally:
        # When it is killed at once
        out, _ = kill_and_drain(proc)
    acked = [line for line in out.splitlines(keepends=True) if line.startswith("set ") and line.endswith("\n")]
    # Then the store opens cleanly, holding exactly what was acknowledged (maybe plus one in-flight write)
    async with StateManager.from_url(store.url(0)) as sm:
        keys = await sm.keys("crash")
        await sm.set("after", "crash", 1)
        assert await sm.get("after", "crash") == 1
    assert len(acked) <= len(keys) <= len(acked) + 1
    store.check()
