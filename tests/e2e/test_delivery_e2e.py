"""Durable delivery across real ``motia run`` processes: kill -9 while a trigger handler runs, restart,
the handler's effect appears; two processes on one store share queue work without doubling it. On every
durable backend (a SQLite file, Redis, PostgreSQL); what the killed process left is read through the store."""

from __future__ import annotations

import itertools
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from motia import SyncStateManager
from tests.e2e.motia_proc import MotiaProcess, poll

pytestmark = pytest.mark.slow

STEPS = Path(__file__).resolve().parent / "steps_delivery"
#: Short leases so a killed process's work is reclaimed quickly after restart.
FAST_LEASE = {"MOTIA_DELIVERY_LEASE": "1", "MOTIA_DELIVERY_POLL_INTERVAL": "0.05"}

_stores = itertools.count()


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store the processes of one test share."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    if request.param == "redis":
        return f"{request.getfixturevalue('redis_server').url}?prefix=e2e-delivery-{next(_stores)}"
    return f"{request.getfixturevalue('postgres_server').url}?schema=e2e_delivery_{next(_stores)}"


def read(proc: MotiaProcess, scope: str, key: str) -> Any:
    return httpx.get(f"{proc.url}/state/{scope}/{key}", timeout=5).json()["value"]


def crash_and_recover(run_motia: Callable[..., MotiaProcess], db: str, trigger: Callable[[str], None], key: str):
    """Start a process whose handlers hang, trigger one, kill -9 it mid-handler, restart: return the effect."""
    # Given a process whose trigger handlers hang once started
    doomed = run_motia(STEPS, state=db, env={**FAST_LEASE, "MOTIA_TEST_HANG": "1"}, name="doomed").wait_ready()
    trigger(doomed.url)
    poll(lambda: read(doomed, "started", key), timeout=15, what="the handler to start")
    # When the process is killed while the handler runs, and another one starts on the same file
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait(timeout=10)
    assert effect_absent(db, key)
    survivor = run_motia(STEPS, state=db, env=FAST_LEASE, name="survivor").wait_ready()
    # Then the delivery is handled again, to completion
    effect = poll(lambda: read(survivor, "effects", key), timeout=20, what="the handler's effect after restart")
    assert read(survivor, "started", key)["attempt"] == 2
    assert survivor.stop() == 0
    return effect


def effect_absent(db: str, key: str) -> bool:
    """The killed handler never got to write its effect (read through the store, as another process would)."""
    with SyncStateManager.from_url(db) as state:
        return state.get("effects", key) is None


def test_state_trigger_survives_kill_9(run_motia, store: str) -> None:
    def write(url: str) -> None:
        assert httpx.post(f"{url}/items/i1", json={"v": 1}, timeout=5).status_code == 204

    effect = crash_and_recover(run_motia, store, write, "item-i1")
    assert effect == {"value": {"v": 1}, "attempt": 2}


def test_queued_message_survives_kill_9(run_motia, store: str) -> None:
    def send(url: str) -> None:
        assert httpx.post(f"{url}/jobs", json={"ids": ["j1"]}, timeout=5).status_code == 202

    effect = crash_and_recover(run_motia, store, send, "job-j1")
    assert effect["runs"] == 1


def test_two_processes_share_queue_work_without_doubling_it(run_motia, store: str) -> None:
    # Given two processes on one store, each running two jobs at a time, each job taking a while
    db = store
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
