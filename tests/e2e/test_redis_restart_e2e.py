"""Redis restarted under load: a ``motia run`` app on a Redis store rides out a crash of the server.

A private Redis with ``--appendonly yes --appendfsync always`` is killed with SIGKILL while eight HTTP
clients keep writing through the app, then started again on the same port (it reloads its append-only
file). The backend retries every call until its ``timeout`` (SPEC: a retried write is never applied twice),
so requests caught by the outage wait and then succeed, or fail cleanly. Afterwards every write the app
acknowledged must still be there, exactly once, read through the app and straight from Redis.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from motia import StateManager
from tests.e2e.motia_proc import MotiaProcess

pytestmark = pytest.mark.slow

APP_STEPS = Path(__file__).resolve().parent / "steps_scale_out" / "app"
#: The scope the PUT clients write (one distinct key per request) and the shared counters the POSTs increment.
SCOPE = "restart"
COUNTERS = ("c0", "c1", "c2")
CLIENTS = 8
#: Acknowledged requests before Redis is killed, and acknowledged requests sent after it is back.
BEFORE_KILL = 200
AFTER_RESTART = 200
#: The backend's retry budget (state URL ``timeout``); clients wait longer than that for an answer.
BACKEND_TIMEOUT = 15
CLIENT_TIMEOUT = 30.0
#: Deadlines for the observable conditions the test waits for.
PHASE_DEADLINE = 20.0
RETRY_WARNING = "retrying for up to"


@dataclass
class Outcome:
    kind: str  # "put" or "inc"
    target: str  # the PUT key or the counter
    value: Any  # the PUT body (None for increments)
    after_restart: bool  # sent after Redis answered again
    ok: bool  # acknowledged (2xx)
    detail: str  # status and body, or the transport error
    version: int | None = None  # the version a PUT reported


class Load:
    """Eight clients writing through the app until told to stop; every outcome is recorded."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.outcomes: list[Outcome] = []
        self.changed = asyncio.Condition()
        self.stopping = asyncio.Event()
        self.restarted = False

    def acked(self, *, after_restart: bool = False) -> int:
        return sum(1 for o in self.outcomes if o.ok and (o.after_restart or not after_restart))

    def summary(self) -> str:
        tally = Counter(
            (o.kind, "ok" if o.ok else "failed", "after" if o.after_restart else "before") for o in self.outcomes
        )
        failures = [f"{o.kind} {o.target}: {o.detail}" for o in self.outcomes if not o.ok][:5]
        return f"outcomes {dict(tally)}; first failures {failures}"

    async def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(predicate), PHASE_DEADLINE)
            except TimeoutError:
                pytest.fail(f"{what} not reached within {PHASE_DEADLINE}s; {self.summary()}")

    async def _send(self, kind: str, target: str, value: Any) -> None:
        after_restart = self.restarted
        try:
            if kind == "put":
                response = await self.client.put(f"/kv/{SCOPE}/{target}", json=value)
            else:
                response = await self.client.post(f"/counters/{target}")
        except httpx.TransportError as exc:
            outcome = Outcome(kind, target, value, after_restart, False, f"{type(exc).__name__}: {exc}")
        else:
            outcome = Outcome(
                kind, target, value, after_restart, response.is_success, f"{response.status_code} {response.text[:200]}"
            )
            if kind == "put" and response.is_success:
                outcome.version = response.json()["version"]
        async with self.changed:
            self.outcomes.append(outcome)
            self.changed.notify_all()

    async def client_loop(self, number: int) -> None:
        sequence = 0
        while not self.stopping.is_set():
            key = f"k{number}-{sequence}"
            await self._send("put", key, {"client": number, "seq": sequence, "pad": "x" * 32})
            await self._send("inc", COUNTERS[(number + sequence) % len(COUNTERS)], None)
            sequence += 1


def retry_warnings(proc: MotiaProcess) -> list[str]:
    """The app's log lines where its Redis store reports a call it is retrying."""
    return [line for line in proc.logs().splitlines() if RETRY_WARNING in line and "(motia.state.redis)" in line]


async def wait_for_retries(proc: MotiaProcess, count: int) -> None:
    """Poll the app's log (an observable condition) until ``count`` calls have reported a retry."""
    deadline = time.monotonic() + PHASE_DEADLINE
    while len(retry_warnings(proc)) < count:
        if proc.proc.poll() is not None:
            pytest.fail(f"motia exited with {proc.proc.returncode} while Redis was down:\n{proc.logs()}")
        if time.monotonic() > deadline:
            pytest.fail(f"{count} retry warnings not in the motia log within {PHASE_DEADLINE}s:\n{proc.logs()[-3000:]}")
        await asyncio.sleep(0.05)


async def test_redis_restarted_under_load_loses_no_acknowledged_write(
    redis_server_factory: Callable[..., Any], run_motia: Callable[..., MotiaProcess]
) -> None:
    # Given an app on an AOF-always Redis (fsync before every reply), with a short retry budget
    redis = redis_server_factory(appendonly=True)
    url = f"{redis.url}?prefix=restart-{uuid.uuid4().hex[:12]}&timeout={BACKEND_TIMEOUT}"
    app = run_motia(APP_STEPS, state=url, name="app")
    await asyncio.to_thread(app.wait_ready)

    async with httpx.AsyncClient(base_url=app.url, timeout=CLIENT_TIMEOUT) as client:
        load = Load(client)
        clients = [asyncio.create_task(load.client_loop(n)) for n in range(CLIENTS)]
        try:
            # When eight clients write concurrently and Redis is killed after BEFORE_KILL acknowledged requests
            await load.wait_for(lambda: load.acked() >= BEFORE_KILL, f"{BEFORE_KILL} acknowledged requests")
            await asyncio.to_thread(redis.kill)
            # And it stays down until at least one retrying call per client has been logged (each call warns
            # once, and no background loop warned in practice: so every client is stuck in the outage), then it
            # comes back on its port
            await wait_for_retries(app, CLIENTS)
            await asyncio.to_thread(redis.restart)
            load.restarted = True

            # Then the app recovers: requests sent after the restart are acknowledged again
            await load.wait_for(
                lambda: load.acked(after_restart=True) >= AFTER_RESTART,
                f"{AFTER_RESTART} acknowledged requests sent after the restart",
            )
        finally:
            load.stopping.set()
            done, pending = await asyncio.wait(clients, timeout=CLIENT_TIMEOUT + 5)
            for task in pending:
                task.cancel()
        assert not pending, f"clients still waiting for answers after the load stopped; {load.summary()}"
        for task in done:
            task.result()  # a client crashed on something other than a transport error: show it
        print(load.summary())

        puts = [o for o in load.outcomes if o.kind == "put"]
        acked_puts = {o.target: o for o in puts if o.ok}
        unknown_puts = {o.target: o for o in puts if not o.ok}
        # A PUT of a fresh key is acknowledged with version 1: a retry was recognised, not applied again
        assert {k: o.version for k, o in acked_puts.items() if o.version != 1} == {}

        # And every acknowledged PUT is still there with its value, read through the app...
        async def read(key: str) -> tuple[str, int, Any]:
            response = await client.get(f"/kv/{SCOPE}/{key}")
            try:
                return key, response.status_code, response.json()
            except ValueError:
                return key, response.status_code, response.text

        through_app = await asyncio.gather(*(read(key) for key in acked_puts))
        lost_via_app = {key: (status, body) for key, status, body in through_app if status != 200}
        assert lost_via_app == {}, (
            f"{len(lost_via_app)} of {len(acked_puts)} acknowledged writes lost (read through the app), e.g. "
            f"{dict(list(lost_via_app.items())[:3])}; {load.summary()}"
        )
        wrong_via_app = {
            key: body for key, _, body in through_app if body != {"value": acked_puts[key].value, "version": 1}
        }
        assert wrong_via_app == {}
        counters_via_app = {}
        for counter in COUNTERS:
            response = await client.get(f"/kv/counters/{counter}")
            counters_via_app[counter] = response.json()["value"]["n"] if response.status_code == 200 else 0

    # ...and straight from Redis, with no key the clients did not write and no key written twice
    manager = StateManager.from_url(url)
    try:
        stored = {entry.key: entry for entry in await manager.items(SCOPE)}
        counter_entries = {entry.key: entry.value for entry in await manager.items("counters")}
    finally:
        await manager.aclose()
    lost = sorted(set(acked_puts) - set(stored))
    assert lost == [], f"{len(lost)} of {len(acked_puts)} acknowledged writes lost in Redis, e.g. {lost[:5]}"
    assert set(stored) <= set(acked_puts) | set(unknown_puts)
    mismatched = {
        key: (entry.value, entry.version)
        for key, entry in stored.items()
        if (entry.value, entry.version) != ((acked_puts.get(key) or unknown_puts[key]).value, 1)
    }
    assert mismatched == {}
    counters = {counter: (counter_entries.get(counter) or {"n": 0})["n"] for counter in COUNTERS}
    assert counters_via_app == counters

    # And each shared counter obeys: acknowledged <= n <= acknowledged + unknown, where "acknowledged" are
    # its increments answered 2xx (each must be applied, exactly once) and "unknown" its increments whose
    # request failed (5xx or transport error: applied at most once, or not at all)
    acked_incs = Counter(o.target for o in load.outcomes if o.kind == "inc" and o.ok)
    unknown_incs = Counter(o.target for o in load.outcomes if o.kind == "inc" and not o.ok)
    bounds = {c: (acked_incs[c], counters[c], acked_incs[c] + unknown_incs[c]) for c in COUNTERS}
    assert {c: b for c, b in bounds.items() if not b[0] <= b[1] <= b[2]} == {}, (
        f"counters outside acknowledged <= n <= acknowledged + unknown: {bounds}; {load.summary()}"
    )

    # And the app is still up, its store logged the retries, and it stops cleanly
    assert app.proc.poll() is None, f"motia exited with {app.proc.returncode}:\n{app.logs()}"
    assert len(retry_warnings(app)) >= CLIENTS, app.logs()[-3000:]
    assert await asyncio.to_thread(app.stop) == 0
