"""Queue config across ``motia run`` instances on one Redis (issue 14, SPEC 12): a ``type: "fifo"`` topic's
messages are handled in order per ``messageGroupId``, one at a time per group, each once, with both
instances taking part; a step's ``visibilityTimeout`` is its lease, so a killed instance's message comes
back after it, not after the worker's default lease."""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from motia import SyncStateManager
from tests.e2e.motia_proc import MotiaProcess, poll
from tests.e2e.test_redis_scale_out import records, stays_false, two_instances, unsettled

pytestmark = pytest.mark.slow

STEPS = Path(__file__).resolve().parent / "steps_queue_config"
#: Quick polls, so the instance that did not settle a message still competes for the next of its group.
FAST = {"MOTIA_DELIVERY_POLL_INTERVAL": "0.01"}
GROUPS = ["g0", "g1", "g2"]


def test_fifo_groups_are_handled_in_order_once_across_two_instances(
    run_motia: Callable[..., MotiaProcess], redis_server: Any
) -> None:
    # Given two instances on one Redis store, with a FIFO step appending each message's number to its group
    url = f"{redis_server.url}?prefix=fifo-{uuid.uuid4().hex[:12]}"
    a, b = two_instances(run_motia, STEPS, url, env=FAST)

    # When 3 groups x 50 messages are enqueued, numbers 0-24 through A and 25-49 through B (after A's)
    assert (
        httpx.post(f"{a.url}/jobs", json={"groups": GROUPS, "numbers": list(range(25))}, timeout=30).status_code == 202
    )
    assert (
        httpx.post(f"{b.url}/jobs", json={"groups": GROUPS, "numbers": list(range(25, 50))}, timeout=30).status_code
        == 202
    )
    with SyncStateManager.from_url(url) as store:

        def all_handled() -> bool:
            return all(len((store.get("fifo", group) or {"numbers": []})["numbers"]) >= 50 for group in GROUPS)

        poll(all_handled, timeout=60, interval=0.2, what="every message of every group to be handled")
        poll(lambda: unsettled(url) == 0, timeout=10, what="every delivery to be settled")
        assert a.stop() == 0 and b.stop() == 0

        # Then each group's list is exactly 0..49: every message once, in order, and no run saw a gap
        results = {group: store.get("fifo", group) for group in GROUPS}
        assert {group: result["numbers"] for group, result in results.items()} == {
            group: list(range(50)) for group in GROUPS
        }
        assert [entry.key for entry in store.items("fifo-gaps")] == []
    # And both instances handled some of them
    by_pid = Counter(pid for result in results.values() for pid in result["pids"])
    assert set(by_pid) == {a.proc.pid, b.proc.pid}, by_pid


def test_a_killed_instances_message_comes_back_after_the_steps_visibility_timeout(
    run_motia: Callable[..., MotiaProcess], redis_server: Any
) -> None:
    # Given an instance (worker lease: the default 30 s) whose handler of a step with visibilityTimeout=1 hangs
    url = f"{redis_server.url}?prefix=vis-{uuid.uuid4().hex[:12]}"
    doomed = run_motia(STEPS, state=url, env={"MOTIA_TEST_HANG": "1", **FAST}, name="doomed").wait_ready()
    ids = ["m0", "m1", "m2"]
    assert httpx.post(f"{doomed.url}/held", json={"ids": ids}, timeout=10).status_code == 202
    with SyncStateManager.from_url(url) as store:
        poll(lambda: store.count("held-started") == len(ids), timeout=10, what="the doomed handlers to start")
        # And a second instance, which leaves the work alone while the doomed one renews its 1 s leases
        survivor = run_motia(STEPS, state=url, env=FAST, name="survivor").wait_ready()
        assert stays_false(lambda: store.count("held-handled"), seconds=2.0), (
            "the survivor took work whose lease the doomed instance was still renewing"
        )
        # When the doomed instance is killed with SIGKILL mid-handler
        killed_at = time.monotonic()
        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait(timeout=10)
        # Then the survivor handles every message within seconds (the 1 s lease), not after 30 s
        poll(lambda: store.count("held-handled") == len(ids), timeout=15, what="the survivor to take the messages")
        assert time.monotonic() - killed_at < 15
        assert survivor.stop() == 0
        handled = records(store, "held-handled")
    assert handled == {id_: {"pids": [survivor.proc.pid], "attempts": [2]} for id_ in ids}
