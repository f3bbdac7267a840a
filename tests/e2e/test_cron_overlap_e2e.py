"""Two ``motia run`` instances on one store never run a cron job twice at once (issue 11, #8): a per-second
job whose runs take 2.5 s runs one run at a time across both, on SQLite and on Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from motia import SyncStateManager
from tests.e2e.motia_proc import MotiaProcess, poll

pytestmark = pytest.mark.slow

STEPS = Path(__file__).resolve().parent / "steps_cron_slow"


def recorded_runs(url: str) -> list[dict[str, Any]]:
    with SyncStateManager.from_url(url) as sm:
        return [entry.value for entry in sm.items("runs")]


def check_one_run_at_a_time(url: str, run_motia: Callable[..., MotiaProcess]) -> None:
    # Given two instances of one app on one store, with a per-second job whose runs take 2.5 s
    a = run_motia(STEPS, state=url, name="a")
    b = run_motia(STEPS, state=url, name="b")
    a.wait_ready()
    b.wait_ready()

    # When three runs have finished
    poll(
        lambda: sum("end" in run for run in recorded_runs(url)) >= 3,
        timeout=40,
        interval=0.2,
        what="three finished runs",
    )
    assert a.stop() == 0
    assert b.stop() == 0

    # Then no run started before the previous one ended, whichever instance ran them (a run cut short by
    # the stop has no end: it counts as still going)
    runs = sorted(recorded_runs(url), key=lambda run: run["start"])
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert "end" in earlier and later["start"] >= earlier["end"], f"two runs at once: {runs}"
    # And both instances took part: ticks were skipped because the job was running on the other one
    logs = a.logs() + b.logs()
    assert "still going on another instance" in logs, logs


def test_two_instances_on_one_sqlite_file_never_run_the_job_twice_at_once(
    run_motia: Callable[..., MotiaProcess], tmp_path: Path
) -> None:
    check_one_run_at_a_time(f"sqlite:///{tmp_path / 'state.db'}", run_motia)


def test_two_instances_on_one_redis_never_run_the_job_twice_at_once(
    run_motia: Callable[..., MotiaProcess], redis_server: Any
) -> None:
    check_one_run_at_a_time(f"{redis_server.url}?prefix=overlap-{uuid.uuid4().hex[:12]}", run_motia)
