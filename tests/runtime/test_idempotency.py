"""``Idempotency-Key`` on HTTP routes (runtime/idempotency.py) on memory, SQLite, Redis and PostgreSQL: replay, 409
while the first runs, 422 on a different request, 20 concurrent retries over a real socket, expiry after
the retention, a 500 releasing the key, streamed answers never stored; and message ``id``s deduplicated."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import motia
from motia import http, queue, step
from motia import state as state_trigger
from motia.exceptions import ConfigError, EnqueueError
from motia.runtime.app import MotiaApp
from motia.runtime.idempotency import REPLAYED_HEADER, SCOPE
from motia.runtime.queue import SEEN_SCOPE
from motia.steps.definition import Step
from tests.polling import eventually
from tests.runtime.delivery_helpers import FAST, StartApp
from tests.streams.serving import serving


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return f"{request.getfixturevalue('postgres_server').url}?schema=idem{uuid.uuid4().hex[:12]}&timeout=5"
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    server = request.getfixturevalue("redis_server")
    return f"{server.url}?prefix=idem-{uuid.uuid4().hex[:12]}&timeout=1"


@pytest.fixture
async def start_app(store_url: str) -> AsyncIterator[StartApp]:
    apps: list[MotiaApp] = []

    async def start(steps: list[Step], **options: Any) -> MotiaApp:
        options.setdefault("delivery", FAST)
        options.setdefault("shutdown_timeout", 2.0)
        app = MotiaApp(steps, state=store_url, cron=False, **options)
        apps.append(app)
        await app.startup()
        return app

    yield start
    for app in reversed(apps):
        await app.shutdown()


class Counter:
    def __init__(self) -> None:
        self.runs = 0
        self.gate: asyncio.Event | None = None
        self.fail = False


def payment_steps(counter: Counter, **route: Any) -> list[Step]:
    async def pay(req: Any, ctx: Any) -> Any:
        counter.runs += 1
        if counter.gate is not None:
            await counter.gate.wait()
        if counter.fail:
            raise RuntimeError("card network down")
        return {"status": 201, "body": {"run": counter.runs, "amount": req.body["amount"]}, "headers": {"x-a": "1"}}

    return [step({"name": "pay", "triggers": [http("POST", "/pay/:account", **route)]}, pay)]


def client(app: MotiaApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app.asgi), base_url="http://test")


async def test_a_retry_gets_the_stored_answer_and_the_handler_runs_once(start_app: StartApp) -> None:
    counter = Counter()
    app = await start_app(payment_steps(counter, idempotency=True))
    async with client(app) as c:
        first = await c.post("/pay/a1", json={"amount": 5}, headers={"Idempotency-Key": "k1"})
        again = await c.post("/pay/a1", json={"amount": 5}, headers={"Idempotency-Key": "k1"})
        other = await c.post("/pay/a1", json={"amount": 5}, headers={"Idempotency-Key": "k2"})
        plain = await c.post("/pay/a1", json={"amount": 5})
    assert first.status_code == 201 and REPLAYED_HEADER not in first.headers
    assert again.status_code == 201 and again.headers[REPLAYED_HEADER] == "true"
    assert again.content == first.content and again.headers["x-a"] == "1"
    assert again.json() == {"run": 1, "amount": 5}
    assert other.json()["run"] == 2 and plain.json()["run"] == 3  # another key, and no key, run as usual
    assert counter.runs == 3


async def test_the_same_key_on_a_different_request_is_422(start_app: StartApp) -> None:
    counter = Counter()
    app = await start_app(payment_steps(counter, idempotency=True))
    async with client(app) as c:
        assert (await c.post("/pay/a1", json={"amount": 5}, headers={"Idempotency-Key": "k"})).status_code == 201
        body = await c.post("/pay/a1", json={"amount": 6}, headers={"Idempotency-Key": "k"})
        path = await c.post("/pay/a2", json={"amount": 5}, headers={"Idempotency-Key": "k"})
    assert body.status_code == 422 and path.status_code == 422
    assert "different request" in body.json()["error"]
    assert counter.runs == 1


async def test_a_retry_while_the_first_runs_is_409(start_app: StartApp) -> None:
    counter = Counter()
    counter.gate = asyncio.Event()
    app = await start_app(payment_steps(counter, idempotency=True))
    async with client(app) as c:
        first = asyncio.create_task(c.post("/pay/a", json={"amount": 1}, headers={"Idempotency-Key": "k"}))
        await eventually(lambda: counter.runs == 1, what="the first request running")
        busy = await c.post("/pay/a", json={"amount": 1}, headers={"Idempotency-Key": "k"})
        assert busy.status_code == 409
        counter.gate.set()
        assert (await first).status_code == 201
        replay = await c.post("/pay/a", json={"amount": 1}, headers={"Idempotency-Key": "k"})
    assert replay.headers[REPLAYED_HEADER] == "true" and counter.runs == 1


async def test_twenty_concurrent_retries_over_a_socket_run_the_handler_once(store_url: str) -> None:
    counter = Counter()
    counter.gate = asyncio.Event()
    app = MotiaApp(payment_steps(counter, idempotency=True), state=store_url, cron=False, delivery=FAST)
    async with serving(app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:

        async def attempt() -> httpx.Response:
            return await c.post("/pay/a", json={"amount": 9}, headers={"Idempotency-Key": "same"})

        tasks = [asyncio.create_task(attempt()) for _ in range(20)]
        await eventually(lambda: counter.runs >= 1, what="one request running")
        await eventually(lambda: sum(t.done() for t in tasks) == 19, what="the 19 others answered")
        counter.gate.set()
        answers = await asyncio.gather(*tasks)
        after = await attempt()
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] + [409] * 19
    assert counter.runs == 1
    assert after.status_code == 201 and after.headers[REPLAYED_HEADER] == "true" and after.json()["run"] == 1


async def test_a_failed_handler_releases_the_key(start_app: StartApp) -> None:
    counter = Counter()
    counter.fail = True
    app = await start_app(payment_steps(counter, idempotency=True))
    async with client(app) as c:
        failed = await c.post("/pay/a", json={"amount": 1}, headers={"Idempotency-Key": "k"})
        counter.fail = False
        retried = await c.post("/pay/a", json={"amount": 1}, headers={"Idempotency-Key": "k"})
        replay = await c.post("/pay/a", json={"amount": 1}, headers={"Idempotency-Key": "k"})
    assert failed.status_code == 500
    assert retried.status_code == 201 and REPLAYED_HEADER not in retried.headers
    assert replay.headers[REPLAYED_HEADER] == "true"
    assert counter.runs == 2


async def test_the_key_expires_after_the_retention(start_app: StartApp) -> None:
    counter = Counter()
    app = await start_app(payment_steps(counter, idempotency={"ttl": 0.3}))
    async with client(app) as c:
        await c.post("/pay/a", json={"amount": 1}, headers={"Idempotency-Key": "k"})
        assert len(await app.state.list(SCOPE)) == 1
        assert await app.state.list_groups() == []  # the record's scope is internal: not listed

        async def runs_again() -> bool:
            response = await c.post("/pay/a", json={"amount": 1}, headers={"Idempotency-Key": "k"})
            return REPLAYED_HEADER not in response.headers

        await eventually(runs_again, timeout=5, interval=0.1, what="the key forgotten after its ttl")
    assert counter.runs == 2


async def test_app_wide_setting_and_a_route_opting_out(start_app: StartApp) -> None:
    counter = Counter()
    steps = payment_steps(counter)
    steps.append(
        step({"name": "free", "triggers": [http("POST", "/free", idempotency=False)]}, lambda req, ctx: {"status": 200})
    )
    app = await start_app(steps, idempotency=True)
    async with client(app) as c:
        for _ in range(2):
            await c.post("/pay/a", json={"amount": 1}, headers={"Idempotency-Key": "k"})
        free = await c.post("/free", headers={"Idempotency-Key": "k"})
    assert counter.runs == 1 and REPLAYED_HEADER not in free.headers
    assert app.idempotency == 86400.0


async def test_streamed_answers_are_not_stored(start_app: StartApp) -> None:
    runs: list[int] = []

    async def streams(args: Any) -> None:
        runs.append(1)
        await args.response.status(200)
        args.response.writer.stream.write(b"chunk\n")
        args.response.close()

    app = await start_app([step({"name": "s", "triggers": [http("POST", "/s", idempotency=True)]}, streams)])
    async with client(app) as c:
        for _ in range(2):
            response = await c.post("/s", headers={"Idempotency-Key": "k"})
            assert response.content == b"chunk\n" and REPLAYED_HEADER not in response.headers
    assert len(runs) == 2  # each retry runs the handler again: a stream is not replayed
    assert await app.state.list(SCOPE) == []


async def test_bad_keys_and_settings_are_refused(start_app: StartApp) -> None:
    counter = Counter()
    app = await start_app(payment_steps(counter, idempotency=True))
    async with client(app) as c:
        response = await c.post("/pay/a", json={"amount": 1}, headers={"Idempotency-Key": "x" * 256})
    assert response.status_code == 400 and counter.runs == 0
    with pytest.raises(ConfigError):
        http("POST", "/x", idempotency={"ttl": -1})
    with pytest.raises(ConfigError):
        http("POST", "/x", idempotency={"retention": 5})
    with pytest.raises(ConfigError):
        http("POST", "/x", idempotency="yes")  # type: ignore[arg-type]


async def test_internal_scopes_do_not_reach_state_triggers(start_app: StartApp) -> None:
    seen: list[str] = []

    async def watch(event: Any, ctx: Any) -> None:
        seen.append(event.group_id)

    counter = Counter()
    steps = [*payment_steps(counter, idempotency=True), step({"name": "w", "triggers": [state_trigger()]}, watch)]
    app = await start_app(steps)
    async with client(app) as c:
        await c.post("/pay/a", json={"amount": 1}, headers={"Idempotency-Key": "k"})
    await app.state.set("orders", "o1", {"n": 1})
    await eventually(lambda: "orders" in seen, what="the user's write delivered")
    assert SCOPE not in seen


# -- message ids -------------------------------------------------------------------------------------


async def test_a_duplicate_message_id_is_dropped_also_after_the_first_was_handled(start_app: StartApp) -> None:
    handled: list[Any] = []

    async def consume(data: Any, ctx: Any) -> None:
        handled.append(data)

    app = await start_app([step({"name": "c", "triggers": [queue("orders")]}, consume)])

    await motia.enqueue({"topic": "orders", "data": {"n": 1}, "id": "order-1"})
    await motia.enqueue({"topic": "orders", "data": {"n": 1}, "id": "order-1"})  # while pending
    await eventually(lambda: len(handled) == 1, what="the first message handled")
    await eventually(lambda: _none_pending(app), what="its delivery completed and deleted")
    await motia.enqueue({"topic": "orders", "data": {"n": 1}, "id": "order-1"})  # after it was handled
    await motia.enqueue({"topic": "orders", "data": {"n": 2}, "id": "order-2"})
    await motia.enqueue({"topic": "orders", "data": {"n": 3}})  # without an id: never deduplicated
    await motia.enqueue({"topic": "orders", "data": {"n": 3}})
    await eventually(lambda: len(handled) == 4, what="the new messages handled")
    assert sorted(d["n"] for d in handled) == [1, 2, 3, 3]
    assert len(await app.state.list(SEEN_SCOPE)) == 2
    assert SEEN_SCOPE not in await app.state.list_groups()  # internal scopes are not listed
    with pytest.raises(EnqueueError):
        await motia.enqueue({"topic": "orders", "data": {}, "id": ""})


async def _none_pending(app: MotiaApp) -> bool:
    return await app.state.backend.pending("c") == 0


def test_motia_config_setting_is_checked_at_start(tmp_path: Path) -> None:
    from motia.runtime.project_config import idempotency_config

    (tmp_path / "motia_config.py").write_text("idempotency = {'ttl': 60}\n")
    assert idempotency_config(tmp_path) == {"ttl": 60}
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "motia_config.py").write_text("idempotency = 'always'\n")
    with pytest.raises(ConfigError, match="idempotency"):
        idempotency_config(bad)
    assert idempotency_config(tmp_path / "missing") is None


async def test_a_claim_left_by_a_dead_instance_expires_with_its_lease(start_app: StartApp) -> None:
    counter = Counter()
    app = await start_app(payment_steps(counter, idempotency=True))
    async with client(app) as c:
        await c.post("/pay/a", json={"amount": 1}, headers={"Idempotency-Key": "k"})
        (entry,) = await app.state.items(SCOPE)
        # What an instance that died mid-request leaves: its in-progress claim, no longer renewed.
        claim = {"status": "running", "fingerprint": entry.value["fingerprint"]}
        await app.state.set(SCOPE, entry.key, claim, ttl=0.5)
        blocked = await c.post("/pay/a", json={"amount": 1}, headers={"Idempotency-Key": "k"})
        assert blocked.status_code == 409

        async def runs_again() -> bool:
            response = await c.post("/pay/a", json={"amount": 1}, headers={"Idempotency-Key": "k"})
            return response.status_code == 201 and REPLAYED_HEADER not in response.headers

        await eventually(runs_again, timeout=5, interval=0.1, what="the dead claim expired")
    assert counter.runs == 2
