"""A pytest that is stopped leaves no private Redis or PostgreSQL server running: SIGTERM tears its fixtures
down as Ctrl-C does (``tests/conftest.py``), and after SIGKILL, which runs no teardown, the servers die with
their parent (``tests.server_process.spawn_tied``). Each case runs a real pytest holding the session's two
servers, stops it, and waits for the server processes to be gone."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypedDict

import pytest

from tests.conftest import require_postgres_server, require_redis_server
from tests.server_process import process_gone

ROOT = Path(__file__).resolve().parents[1]


class Held(TypedDict):
    """What the stopped pytest holds: the servers' processes and dirs."""

    redis: int
    postmaster: int
    backends: list[int]
    dirs: list[str]


#: The test the stopped pytest runs: it takes both session servers, says where they are, then waits to be
#: stopped (bounded: it ends on its own after a minute).
HOLD = """
import json, os, subprocess, time
from pathlib import Path


def test_hold(redis_server, postgres_server):
    postmaster = postgres_server.proc.pid
    backends = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
    held = {
        "redis": redis_server.proc.pid,
        "postmaster": postmaster,
        "backends": [int(pid) for pid in backends],
        "dirs": [str(redis_server.dir), str(postgres_server.dir)],
    }
    path = Path(os.environ["HELD_SERVERS"])
    path.with_suffix(".tmp").write_text(json.dumps(held))
    path.with_suffix(".tmp").rename(path)
    time.sleep(60)
"""


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Poll until none of ``pids`` runs or ``timeout`` passes; return those still running."""
    deadline = time.monotonic() + timeout
    while (left := [pid for pid in pids if not process_gone(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@contextlib.contextmanager
def held_servers(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Held]]:
    """A pytest holding both session servers, with what it holds; whatever the test's outcome, it and any
    server still running are killed afterwards and the servers' dirs removed."""
    (tmp_path / "test_hold.py").write_text(HOLD)
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    held_path = tmp_path / "held.json"
    env = {**os.environ, "HELD_SERVERS": str(held_path), "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
    command = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q", "-s"]
    command += ["-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), str(tmp_path / "test_hold.py")]
    log = (tmp_path / "pytest.log").open("wb")
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    held: Held | None = None
    try:
        deadline = time.monotonic() + 90
        while not held_path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the held pytest did not start its servers:\n{(tmp_path / 'pytest.log').read_text()}")
            time.sleep(0.05)
        held = json.loads(held_path.read_text())
        yield proc, held
    finally:
        proc.kill()
        proc.wait()
        log.close()
        if held is not None:
            for pid in server_pids(held):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for path in held["dirs"]:
                shutil.rmtree(path, ignore_errors=True)


def server_pids(held: Held) -> list[int]:
    """Every server process ``held`` names."""
    return [held["redis"], held["postmaster"], *held["backends"]]


@pytest.fixture(autouse=True)
def _servers_installed() -> None:
    require_redis_server()
    require_postgres_server()


def test_a_pytest_stopped_with_sigterm_tears_its_servers_down(tmp_path: Path) -> None:
    with held_servers(tmp_path) as (proc, held):
        # When the run is stopped with SIGTERM
        proc.send_signal(signal.SIGTERM)
        # Then it ends as after Ctrl-C (interrupted, exit status 2) once its fixtures' teardown stopped the servers
        # and removed their dirs (which only the teardown does: a server that merely died would leave its dir)
        assert proc.wait(timeout=60) == 2, (tmp_path / "pytest.log").read_text()
        assert "KeyboardInterrupt" in (tmp_path / "pytest.log").read_text()
        assert wait_gone(server_pids(held), timeout=10) == []
        assert [path for path in held["dirs"] if Path(path).exists()] == []


def test_a_pytest_killed_with_sigkill_takes_its_servers_with_it(tmp_path: Path) -> None:
    with held_servers(tmp_path) as (proc, held):
        assert held["backends"], "the postmaster's own processes (checkpointer, ...) are checked too"
        # When the run is killed, no teardown at all
        proc.kill()
        assert proc.wait(timeout=10) == -signal.SIGKILL
        # Then Redis, the postmaster and its processes end all the same
        assert wait_gone(server_pids(held), timeout=15) == []
