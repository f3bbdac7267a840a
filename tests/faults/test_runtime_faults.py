"""Fault injection for the runtime (issue 11): real faults, no mocks of our own code.

- The app's SQLite store hits disk full (``PRAGMA max_page_count`` pinned to the file's size on every
  connection the store has open) while the app runs; the fault then clears (#4).
- Handlers raise ``BaseException`` subclasses that are not ``Exception``: ``KeyboardInterrupt``,
  ``SystemExit``, ``GeneratorExit``, from HTTP, queue, state-trigger and cron steps, ``async def`` and
  ``def`` alike.

Each asserts that the caller gets a clear answer, nothing acknowledged is lost, the app keeps serving and
delivering once the fault clears, and shutdown completes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import motia
from motia import StateManager, cron, http, queue, state, step
from motia.runtime import queue as runtime_queue
from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions
from motia.state.sync import stateManager
from tests.polling import eventually

#: Short leases and polls so retries and backoff fit in a test.
FAST = DeliveryOptions(lease=5.0, poll_interval=0.05)
#: A retry policy that dead-letters on the second failure, quickly.
ONE_RETRY = {"max_retries": 1, "backoff": 0.05, "backoff_max": 0.05}


def client_for(app: MotiaApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app.asgi), base_url="http://testserver")


async def ping(request, ctx):
    return {"status": 200, "body": {"ok": True}}


# -- disk full (#4) ---------------------------------------------------------------------------------


def set_disk_full(app: MotiaApp, full: bool) -> None:
    """Pin (or unpin) the size of the app's SQLite file on every connection its store has open: a write
    that needs a new page then fails with SQLITE_FULL, "database or disk is full", as on a full disk."""
    limit = 1 if full else 1_073_741_823  # SQLite never sets it below the current size: 1 pins the size
    backend: Any = app.state.backend  # the SQLite backend keeps every connection it opened
    for connection in list(backend._connections):
        connection.execute(f"PRAGMA max_page_count = {limit}")


async def test_disk_full_kills_no_background_loop_and_nothing_acknowledged_is_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    seen: list[str] = []

    async def on_order(input, ctx):
        seen.append(input.key)
        await ctx.state.set("handled", input.key, {"n": len(seen)})

    async def create(request, ctx):
        await ctx.state.set("orders", request.path_params["id"], request.body)
        return {"status": 201, "body": {"id": request.path_params["id"]}}

    steps = [
        step({"name": "on-order", "triggers": [state(scope="orders")]}, on_order),
        step({"name": "create", "triggers": [http("POST", "/orders/:id")]}, create),
        step({"name": "ping", "triggers": [http("GET", "/ping")]}, ping),
    ]
    app = MotiaApp(steps, state=url, cron=False, delivery=FAST)
    await app.startup()
    other = StateManager.from_url(url)  # another writer on the file (a script, another process's store)
    try:
        async with client_for(app) as client:
            # Given a running app that delivers state events
            assert (await client.post("/orders/a", json={"n": 1})).status_code == 201
            await app.drain()
            assert seen == ["a"]

            # When its store's disk is full
            set_disk_full(app, True)
            # Then a write that needs space fails with a clear error: a 500 for the request, not a hang
            failed = await client.post("/orders/lost", json={"blob": "x" * 200_000})
            assert failed.status_code == 500
            # And a write another connection commits meanwhile is acknowledged (its disk is not full); its
            # event is big, so moving it to a delivery needs pages the app's connections cannot have
            await other.set("orders", "c", {"n": 3, "blob": "c" * 300_000})
            # And the dispatcher meets the fault when it moves that write's event (it logs the failure, or,
            # as before issue 11 #4 was fixed, its task dies of it)
            assert app.delivery is not None
            dispatcher = app.delivery._dispatch_task
            assert dispatcher is not None
            await eventually(
                lambda: (
                    dispatcher.done()
                    or any("delivery: the state store failed" in r.getMessage() for r in caplog.records)
                ),
                timeout=10,
                what="the dispatcher meeting the full disk",
            )
            # And the app keeps serving HTTP
            assert (await client.get("/ping")).status_code == 200

            # When the fault clears
            set_disk_full(app, False)
            # Then later writes are delivered, and so is the one acknowledged during the fault
            assert (await client.post("/orders/d", json={"n": 4})).status_code == 201
            await app.drain(timeout=20)
            assert sorted(seen) == ["a", "c", "d"]
            assert await app.state.get("orders", "lost") is None  # never acknowledged, never stored
            assert await app.state.get("handled", "c") is not None
    finally:
        await other.aclose()
        # And shutdown completes: no error raised, globals unbound, the store closed
        await app.shutdown()
    assert runtime_queue._apps == []
    assert stateManager._target()[0] is not app.state
    with pytest.raises(motia.StateClosedError):
        await app.state.get("orders", "a")


# -- handlers raising BaseException ---------------------------------------------------------------

INTERRUPTS = [KeyboardInterrupt, SystemExit, GeneratorExit]


def raising_steps(exc_type: type[BaseException], ran: dict[str, int]) -> list[Any]:
    """Steps of every trigger kind, async and def, that raise ``exc_type`` each time they run."""

    def counted(name: str) -> None:
        ran[name] = ran.get(name, 0) + 1

    def make(name: str, is_async: bool) -> Callable[..., Any]:
        if is_async:

            async def handler(input, ctx):
                counted(name)
                raise exc_type("raised by the handler")

        else:

            def handler(input, ctx):  # type: ignore[misc]
                counted(name)
                raise exc_type("raised by the handler")

        return handler

    steps = [step({"name": "ping", "triggers": [http("GET", "/ping")]}, ping)]
    for kind in ("async", "def"):
        is_async = kind == "async"
        steps += [
            step({"name": f"http-{kind}", "triggers": [http("GET", f"/raise/{kind}")]}, make(f"http-{kind}", is_async)),
            step(
                {"name": f"queue-{kind}", "triggers": [queue(f"jobs-{kind}", config=ONE_RETRY)]},
                make(f"queue-{kind}", is_async),
            ),
            step(
                {"name": f"state-{kind}", "triggers": [state(scope=f"watched-{kind}", config=ONE_RETRY)]},
                make(f"state-{kind}", is_async),
            ),
            step({"name": f"cron-{kind}", "triggers": [cron("* * * * * *")]}, make(f"cron-{kind}", is_async)),
        ]

    async def fine(input, ctx):
        counted("fine")

    steps.append(step({"name": "fine", "triggers": [queue("fine")]}, fine))
    return steps


@pytest.mark.parametrize("exc_type", INTERRUPTS, ids=lambda t: t.__name__)
async def test_a_handler_raising_a_base_exception_fails_its_run_only(
    exc_type: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    ran: dict[str, int] = {}
    app = MotiaApp(raising_steps(exc_type, ran), state="memory://", cron=True, delivery=FAST)
    await app.startup()
    try:
        async with client_for(app) as client:
            # When HTTP handlers raise it: the request gets a 500 with a trace id, and the app keeps serving
            for kind in ("async", "def"):
                response = await client.get(f"/raise/{kind}")
                assert response.status_code == 500
                assert response.json()["trace_id"] == response.headers["x-trace-id"]
                assert (await client.get("/ping")).status_code == 200
            # When queue and state handlers raise it: each delivery is retried, then dead-lettered with the reason
            for kind in ("async", "def"):
                await motia.enqueue({"topic": f"jobs-{kind}", "data": {"n": 1}})
                await app.state.set(f"watched-{kind}", "k", {"n": 1})
            await app.drain(timeout=20)
            dead = {letter.step: letter for letter in await app.state.backend.dead_letters()}
            for name in ("queue-async", "queue-def", "state-async", "state-def"):
                assert ran[name] == 2, name  # the first attempt and its one retry
                assert dead[name].attempts == 2
                assert exc_type.__name__ in dead[name].error
            # And delivery goes on for everything else
            await motia.enqueue({"topic": "fine", "data": {}})
            await app.drain()
            assert ran["fine"] == 1
            # When cron handlers raise it: the schedule goes on, tick after tick
            await eventually(
                lambda: ran.get("cron-async", 0) >= 2 and ran.get("cron-def", 0) >= 2,
                timeout=10,
                what="two failed runs of each cron step",
            )
            assert (await client.get("/ping")).status_code == 200
    finally:
        # Then shutdown completes
        await app.shutdown()
    assert runtime_queue._apps == []
    # And every failure was logged with its traceback, naming the exception
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is not None]
    assert any(exc_type.__name__ in (r.exc_text or "") or (r.exc_info or (None,))[0] is exc_type for r in logged)
