"""The console's Dead letters view API: dead letters filtered by step, kind and topic, paged, inspected,
redriven and purged (one, several, or every match), the deliveries pending; input checked, the console's auth
and write protection; on memory, SQLite, Redis and PostgreSQL."""

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


#: Whether the billing handler is fixed, and the orders it billed since (the tests flip and read these).
FIXED: dict[str, Any] = {"on": False, "billed": []}


async def failing(input: Any, ctx: Any) -> None:
    if not FIXED["on"]:
        raise ValueError(f"bad order {input['id']}")
    FIXED["billed"].append((input["id"], ctx.trigger.delivery_id))


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MotiaApp]:
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    elif request.param == "redis":
        url = f"{request.getfixturevalue('redis_server').url}?prefix=deadview{next(_prefixes)}&timeout=1"
    else:
        url = f"{request.getfixturevalue('postgres_server').url}?schema=deadview{next(_prefixes)}"
    FIXED.update(on=False, billed=[])
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
        assert narrowed.json() == {"dead_letters": [], "next": None, "pending": {"later": 1}, "limit": 100}


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


# -- operating them ----------------------------------------------------------------------------------------------


def post(client: httpx.AsyncClient, action: str, body: Any, **kwargs: Any) -> Any:
    return client.post(f"/__motia/api/dead-letters/{action}", json=body, **kwargs)


async def letters(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/__motia/api/dead-letters", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["dead_letters"])


async def test_one_dead_letter_is_shown_with_its_errors_and_pages_continue(app: MotiaApp) -> None:
    async with client_for(app) as client:
        (first,) = await letters(client, limit=1)
        shown = await client.get("/__motia/api/dead-letters/one", params={"id": first["id"]})
        assert shown.status_code == 200
        letter = shown.json()
        assert letter["first_error"] == letter["error"] and "ValueError: bad order 7" in letter["error"]
        assert letter["error_summary"] == "ValueError: bad order 7" and letter["attempts"] == 1
        missing = await client.get("/__motia/api/dead-letters/one", params={"id": "nope"})
        assert missing.status_code == 404 and missing.json()["error"] == "no dead letter 'nope'"
        # The next page starts after the last letter of this one
        page = (await client.get("/__motia/api/dead-letters", params={"limit": 1})).json()
        rest = await letters(client, after=page["next"])
        assert [d["topic"] for d in rest] == ["audit"]


async def test_pending_deliveries_are_listed(app: MotiaApp) -> None:
    async with client_for(app) as client:
        response = await client.get("/__motia/api/pending-deliveries")
    assert response.status_code == 200
    (waiting,) = response.json()["pending_deliveries"]
    assert (waiting["id"], waiting["step"], waiting["attempts"], waiting["leased_until"]) == ("w1", "later", 0, None)
    assert response.json()["next"] is None


async def test_redrive_one_after_fixing_the_handler_runs_it_once(app: MotiaApp) -> None:
    async with client_for(app) as client:
        (failed,) = await letters(client, step="bill")
        FIXED["on"] = True
        response = await post(client, "redrive", {"ids": [failed["id"]]})
        assert response.status_code == 200, response.text
        assert response.json() == {"redriven": 1, "ids": [failed["id"]], "skipped": []}
        await app.drain()
        assert FIXED["billed"] == [(7, failed["id"])]
        assert await letters(client, step="bill") == []


async def test_redrive_and_purge_every_match_or_everything(app: MotiaApp) -> None:
    async with client_for(app) as client:
        # A body that selects nothing is refused
        nothing = await post(client, "purge", {})
        assert nothing.status_code == 400 and "say which dead letters" in nothing.json()["error"]
        both = await post(client, "purge", {"ids": ["x"], "step": "bill"})
        assert both.status_code == 400
        # Every match of a filter
        FIXED["on"] = True
        assert (await post(client, "redrive", {"step": "bill"})).json() == {"redriven": 1}
        await app.drain()
        assert [order for order, _ in FIXED["billed"]] == [7]
        # Everything
        assert (await post(client, "purge", {"all": True})).json() == {"purged": 1}
        assert await letters(client) == []


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"ids": ["nope"]}, 404, "no dead letter 'nope'"),
        ({"ids": []}, 400, "'ids' must be a non-empty list"),
        ({"ids": "abc"}, 400, "'ids' must be a non-empty list"),
        ({"kind": "email"}, 400, "'kind' must be one of queue, state, stream"),
        ({"step": 3}, 400, "'step' must be a string"),
        ({"all": "yes"}, 400, "'all' must be true or false"),
        ({"everything": True}, 400, "unknown field(s) 'everything'"),
    ],
)
async def test_bad_actions_change_nothing(app: MotiaApp, body: Any, status: int, message: str) -> None:
    async with client_for(app) as client:
        before = await letters(client)
        response = await post(client, "purge", body)
        assert response.status_code == status and response.json()["error"].startswith(message), response.text
        # An unknown id among known ones: nothing purged either
        mixed = await post(client, "purge", {"ids": [before[0]["id"], "nope"]})
        assert mixed.status_code == 404 and mixed.json()["id"] == "nope"
        assert await letters(client) == before


async def test_actions_are_writes_the_console_guards(app: MotiaApp) -> None:
    async with client_for(app, token=TOKEN) as client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert (await post(client, "purge", {"all": True})).status_code == 401
        cross = await post(client, "purge", {"all": True}, headers={**auth, "Origin": "http://evil.example"})
        assert cross.status_code == 403
        form = await client.post(
            "/__motia/api/dead-letters/purge", content=b"all=true", headers={**auth, "Content-Type": "text/plain"}
        )
        assert form.status_code == 415
        listed = await client.get("/__motia/api/dead-letters", headers=auth)
        assert len(listed.json()["dead_letters"]) == 2  # nothing was purged
