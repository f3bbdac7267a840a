"""``crash_after_commit``: a handler's writes commit, its delivery is left leased as after kill -9, and it is
delivered again once the lease expires on the fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from motia import http, queue, step
from motia.runtime.delivery import DeliveryOptions
from motia.state.manager import StateManager
from motia.testing import FakeClock, app_client, crash_after_commit

OPTIONS = DeliveryOptions(lease=60.0, poll_interval=30.0, concurrency=4)


async def _pay(request, ctx):
    await ctx.enqueue({"topic": "payment", "data": {"order": request.body["order"], "amount": 5}})
    return {"status": 202, "body": {}}


async def _charge_naively(data, ctx):
    # not idempotent: a redelivery charges again
    await ctx.state.update("balances", data["order"], [{"type": "increment", "path": "charged", "by": data["amount"]}])


async def _charge_once(data, ctx):
    # idempotent: the charge and its marker commit together, keyed by the delivery
    async def charge(tx):
        if await tx.get("charges", ctx.trigger.delivery_id) is not None:
            return
        balance = await tx.get("balances", data["order"]) or {"charged": 0}
        await tx.set("balances", data["order"], {"charged": balance["charged"] + data["amount"]})
        await tx.set("charges", ctx.trigger.delivery_id, True)

    await ctx.state.transact(charge)


def _steps(handler):
    return [
        step({"name": "pay", "triggers": [http("POST", "/pay")], "enqueues": ["payment"]}, _pay),
        step({"name": "charge", "triggers": [queue("payment")]}, handler),
    ]


@pytest.fixture(params=["memory", "sqlite"])
async def manager_and_clock(request: pytest.FixtureRequest, tmp_path: Path):
    clock = FakeClock()
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'state.db'}"
    manager = StateManager.from_url(url, clock=clock)
    try:
        yield manager, clock
    finally:
        await manager.aclose()


@pytest.mark.parametrize(("handler", "charged"), [(_charge_naively, 10), (_charge_once, 5)])
async def test_a_crash_after_commit_redelivers_once_the_lease_expires(manager_and_clock, handler, charged):
    manager, clock = manager_and_clock
    async with app_client(_steps(handler), state=manager, clock=clock, delivery=OPTIONS) as client:
        app = client.app
        # Given the charge's process dies after its writes committed
        with crash_after_commit(app, step="charge") as crash:
            assert (await client.post("/pay", json={"order": "o1"})).status_code == 202
            await clock.advance(0)
        [crashed] = crash.crashed
        assert crashed.attempts == 1
        assert (await manager.get("balances", "o1")) == {"charged": 5}
        # Then the delivery is still owed (leased to the dead worker) until its lease ends
        assert await manager.backend.pending("charge") == 1
        await clock.advance(59)
        assert (await manager.get("balances", "o1")) == {"charged": 5}
        # When the lease expires, it is delivered again, and settled this time
        await clock.advance(1)
        assert await manager.backend.pending("charge") == 0
        assert (await manager.get("balances", "o1")) == {"charged": charged}


async def test_only_the_chosen_step_and_count_crash(manager_and_clock):
    manager, clock = manager_and_clock
    async with app_client(_steps(_charge_naively), state=manager, clock=clock, delivery=OPTIONS) as client:
        with crash_after_commit(client.app, step="charge", times=1) as crash:
            for order in ("o1", "o2"):
                await client.post("/pay", json={"order": order})
            await clock.advance(0)
        assert len(crash.crashed) == 1
        assert await manager.backend.pending("charge") == 1
        await clock.advance(60)
        assert await manager.backend.pending("charge") == 0


async def test_bad_arguments_are_refused_and_change_nothing(manager_and_clock):
    manager, clock = manager_and_clock
    async with app_client(_steps(_charge_naively), state=manager, clock=clock, delivery=OPTIONS) as client:
        worker = client.app.delivery
        assert worker is not None
        with pytest.raises(ValueError, match="no step"), crash_after_commit(client.app, step="nope"):
            pass
        with pytest.raises(ValueError, match="times"), crash_after_commit(client.app, times=0):
            pass
        assert worker.crash_after_commit is None
    async with app_client(_steps(_charge_naively), state=manager, clock=clock, delivery=False) as client:
        with pytest.raises(RuntimeError, match="delivery"), crash_after_commit(client.app):
            pass
