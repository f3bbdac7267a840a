"""A key's deliveries start in order when several of them may run at once (a keyed concurrency limit above 1),
even when a later claim of the key is made while an earlier claim's runs are still being started.

A claim's runs take turns in one task, and the runs after one that pauses go on in a new task
(:mod:`motia.runtime.handler_tasks`): a task made after those of any claim started meanwhile. Session 29 saw a
key's later delivery start first that way (``test_flow_control``'s keyed-limit-3 case, in ~60 % of runs); the
worker now gives each delivery of such a step a task of its own (``ClaimPlan.several_per_key``,
``start_runs(shared=False)``). Here the interleaving that broke it is forced, not hoped for: an earlier claim
holds a chain of runs that pause, and the key's slot that lets the later claim in is freed by the first of them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from motia import queue, step
from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions
from tests.polling import eventually

#: Room for the whole chain in one claim; a long poll, so that only wake-ups (not a timer) make claims.
ROOMY = DeliveryOptions(lease=30.0, poll_interval=30.0, concurrency=64)
#: Runs that pause ahead of the key's second delivery in its claim: each hands the rest of the claim to a new
#: task, one loop iteration later, so the claim's last run starts ``FILLERS`` iterations after the claim was
#: made. That is far more than the handful the first filler's release of the key's slot takes to become a claim
#: (the first delivery returns, its completion is written, the claim loop wakes and claims): with a shared task
#: again, 4 fillers are enough for the test to fail on both stores, 2 are not.
FILLERS = 40


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_a_later_claim_of_a_key_never_starts_before_an_earlier_claims_run_of_it(
    store: str, tmp_path: Path
) -> None:
    # Given a step that runs up to 2 deliveries of a user at once, whose first delivery of user "k" waits until
    # a filler (another user) starts, and whose fillers wait until the end
    started: list[tuple[str, int]] = []
    k0_gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    release = asyncio.Event()

    async def handle(input: Any, ctx: Any) -> None:
        user, n = input["user"], input["n"]
        started.append((user, n))
        if user == "k" and n == 0:
            await k0_gate
        elif user != "k":
            if not k0_gate.done():
                k0_gate.set_result(None)  # k:0 returns, which lets a new claim take k:2
            await release.wait()

    config = {"concurrency": {"key": "user", "limit": 2}}
    url = "memory://" if store == "memory" else f"sqlite:///{tmp_path / 'state.db'}"
    app = MotiaApp(
        [step({"name": "per-user", "triggers": [queue("jobs", config=config)]}, handle)],
        state=url,
        cron=False,
        delivery=ROOMY,
        shutdown_timeout=2.0,
    )
    await app.startup()
    try:
        await app.queues.send(
            {"topic": "jobs", "data": {"user": "k", "n": 0}}, sender=None, message_id="k0", trace_id=None
        )
        await eventually(lambda: started == [("k", 0)], what="k:0 started")
        # When the fillers and k:1, k:2 are stored in one call, so that one claim takes the fillers and k:1 (k:2
        # must wait for k:0: the key's 2 slots are k:0's and k:1's) and a later claim takes k:2 once k:0 returned
        messages = [{"user": f"f{i}", "n": 0} for i in range(FILLERS)] + [{"user": "k", "n": n} for n in (1, 2)]
        deliveries = []
        for i, data in enumerate(messages):
            _, prepared = app.queues.prepare(
                {"topic": "jobs", "data": data}, sender=None, message_id=f"m{i}", trace_id=None, traceparent=None
            )
            deliveries += prepared
        await app.state.backend.enqueue(deliveries)
        await eventually(lambda: {("k", 1), ("k", 2)} <= set(started), what="k:1 and k:2 started", timeout=10)
        # Then k's deliveries started in order: k:2's claim did not overtake the run of k:1 still to start
        assert [n for user, n in started if user == "k"] == [0, 1, 2]
        release.set()
        await app.drain(timeout=10)
    finally:
        release.set()
        await app.shutdown()
    assert sorted(started) == sorted([("k", 0), ("k", 1), ("k", 2)] + [(f"f{i}", 0) for i in range(FILLERS)])
