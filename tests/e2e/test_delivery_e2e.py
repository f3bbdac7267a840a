"""Durable delivery across real ``motia run`` processes: kill -9 while a trigger handler runs, restart,
the handler's effect appears; two processes on one SQLite file share queue work without doubling it."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.motia_proc import MotiaProcess, poll

pytestmark = pytest.mark.slow

STEPS = Path(__file__).resolve().parent / "steps_delivery"
#: Short leases so a killed process's work is reclaimed quickly after restart.
FAST_LEASE = {"MOTIA_DELIVERY_LEASE": "1", "MOTIA_DELIVERY_POLL_INTERVAL": "0.05"}


def read(proc: MotiaProcess, scope: str, key: str) -> Any:
    return httpx.get(f"{proc.url}/state/{scope}/{key}", timeout=5).json()["value"]


def crash_and_recover(run_motia: Callable[..., MotiaProcess], tmp_path: Path, trigger: Callable[[str], None], key: str):
    """Start a process whose handlers hang, trigger one, kill -9 it mid-handler, restart: return the effect."""
    db = f"sqlite:///{tmp_path / 'state.db'}"
    # Given a process whose trigger handlers hang once started
    doomed = run_motia(STEPS, state=db, env={**FAST_LEASE, "MOTIA_TEST_HANG": "1"}, name="doomed").wait_ready()
    trigger(doomed.url)
    poll(lambda: read(doomed, "started", key), timeout=15, what="the handler to start")
    # When the process is killed while the handler runs, and another one starts on the same file
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait(timeout=10)
    assert read_started_effect_absent(tmp_path, key)
    survivor = run_motia(STEPS, state=db, env=FAST_LEASE, name="survivor").wait_ready()
    # Then the delivery is handled again, to completion
    effect = poll(lambda: read(survivor, "effects", key), timeout=20, what="the handler's effect after restart")
    assert read(survivor, "started", key)["attempt"] == 2
    assert survivor.stop() == 0
    return effect


def read_started_effect_absent(tmp_path: Path, key: str) -> bool:
    """The killed handler never got to write its effect (read straight from the file)."""
    import sqlite3

    with sqlite3.connect(tmp_path / "state.db") as connection:
        rows = connection.execute("SELECT 1 FROM motia_state WHERE scope = 'effects' AND key = ?", (key,)).fetchall()
    return rows == []


def test_state_trigger_survives_kill_9(run_motia, tmp_path: Path) -> None:
    def write(url: str) -> None:
        assert httpx.post(f"{url}/items/i1", json={"v": 1}, timeout=5).status_code == 204

    effect = crash_and_recover(run_motia, tmp_path, write, "item-i1")
    assert effect == {"value": {"v": 1}, "attempt": 2}


def test_queued_message_survives_kill_9(run_motia, tmp_path: Path) -> None:
    def send(url: str) -> None:
        assert httpx.post(f"{url}/jobs", json={"ids": ["j1"]}, timeout=5).status_code == 202

    effect = crash_and_recover(run_motia, tmp_path, send, "job-j1")
    assert effect["runs"] == 1


def test_two_processes_share_queue_work_without_doubling_it(run_motia, tmp_path: Path) -> None:
    # Given two processes on one SQLite file, each running two jobs at a time, each job taking a while
    db = f"sqlite:///{tmp_path / 'state.db'}"
    env = {"MOTIA_DELIVERY_CONCURRENCY": "2", "MOTIA_DELIVERY_POLL_INTERVAL": "0.05", "MOTIA_TEST_JOB_SECONDS": "0.05"}
    first = run_motia(STEPS, state=db, env=env, name="first")
    second = run_motia(STEPS, state=db, env=env, name="second")
    first.wait_ready()
    second.wait_ready()
    # When 40 jobs are enqueued through the first
    ids = [f"j{n}" for n in range(40)]
    assert httpx.post(f"{first.url}/jobs", json={"ids": ids}, timeout=10).status_code == 202

    def all_done() -> bool:
        return httpx.get(f"{first.url}/count/effects", timeout=5).json()["count"] == len(ids)

    poll(all_done, timeout=30, what="all 40 jobs to be handled")
    # Then each job ran once, and both processes took part
    effects = [read(first, "effects", f"job-{job_id}") for job_id in ids]
    assert [effect["runs"] for effect in effects] == [1] * len(ids)
    pids = {effect["pids"][0] for effect in effects}
    assert pids == {first.proc.pid, second.proc.pid}
    assert first.stop() == 0 and second.stop() == 0
