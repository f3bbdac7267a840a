"""Stream triggers are durable, at least once, across a real ``motia run`` killed with SIGKILL while a
stream-trigger handler runs: the restarted process handles the change again, to completion; changes made
in normal operation are handled once.

Run on each store whose backend implements the stream contract (skipped, saying so, on one that does not).
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from motia.state.manager import StateManager
from tests.e2e.motia_proc import MotiaProcess, poll

pytestmark = pytest.mark.slow

STEPS = Path(__file__).resolve().parent / "steps_stream_triggers"
#: Short leases so a killed process's work is reclaimed quickly after restart.
FAST_LEASE = {"MOTIA_DELIVERY_LEASE": "1", "MOTIA_DELIVERY_POLL_INTERVAL": "0.05"}

_prefixes = itertools.count()


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    elif request.param == "postgres":
        url = f"{request.getfixturevalue('postgres_server').url}?schema=e2e_st{next(_prefixes)}"
    else:
        server = request.getfixturevalue("redis_server")
        url = f"{server.url}?prefix=e2e-st{next(_prefixes)}"
    return url


def read(proc: MotiaProcess, scope: str, key: str) -> Any:
    return httpx.get(f"{proc.url}/state/{scope}/{key}", timeout=5).json()["value"]


def put(proc: MotiaProcess, group: str, item: str, body: dict[str, Any]) -> None:
    assert httpx.put(f"{proc.url}/todo/{group}/{item}", json=body, timeout=5).status_code == 204


def stored(url: str, scope: str, key: str) -> Any:
    """Read a key straight from the store, with no app running."""

    async def get() -> Any:
        async with StateManager.from_url(url) as manager:
            return await manager.get(scope, key)

    return asyncio.run(get())


def test_a_stream_change_is_handled_again_after_kill_9(run_motia: Callable[..., MotiaProcess], store_url: str) -> None:
    # Given a process whose stream-trigger handler hangs once started
    doomed = run_motia(STEPS, state=store_url, env={**FAST_LEASE, "MOTIA_TEST_HANG": "1"}, name="doomed")
    doomed.wait_ready()
    put(doomed, "inbox", "t1", {"title": "milk"})
    poll(lambda: read(doomed, "started", "inbox-t1-1"), timeout=15, what="the handler to start")
    # When the process is killed with SIGKILL while the handler runs
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait(timeout=10)
    assert stored(store_url, "effects", "inbox-t1-1") is None  # the killed handler never finished
    # And another process starts on the same store
    survivor = run_motia(STEPS, state=store_url, env=FAST_LEASE, name="survivor").wait_ready()
    # Then the change is handled again, to completion, with its input
    effect = poll(lambda: read(survivor, "effects", "inbox-t1-1"), timeout=20, what="the change handled after restart")
    assert effect == {"runs": 1, "event_type": "create", "data": {"title": "milk", "id": "t1"}, "attempt": 2}
    assert read(survivor, "started", "inbox-t1-1")["attempt"] == 2
    # And changes made in normal operation are handled once each, on their first attempt
    put(survivor, "inbox", "t1", {"title": "oat milk"})
    put(survivor, "inbox", "t2", {"title": "bread"})
    second = poll(lambda: read(survivor, "effects", "inbox-t1-2"), timeout=20, what="the update handled")
    third = poll(lambda: read(survivor, "effects", "inbox-t2-3"), timeout=20, what="the second create handled")
    assert second == {"runs": 1, "event_type": "update", "data": {"title": "oat milk", "id": "t1"}, "attempt": 1}
    assert third == {"runs": 1, "event_type": "create", "data": {"title": "bread", "id": "t2"}, "attempt": 1}
    assert survivor.stop() == 0
    # And, the process stopped, nothing ran twice meanwhile
    assert stored(store_url, "effects", "inbox-t1-1")["runs"] == 1
