"""kill -9 at random moments during writes (SPEC 2 durability, 8): every acknowledged write survives and the
store opens cleanly."""

from __future__ import annotations

import contextlib
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from motia import StateManager

CHILD = Path(__file__).with_name("_child_crash_writer.py")
ROUNDS = 6

pytestmark = pytest.mark.slow


def integrity_check(db: Path) -> list[tuple[str]]:
    with contextlib.closing(sqlite3.connect(db)) as con:
        return con.execute("PRAGMA integrity_check").fetchall()


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


class Ledger:
    """What the children acknowledged: keys with their expected values, and the last counter value."""

    def __init__(self) -> None:
        self.keys: dict[str, dict[str, object]] = {}
        self.counter = 0
        self.last_index: dict[str, int] = {}  # per round prefix: index of the last acknowledged set

    def record(self, line: str, prefix: str) -> None:
        parts = line.split()
        if parts[0] == "set":
            key, i, size = parts[1], int(parts[2]), int(parts[3])
            self.keys[key] = {"i": i, "pad": "x" * size}
            self.last_index[prefix] = i
        elif parts[0] == "inc":
            self.counter = int(parts[1])
        else:  # pragma: no cover - only on a broken child
            raise AssertionError(f"unexpected child line {line!r}")


async def test_sigkill_at_random_moments_loses_no_acknowledged_write(tmp_path, child_env):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    db = tmp_path / "crash.db"
    ledger = Ledger()
    for rnd in range(ROUNDS):
        # Given a child writing keys, acknowledging each on stdout only after the write returned
        mode = "async" if rnd % 2 == 0 else "sync"
        url = f"sqlite:///{db}" + ("?durability=full" if rnd % 3 == 2 else "")
        prefix = f"r{rnd}"
        acks_before_kill = rng.randint(20, 300)
        proc = start_writer(mode, url, prefix, rng.randrange(2**32), child_env)
        try:
            line = proc.stdout.readline()
            if line != "ready\n":
                pytest.fail(f"seed={seed} round={rnd}: child did not start: {line!r}\n{kill_and_drain(proc)[1]}")
            # When it is killed with SIGKILL after a random number of acknowledged writes
            for _ in range(acks_before_kill):
                line = proc.stdout.readline()
                if not line.endswith("\n"):
                    pytest.fail(f"seed={seed} round={rnd}: child died early:\n{kill_and_drain(proc)[1]}")
                ledger.record(line, prefix)
        finally:
            out, err = kill_and_drain(proc)
        assert proc.returncode == -signal.SIGKILL, f"seed={seed} round={rnd}: child exited by itself: {err}"
        # (complete lines already in the pipe were acknowledged too; a partial last line was not)
        for line in out.splitlines(keepends=True):
            if line.endswith("\n"):
                ledger.record(line, prefix)

        # Then the store reopens cleanly and every acknowledged write is there
        async with StateManager.from_url(f"sqlite:///{db}") as sm:
            stored = {e.key: e.value for e in await sm.items("crash")}
            counter = await sm.get("crash-counter", "n")
        missing = [k for k in ledger.keys if k not in stored]
        assert not missing, f"seed={seed} round={rnd}: acknowledged keys lost: {missing[:5]} ({len(missing)})"
        wrong = [k for k, v in ledger.keys.items() if stored[k] != v]
        assert not wrong, f"seed={seed} round={rnd}: acknowledged keys with wrong values: {wrong[:5]}"
        # Only the single in-flight write of each round may have landed unacknowledged
        extra = set(stored) - set(ledger.keys)
        allowed = {f"{p}-{i + 1:06d}" for p, i in ledger.last_index.items()} | {f"{prefix}-000000"}
        assert extra <= allowed, f"seed={seed} round={rnd}: unexpected keys {sorted(extra - allowed)[:5]}"
        for key in extra:  # an unacknowledged write that landed is complete, never torn
            i = int(key.rsplit("-", 1)[1])
            assert stored[key]["i"] == i
            assert set(stored[key]["pad"]) <= {"x"}
            ledger.keys[key] = stored[key]
            ledger.last_index[key.rsplit("-", 1)[0]] = i
        # The counter holds every acknowledged increment, plus at most the one in flight
        assert counter is not None
        assert ledger.counter <= counter["n"] <= ledger.counter + 1, f"seed={seed} round={rnd}"
        ledger.counter = counter["n"]
        assert integrity_check(db) == [("ok",)], f"seed={seed} round={rnd}"
    assert len(ledger.keys) >= ROUNDS * 10


async def test_sigkill_right_after_open_leaves_a_clean_store(tmp_path, child_env):
    # Given a child that opened a fresh store and is about to write
    db = tmp_path / "fresh.db"
    proc = start_writer("async", f"sqlite:///{db}", "p", 1, child_env)
    try:
        assert proc.stdout.readline() == "ready\n"
    finally:
        # When it is killed at once
        out, _ = kill_and_drain(proc)
    acked = [line for line in out.splitlines(keepends=True) if line.startswith("set ") and line.endswith("\n")]
    # Then the store opens cleanly, holding exactly what was acknowledged (maybe plus one in-flight write)
    async with StateManager.from_url(f"sqlite:///{db}") as sm:
        keys = await sm.keys("crash")
        await sm.set("after", "crash", 1)
        assert await sm.get("after", "crash") == 1
    assert len(acked) <= len(keys) <= len(acked) + 1
    assert integrity_check(db) == [("ok",)]
