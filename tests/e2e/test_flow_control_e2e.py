"""Keyed flow control across two ``motia run`` instances on one store (issue 18): a concurrency limit of 1
per key never runs two handlers of one key at once, in either instance, while different keys run side by
side and each key's messages keep their order; a rate limit of 3 per second holds across both instances,
the messages over it waiting (not failing: the step has no retry, so a counted attempt would be a dead letter).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from motia import SyncStateManager
from tests.e2e.motia_proc import MotiaProcess, poll
from tests.e2e.test_redis_scale_out import records, two_instances, unsettled
from tests.runtime.delivery_helpers import assert_throttled

pytestmark = pytest.mark.slow

STEPS = Path(__file__).resolve().parent / "steps_flow_control"
#: Quick polls, and 2 handlers at once per instance: neither instance can take every key's head alone (a
#: commit wakes its own instance at once, others only at their next poll), so both take part.
FAST = {"MOTIA_DELIVERY_POLL_INTERVAL": "0.02", "MOTIA_DELIVERY_CONCURRENCY": "2"}
KEYS = ["k0", "k1", "k2", "k3"]
PERIOD, LIMIT, THROTTLED = 1.0, 3, 12


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    if request.param == "postgres":
        return f"{request.getfixturevalue('postgres_server').url}?schema=flow_{uuid.uuid4().hex[:12]}"
    return f"{request.getfixturevalue('redis_server').url}?prefix=flow-e2e-{uuid.uuid4().hex[:12]}"


def test_keyed_concurrency_and_rate_limits_hold_across_two_instances(
    run_motia: Callable[..., MotiaProcess], store_url: str
) -> None:
    # Given two instances on one store
    a, b = two_instances(run_motia, STEPS, store_url, env=FAST)
    with SyncStateManager.from_url(store_url) as store:
        # When 4 keys x 15 messages go to the keyed step, half through each instance
        for proc, numbers in ((a, list(range(8))), (b, list(range(8, 15)))):
            body = {"topic": "per-key", "keys": KEYS, "numbers": numbers}
            assert httpx.post(f"{proc.url}/flow", json=body, timeout=30).status_code == 202
        # and 12 messages to the throttled step, half through each
        sent_at = time.time()
        for proc, numbers in ((a, list(range(6))), (b, list(range(6, 12)))):
            body = {"topic": "throttled", "keys": ["t"], "numbers": numbers}
            assert httpx.post(f"{proc.url}/flow", json=body, timeout=30).status_code == 202

        def done() -> bool:
            order = records(store, "flow-order")
            starts = store.get("flow-rate", "starts") or {"times": []}
            keyed = sum(len(entry["numbers"]) for entry in order.values())
            return keyed >= len(KEYS) * 15 and len(starts["times"]) >= THROTTLED

        poll(done, timeout=60, interval=0.2, what="every message to be handled")
        poll(lambda: unsettled(store_url) == 0, timeout=10, what="every delivery to be settled")
        assert a.stop() == 0 and b.stop() == 0

        # Then no key ever had two handlers at once, each key's messages ran in order, keys ran side by
        # side, and both instances took part
        assert records(store, "flow-overlaps") == {}
        order = records(store, "flow-order")
        assert {key: entry["numbers"] for key, entry in order.items()} == {key: list(range(15)) for key in KEYS}
        assert max(n for entry in order.values() for n in entry["running"]) > 1
        assert {pid for entry in order.values() for pid in entry["pids"]} == {a.proc.pid, b.proc.pid}

        # And the throttled step started at most 3 per window in both instances together, each message on
        # its first attempt, and both instances started some
        starts = store.get("flow-rate", "starts")
        assert len(starts["times"]) == THROTTLED and set(starts["attempts"]) == {1}
        assert_throttled(starts["times"], sent_at=sent_at, period=PERIOD, limit=LIMIT)
        assert set(starts["pids"]) == {a.proc.pid, b.proc.pid}
