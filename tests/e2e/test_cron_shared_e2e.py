"""Several ``motia run`` instances sharing one store run each cron tick once (SPEC 3.1, 4)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from motia import SyncStateManager
from tests.e2e.motia_proc import MotiaProcess, poll

pytestmark = pytest.mark.slow

STEPS = Path(__file__).resolve().parent / "steps_cron"
#: Debug logs name every tick an instance lost to another one.
DEBUG = ["--log-level", "debug"]


def runs_per_tick(url: str) -> dict[datetime, dict[str, Any]]:
    """``{scheduled_at: {"runs": n, "pids": [...]}}``, read straight from the shared store."""
    with SyncStateManager.from_url(url) as sm:
        return {datetime.fromisoformat(entry.key): entry.value for entry in sm.items("ticks")}


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One SQLite file, or a fresh schema on the session's PostgreSQL cluster."""
    if request.param == "postgres":
        return f"{request.getfixturevalue('postgres_server').url}?schema=cron_{uuid.uuid4().hex[:12]}"
    return f"sqlite:///{tmp_path / 'state.db'}"


def test_two_instances_on_one_store_run_each_tick_once(run_motia: Callable[..., MotiaProcess], url: str) -> None:
    # Given two instances of one app, with a per-second cron, on one store (SQLite file, PostgreSQL), both serving
    a = run_motia(STEPS, state=url, extra=DEBUG, name="a")
    b = run_motia(STEPS, state=url, extra=DEBUG, name="b")
    a.wait_ready()
    b.wait_ready()
    both_up = datetime.now(UTC)

    # When five ticks have come since both were up
    def contested() -> list[datetime]:
        ticks = sorted(tick for tick in runs_per_tick(url) if tick > both_up)
        return ticks if len(ticks) >= 5 else []

    contested_ticks = poll(contested, timeout=30, interval=0.2, what="five cron ticks with both instances up")
    assert a.stop() == 0
    assert b.stop() == 0

    # Then no tick ran twice, before, during or after the window (each records the one process that ran it)
    runs = runs_per_tick(url)
    assert runs, "no tick ran"
    assert {tick: entry for tick, entry in runs.items() if entry["runs"] != 1} == {}
    # And each of the contested ticks (bar the newest, which may have been cut short by the stop) was
    # scheduled by the other instance too, which lost the claim: both really were running the cron
    instances = {a.proc.pid: a, b.proc.pid: b}
    for tick in contested_ticks[:-1]:
        [pid] = runs[tick]["pids"]
        [other] = [proc for p, proc in instances.items() if p != pid]
        assert f"tick {tick.isoformat()} was claimed by another instance" in other.logs(), tick
