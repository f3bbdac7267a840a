"""The console's Dead letters view API (read-only): dead letters filtered by step, kind and topic, the deliveries
pending per step, input checked, the console's auth; on memory, SQLite and Redis."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import motia
from motia import queue, step
from motia.console.routes import console_routes
from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions
from motia.runtime.http import build_asgi
from motia.state.backends.types import NewDelivery

TOKEN = "dead-letters-token"
_prefixes = itertools.count()


async def failing(input: Any, ctx: Any) -> None:
    raise ValueError(f"bad order {input['id']}")


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MotiaApp]:
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = f"{request.getfixturevalue('redis_server').url}?prefix=deadview{next(_prefixes)}&timeout=1"
    trigger = queue("orders", config={"max_retries": 0})
    app = MotiaApp(
        [step({"name": "bill", "triggers": [trigger]}, failing)],
        state=url,
        cron=False,
        delivery=DeliveryOptions(poll_interval=0.02),
    )
    await app.startup()
    try:
        # Given a failed message, one nobody subscribes to, and a delivery waiting for a step not run here
        await motia.enqueue({"topic": "orders", "data": {"id": 7}})
        await app.drain()
        await motia.enqueue({"topic": "audit", "data": {"id": 8, "big": 2**70 + 1}})
        await app.state.backend.enqueue([NewDelivery("w1", "later", "queue", b'{"topic":"x","data":1}')])
        yield app
    finally:
        await app.shutdown()


def client_for(app: MotiaApp, *, token: str | None = None) -> httpx.AsyncClient:
    asgi = build_asgi(app, extra_routes=console_routes(app, token=token))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://127.0.0.1:3111")


async def test_lists_dead_letters_and_pending_counts(app: MotiaApp) -> None:
    async with client_for(app) as client:
        response = await client.get("/__motia/api/dead-letters")
    assert response.status_code == 200
    body = response.json()
    assert [(d["step"], d["kind"], d["topic"], d["attempts"]) for d in body["dead_letters"]] == [
        ("bill", "queue", "orders", 1),
        ("(no subscriber)", "queue", "audit", 0),
    ]
    first, kept = body["dead_letters"]
    assert "ValueError: bad order 7" in first["error"] and first["payload"]["data"] == {"id": 7}
    assert kept["error"] == "no subscriber: no step subscribes to topic 'audit'"
    assert kept["payload"]["data"] == {"id": 8, "big": 2**70 + 1}  # exact, not a float
    assert kept["failed_at"] >= first["failed_at"]
    assert body["pending"] == {"later": 1} and body["limit"] == 100


async def test_filters(app: MotiaApp) -> None:
    async def topics(**params: Any) -> list[str]:
        response = await client.get("/__motia/api/dead-letters", params=params)
        assert response.status_code == 200, response.text
        return [d["topic"] for d in response.json()["dead_letters"]]

    async with client_for(app) as client:
        assert await topics(step="(no subscriber)") == ["audit"]
        assert await topics(topic="orders") == ["orders"]
        assert await topics(kind="state") == []
        assert await topics(kind="queue", limit=1) == ["orders"]
        narrowed = await client.get("/__motia/api/dead-letters", params={"step": "later"})
        assert narrowed.json() == {"dead_letters": [], "pending": {"later": 1}, "limit": 100}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"kind": "email"}, "query parameter 'kind' must be one of queue, state, stream, not 'email'"),
        ({"limit": "x"}, "query parameter 'limit' must be an integer"),
        ({"limit": "0"}, "query parameter 'limit' must be between 1 and 1000"),
    ],
)
async def test_bad_queries_are_client_errors(app: MotiaApp, params: dict[str, str], message: str) -> None:
    async with client_for(app) as client:
        response = await client.get("/__motia/api/dead-letters", params=params)
    assert response.status_code == 400 and response.json()["error"].startswith(message)


async def test_needs_the_console_token(app: MotiaApp) -> None:
    async with client_for(app, token=TOKEN) as client:
        assert (await client.get("/__motia/api/dead-letters")).status_code == 401
        right = await client.get("/__motia/api/dead-letters", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200 and len(right.json()["dead_letters"]) == 2
