"""``motia run --workers N`` as real processes on real sockets (SPEC 4): the workers serve one port,
share the store, run each cron tick once, and stop together, gracefully, on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from motia import SyncStateManager
from motia.cli import main
from tests.e2e.motia_proc import MotiaProcess, poll
from tests.server_process import process_gone

pytestmark = pytest.mark.slow

STEPS = Path(__file__).resolve().parent / "steps_workers"


def worker_pids(proc: MotiaProcess) -> list[int]:
    """The worker pids the supervisor logged once it started them."""

    def logged() -> list[int]:
        m = re.search(r"with \d+ workers \(pids ([\d, ]+)\)", proc.logs())
        return [int(p) for p in m.group(1).split(", ")] if m else []

    return poll(logged, timeout=30, what="the supervisor's list of workers")


def answering_pid(url: str, path: str = "/pid") -> int:
    """The pid of the worker answering one request on a new connection."""
    r = httpx.get(url + path, timeout=10)
    assert r.status_code == 200, r.text
    return int(r.json()["pid"])


@pytest.fixture
def two_workers(run_motia: Callable[..., MotiaProcess], tmp_path: Path) -> tuple[MotiaProcess, str]:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    proc = run_motia(STEPS, state=url, extra=["--workers", "2", "--log-level", "debug"])
    return proc.wait_ready(), url


def test_two_workers_serve_one_port_and_share_state(two_workers):
    proc, _ = two_workers
    pids = set(worker_pids(proc))
    assert len(pids) == 2 and proc.proc.pid not in pids

    # Both workers answer on the one port (the kernel gives each new connection to one of them)
    seen: set[int] = set()

    def both_answered() -> bool:
        seen.add(answering_pid(proc.url))
        return seen == pids

    poll(both_answered, timeout=30, interval=0.01, what="answers from both workers")

    # A value written through one worker is read through the other
    put = httpx.put(f"{proc.url}/shared/k", json={"n": 1}, timeout=10)
    writer = put.json()["pid"]

    def read_by_the_other() -> Any:
        r = httpx.get(f"{proc.url}/shared/k", timeout=10)
        return r.json() if r.json()["pid"] != writer else None

    read = poll(read_by_the_other, timeout=30, interval=0.01, what="a read through the other worker")
    assert read["stored"] == {"value": {"n": 1}, "pid": writer}
    assert proc.stop() == 0, proc.logs()


def test_each_cron_tick_runs_once_across_workers(two_workers):
    proc, url = two_workers
    worker_pids(proc)
    up = datetime.now(UTC)

    def ticks() -> dict[datetime, Any]:
        with SyncStateManager.from_url(url) as sm:
            return {datetime.fromisoformat(e.key): e.value for e in sm.items("ticks")}

    def lost(tick: datetime, logs: str) -> bool:
        return f"tick {tick.isoformat()} was claimed by another instance" in logs

    def five_ticks_some_contested() -> list[datetime]:
        # Both workers schedule every tick, but a worker the machine keeps waiting past a tick skips it
        # (missed ticks are never replayed): wait for ticks that both demonstrably contested.
        contested = sorted(t for t in ticks() if t > up)
        logs = proc.logs()
        return contested if len(contested) >= 5 and sum(lost(t, logs) for t in contested) >= 2 else []

    contested = poll(five_ticks_some_contested, timeout=60, interval=0.2, what="five cron ticks, two contested")
    assert proc.stop() == 0, proc.logs()

    runs = ticks()
    assert {tick: entry for tick, entry in runs.items() if entry["runs"] != 1} == {}
    # A tick both workers tried ran once: the loser logged losing its claim, and the winner ran it.
    logs = proc.logs()
    for tick in (t for t in contested if lost(t, logs)):
        assert runs[tick]["runs"] == 1, tick


def test_sigterm_lets_in_flight_requests_finish_stops_every_worker_and_exits_0(two_workers):
    proc, url = two_workers
    pids = worker_pids(proc)
    with ThreadPoolExecutor(1) as pool:
        # Given a request in flight in one worker
        pending = pool.submit(httpx.get, f"{proc.url}/slow", timeout=30)

        def started() -> bool:
            with SyncStateManager.from_url(url) as sm:
                return sm.get("slow", "started") is not None

        poll(started, timeout=30, what="the slow request to start")
        # When the supervisor gets SIGTERM
        code = proc.stop(signal.SIGTERM)
        # Then the request was answered, every worker exited, and the supervisor exits 0
        assert pending.result().json()["done"] is True
    assert code == 0, proc.logs()
    assert all(process_gone(pid) for pid in pids)
    assert "all 2 workers stopped" in proc.logs()


def test_sigterm_while_the_workers_start_still_exits_0(run_motia: Callable[..., MotiaProcess], tmp_path: Path):
    proc = run_motia(STEPS, state=f"sqlite:///{tmp_path / 'state.db'}", extra=["--workers", "2"])
    pids = worker_pids(proc)  # started, perhaps still importing: not waiting for them to serve
    assert proc.stop(signal.SIGTERM) == 0, proc.logs()
    assert all(process_gone(pid) for pid in pids)


def test_a_worker_that_dies_stops_the_others_and_the_supervisor_exits_1(two_workers):
    proc, _ = two_workers
    first, second = worker_pids(proc)
    os.kill(first, signal.SIGKILL)
    assert proc.proc.wait(timeout=60) == 1
    assert process_gone(second)
    assert f"worker {first} exited with status -9" in proc.logs()


def test_workers_stop_when_their_supervisor_is_killed(two_workers):
    proc, _ = two_workers
    pids = worker_pids(proc)
    proc.kill()  # SIGKILL: the supervisor cannot pass anything on
    poll(lambda: all(process_gone(pid) for pid in pids), timeout=60, what="the orphaned workers to stop")


def test_workers_cannot_share_a_memory_store():
    result = CliRunner().invoke(main, ["run", "--workers", "2", "--state", "memory://"])
    assert result.exit_code == 1
    assert "--workers 2 needs a store the processes can share" in result.output
