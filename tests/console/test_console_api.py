"""The console's HTTP API, in-process (httpx over ASGI): auth, validation, conflicts, events, steps."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest
from starlette.requests import Request

from motia import cron, http, state, step
from motia.console.auth import COOKIE_NAME, check_console_bind, is_loopback
from motia.console.routes import ConsoleAPI, console_routes
from motia.exceptions import ConfigError
from motia.runtime.app import MotiaApp
from motia.runtime.http import build_asgi

TOKEN = "s3cret-console-token"
BASE = "http://127.0.0.1:3111"


async def noop(input, ctx):
    return None


STEPS = [
    step({"name": "get-cart", "description": "Read a cart", "triggers": [http("GET", "/cart/:id")]}, noop),
    step({"name": "nightly", "triggers": [cron("0 3 * * *")], "flows": ["ops"]}, noop),
    step({"name": "on-cart", "triggers": [state(scope="carts")]}, noop),
]


@pytest.fixture
async def app():
    app = MotiaApp(STEPS, state="memory://", cron=False)
    await app.startup()
    yield app
    await app.shutdown()


def client_for(app: MotiaApp, *, token: str | None = None, base_url: str = BASE, **kwargs) -> httpx.AsyncClient:
    asgi = build_asgi(app, extra_routes=console_routes(app, token=token))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=base_url, **kwargs)


@pytest.fixture
async def client(app):
    async with client_for(app) as client:
        yield client


def put(client, scope, key, body, **kwargs):
    return client.put("/__motia/api/entry", params={"scope": scope, "key": key}, json=body, **kwargs)


# -- binding and auth ---------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "app.localhost"])
def test_loopback_binds_need_no_token(host):
    assert is_loopback(host)
    check_console_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "example.com"])
def test_other_binds_need_a_token(host):
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match="--console-token"):
        check_console_bind(host, None)
    check_console_bind(host, TOKEN)


@pytest.mark.parametrize("token", ["", "has space", "tab\there"])
def test_a_token_must_be_non_empty_without_whitespace(token):
    with pytest.raises(ConfigError, match="non-empty"):
        check_console_bind("127.0.0.1", token)


async def test_without_a_token_only_requests_addressed_to_localhost_are_served(app):
    async with client_for(app) as local:
        assert (await local.get("/__motia/api/scopes")).status_code == 200
    # DNS rebinding: a page of evil.example resolving to 127.0.0.1 sends Host: evil.example
    async with client_for(app, base_url="http://evil.example:3111") as rebound:
        response = await rebound.get("/__motia/api/scopes")
        assert response.status_code == 403
        assert "localhost" in response.json()["error"]
        assert (await rebound.get("/__motia")).status_code == 403


async def test_with_a_token_every_request_must_carry_it(app):
    async with client_for(app, token=TOKEN) as client:
        for path in ("/__motia/api/scopes", "/__motia/api/steps", "/__motia/api/info", "/__motia/static/app.js"):
            missing = await client.get(path)
            assert missing.status_code == 401, path
        missing = await client.get("/__motia/api/scopes")
        assert missing.json()["error"].startswith("console token required")
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = await client.get("/__motia/api/scopes", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"].startswith("wrong console token")
        right = await client.get("/__motia/api/scopes", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200
        write = await put(client, "s", "k", {"value": 1})
        assert write.status_code == 401
        assert await app.state.get("s", "k") is None
        # The page itself answers 401 with a human explanation
        page = await client.get("/__motia/")
        assert page.status_code == 401 and b"?token=" in page.content


async def test_opening_the_page_with_the_token_sets_a_cookie(app):
    async with client_for(app, token=TOKEN) as client:
        wrong = await client.get("/__motia", params={"token": "nope"})
        assert wrong.status_code == 401
        login = await client.get("/__motia", params={"token": TOKEN})
        assert login.status_code == 303 and login.headers["location"] == "/__motia/"
        cookie = login.headers["set-cookie"].lower()
        assert f"{COOKIE_NAME}={TOKEN}".lower() in cookie
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/__motia" in cookie
        # httpx keeps the cookie: the page and the API now work without a header
        page = await client.get("/__motia/")
        assert page.status_code == 200 and b"pymotia console" in page.content
        assert (await client.get("/__motia/api/scopes")).status_code == 200


async def test_cross_origin_writes_are_refused(client, app):
    refused = await put(client, "s", "k", {"value": 1}, headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403 and "cross-origin" in refused.json()["error"]
    assert await app.state.get("s", "k") is None
    same = await put(client, "s", "k", {"value": 1}, headers={"Origin": BASE})
    assert same.status_code == 200


# -- page and static files ----------------------------------------------------------------------------


async def test_page_and_static_files(client):
    for path in ("/__motia", "/__motia/"):
        page = await client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert b'src="/__motia/static/app.js"' in page.content
    js = await client.get("/__motia/static/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    css = await client.get("/__motia/static/app.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert (await client.get("/__motia/static/../cli.py")).status_code == 404
    assert (await client.get("/__motia/static/nope.js")).status_code == 404


async def test_the_page_loads_nothing_from_other_hosts(client):
    # Offline use: no CDN, no external fonts or scripts.
    for path in ("/__motia/", "/__motia/static/app.js", "/__motia/static/app.css"):
        body = (await client.get(path)).text
        assert "http://" not in body and "https://" not in body and "//cdn" not in body, path


async def test_unknown_api_paths_and_methods_answer_json(client):
    missing = await client.get("/__motia/api/nope")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}
    wrong = await client.post("/__motia/api/scopes")
    assert wrong.status_code == 405 and wrong.json() == {"error": "Method Not Allowed"}


# -- reading ------------------------------------------------------------------------------------------


async def test_scopes_with_counts_and_info(client, app):
    await app.state.set("carts", "c1", 1)
    await app.state.set("carts", "c2", 2)
    await app.state.set("users", "u1", 3)
    assert (await client.get("/__motia/api/scopes")).json() == {
        "scopes": [{"name": "carts", "count": 2}, {"name": "users", "count": 1}]
    }
    info = (await client.get("/__motia/api/info")).json()
    assert (
        info["state_url"] == "memory://"
        and info["steps"] == 3
        and info["events"] == {"durable": False, "subscribers": 0}
    )


async def test_items_are_paginated_and_filtered_by_prefix(client, app):
    for i in range(5):
        await app.state.set("s", f"k{i}", {"i": i}, ttl=60 if i == 0 else None)
    await app.state.set("s", "other", None)

    first = (await client.get("/__motia/api/items", params={"scope": "s", "limit": 2})).json()
    assert first["count"] == 6 and first["next"] == "k1"
    assert first["items"][0]["key"] == "k0" and first["items"][0]["expires_at"] > time.time()
    assert first["items"][1] == {"key": "k1", "value": {"i": 1}, "version": 1, "expires_at": None}
    second = (await client.get("/__motia/api/items", params={"scope": "s", "limit": 2, "after": "k1"})).json()
    assert [e["key"] for e in second["items"]] == ["k2", "k3"]
    filtered = (await client.get("/__motia/api/items", params={"scope": "s", "prefix": "k", "after": "k3"})).json()
    assert [e["key"] for e in filtered["items"]] == ["k4"] and filtered["next"] is None
    assert (await client.get("/__motia/api/items", params={"scope": "empty"})).json()["items"] == []


async def test_get_entry(client, app):
    await app.state.set("odd/scope", "a key/with:slash", [1])
    entry = await client.get("/__motia/api/entry", params={"scope": "odd/scope", "key": "a key/with:slash"})
    assert entry.json() == {"key": "a key/with:slash", "value": [1], "version": 1, "expires_at": None}
    missing = await client.get("/__motia/api/entry", params={"scope": "odd/scope", "key": "nope"})
    assert missing.status_code == 404 and "nope" in missing.json()["error"]


async def test_steps_and_their_triggers(client):
    steps = (await client.get("/__motia/api/steps")).json()["steps"]
    assert steps[0] == {
        "name": "get-cart",
        "description": "Read a cart",
        "flows": [],
        "enqueues": [],
        "triggers": [{"type": "http", "method": "GET", "path": "/cart/:id", "condition": False}],
    }
    assert steps[1]["triggers"] == [{"type": "cron", "expression": "0 3 * * *", "condition": False}]
    assert steps[1]["flows"] == ["ops"]
    assert steps[2]["triggers"] == [
        {
            "type": "state",
            "scope": "carts",
            "key": None,
            "condition": False,
            "retry": {"max_retries": 3, "backoff": 1.0, "backoff_max": 60.0, "backoff_type": "exponential"},
        }
    ]


def test_stream_triggers_are_described_with_their_stream_group_and_item():
    from motia import stream
    from motia.console.steps import trigger_json

    assert trigger_json(stream("todo", group_id="inbox", condition=lambda i: True)) == {
        "type": "stream",
        "stream_name": "todo",
        "group_id": "inbox",
        "item_id": None,
        "condition": True,
        "retry": {"max_retries": 3, "backoff": 1.0, "backoff_max": 60.0, "backoff_type": "exponential"},
    }


def test_a_queue_trigger_is_described_with_its_delivery_settings():
    from motia import queue
    from motia.console.steps import trigger_json

    def tenant(data):
        return data["tenant"]

    keyed = queue(
        "orders",
        config={
            "delay_seconds": 2,
            "visibility_timeout": 30,
            "concurrency": {"key": "user.id", "limit": 2},
            "rate_limit": {"limit": 10, "period": 60, "key": tenant},
            "max_retries": 5,
            "backoff_type": "fixed",
        },
    )
    assert trigger_json(keyed) == {
        "type": "queue",
        "topic": "orders",
        "condition": False,
        "queue": {
            "type": "standard",
            "delay_seconds": 2.0,
            "visibility_timeout": 30.0,
            "concurrency": None,
            "key_concurrency": {"key": "user.id", "limit": 2},
            "rate_limit": {"limit": 10, "period": 60.0, "key": tenant.__qualname__},
        },
        "retry": {"max_retries": 5, "backoff": 1.0, "backoff_max": 60.0, "backoff_type": "fixed"},
    }
    fifo = trigger_json(queue("jobs", config={"type": "fifo", "concurrency": 4}))
    assert fifo["queue"]["type"] == "fifo" and fifo["queue"]["concurrency"] == 4
    assert fifo["queue"]["key_concurrency"] is None and fifo["queue"]["rate_limit"] is None


# -- validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "missing query parameter 'scope'"),
        ({"scope": ""}, "missing query parameter 'scope'"),
        ({"scope": "s", "limit": "abc"}, "'limit' must be an integer"),
        ({"scope": "s", "limit": "0"}, "between 1 and 500"),
        ({"scope": "s", "limit": "501"}, "between 1 and 500"),
        ({"scope": "s" * 300}, "scope"),
    ],
)
async def test_items_validates_its_query(client, params, message):
    response = await client.get("/__motia/api/items", params=params)
    assert response.status_code == 400
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{nope", 400, "malformed JSON"),
        (b"[1]", 400, "must be an object"),
        (b"{}", 400, "'value'"),
        (b'{"value": 1, "extra": 2}', 400, "unknown field(s) in the body: extra"),
        (b'{"value": 1, "if_version": -1}', 400, "if_version"),
        (b'{"value": 1, "if_version": "1"}', 400, "if_version"),
        (b'{"value": 1, "if_version": true}', 400, "if_version"),
        (b'{"value": 1, "ttl": 0}', 400, "ttl"),
        (b'{"value": 1, "ttl": "soon"}', 400, "ttl"),
        (b'{"value": NaN}', 400, "malformed JSON"),  # not JSON: refused by the parser (issue 11, #6)
    ],
)
async def test_put_validates_its_body(client, app, body, status, message):
    response = await client.put(
        "/__motia/api/entry",
        params={"scope": "s", "key": "k"},
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert await app.state.get("s", "k") is None


async def test_big_ints_are_never_turned_into_floats(client, app):
    # Either the store refuses an int beyond 64 bits (400), or it keeps it exactly: never a float.
    response = await client.put(
        "/__motia/api/entry",
        params={"scope": "s", "key": "k"},
        content=b'{"value": {"n": 1180591620717411303424}}',
        headers={"content-type": "application/json"},
    )
    if response.status_code == 200:
        assert b'"n":1180591620717411303424' in response.content
        assert await app.state.get("s", "k") == {"n": 2**70}
        listed = await client.get("/__motia/api/items", params={"scope": "s"})
        assert b"1180591620717411303424" in listed.content
    else:
        assert response.status_code == 400 and await app.state.get("s", "k") is None


async def test_put_needs_json_and_a_bounded_body(client, app):
    form = await client.put("/__motia/api/entry", params={"scope": "s", "key": "k"}, content=b"value=1")
    assert form.status_code == 415
    huge = b'{"value": "' + b"x" * (app.state.max_value_bytes + 70_000) + b'"}'
    too_big = await client.put(
        "/__motia/api/entry",
        params={"scope": "s", "key": "k"},
        content=huge,
        headers={"content-type": "application/json"},
    )
    assert too_big.status_code == 413
    missing_key = await client.put("/__motia/api/entry", params={"scope": "s"}, json={"value": 1})
    assert missing_key.status_code == 400 and "'key'" in missing_key.json()["error"]
    assert await app.state.list_groups() == []


async def test_clear_needs_the_scope_name_as_confirmation(client, app):
    await app.state.set("s", "k", 1)
    unconfirmed = await client.delete("/__motia/api/scope", params={"scope": "s"})
    assert unconfirmed.status_code == 400 and "confirm" in unconfirmed.json()["error"]
    wrong = await client.delete("/__motia/api/scope", params={"scope": "s", "confirm": "other"})
    assert wrong.status_code == 400
    assert await app.state.count("s") == 1
    cleared = await client.delete("/__motia/api/scope", params={"scope": "s", "confirm": "s"})
    assert cleared.json() == {"cleared": "s", "count": 1}
    assert await app.state.count("s") == 0
    unknown = await client.delete("/__motia/api/scope", params={"scope": "s", "confirm": "s"})
    assert unknown.status_code == 404


# -- writing, conflicts -------------------------------------------------------------------------------


async def test_put_creates_and_updates_keeping_the_expiry(client, app):
    created = await put(client, "s", "k", {"value": {"n": 1}, "if_version": 0, "ttl": 100})
    assert created.status_code == 200
    assert created.json()["version"] == 1 and created.json()["expires_at"] > time.time() + 90
    expires = created.json()["expires_at"]

    updated = (await put(client, "s", "k", {"value": {"n": 2}, "if_version": 1})).json()
    assert updated["value"] == {"n": 2} and updated["version"] == 2
    assert updated["expires_at"] == pytest.approx(expires)  # no ttl in the body: the expiry is kept

    permanent = (await put(client, "s", "k", {"value": {"n": 3}, "ttl": None})).json()
    assert permanent["expires_at"] is None and permanent["version"] == 3
    assert await app.state.get("s", "k") == {"n": 3}


async def test_a_stale_version_is_a_409_carrying_the_current_entry(client, app):
    await app.state.set("s", "k", {"n": 1})
    await app.state.set("s", "k", {"n": 2})  # someone else wrote meanwhile: version 2

    conflict = await put(client, "s", "k", {"value": {"n": 99}, "if_version": 1})

    assert conflict.status_code == 409
    body = conflict.json()
    assert body["expected"] == 1 and body["actual"] == 2
    assert body["current"] == {"key": "k", "value": {"n": 2}, "version": 2, "expires_at": None}
    assert await app.state.get("s", "k") == {"n": 2}

    exists = await put(client, "s", "k", {"value": 1, "if_version": 0})
    assert exists.status_code == 409 and exists.json()["actual"] == 2

    gone = await put(client, "s", "missing", {"value": 1, "if_version": 3})
    assert gone.status_code == 409 and gone.json()["current"] is None


async def test_delete_entry(client, app):
    await app.state.set("s", "k", {"n": 1})
    await app.state.set("s", "k", {"n": 2})
    stale = await client.delete("/__motia/api/entry", params={"scope": "s", "key": "k", "if_version": 1})
    assert stale.status_code == 409 and stale.json()["current"]["version"] == 2
    bad = await client.delete("/__motia/api/entry", params={"scope": "s", "key": "k", "if_version": "x"})
    assert bad.status_code == 400
    deleted = await client.delete("/__motia/api/entry", params={"scope": "s", "key": "k", "if_version": 2})
    assert deleted.json() == {"deleted": "k", "scope": "s", "old_value": {"n": 2}}
    assert await app.state.get("s", "k") is None
    again = await client.delete("/__motia/api/entry", params={"scope": "s", "key": "k"})
    assert again.status_code == 404


async def test_a_closed_store_is_a_503(client, app):
    await app.state.aclose()
    response = await client.get("/__motia/api/scopes")
    assert response.status_code == 503 and "closed" in response.json()["error"]


# -- events -------------------------------------------------------------------------------------------


async def test_console_writes_publish_events(client, app):
    hub = app.state_events
    await put(client, "s", "k", {"value": 1})
    await put(client, "s", "k", {"value": 2})
    await client.delete("/__motia/api/entry", params={"scope": "s", "key": "k"})
    await put(client, "s", "k2", {"value": 3})
    await client.delete("/__motia/api/scope", params={"scope": "s", "confirm": "s"})
    events = hub.recent()
    assert [(e["event_type"], e["item_id"]) for e in events] == [
        ("created", "k"),
        ("updated", "k"),
        ("deleted", "k"),
        ("created", "k2"),
        ("cleared", None),
    ]
    assert events[1]["old_value"] == 1 and events[1]["new_value"] == 2 and events[1]["version"] == 2
    assert all(e["group_id"] == "s" and e["source"] == "console" for e in events)
    assert events[-1]["count"] == 1


async def test_a_durable_hub_is_not_fed_twice_by_the_console(client, app):
    app.state_events.durable = True  # the runtime publishes every committed change itself
    await put(client, "s", "k", {"value": 1})
    assert app.state_events.recent() == []


async def test_changes_a_state_trigger_receives_reach_the_feed_once(client, app):
    # Given the app's state trigger on "carts" (step on-cart): the delivery worker publishes those changes
    hub = app.state_events

    # When one carts key is written by the console and another by code (as a handler would)
    assert (await put(client, "carts", "c1", {"value": {"n": 1}})).status_code == 200
    await app.state.set("carts", "c2", {"n": 2})
    await app.drain(10)

    # Then each appears once, with the store's sequence number, whoever wrote it
    events = [(e["event_type"], e["item_id"], e.get("source")) for e in hub.recent()]
    assert sorted(events) == [("created", "c1", None), ("created", "c2", None)]
    assert all(e["seq"] is not None for e in hub.recent())


async def wait_for_subscriber(hub, count=1, timeout=5.0):
    deadline = time.monotonic() + timeout
    while hub.subscriber_count < count:
        assert time.monotonic() < deadline, "the event stream never subscribed"
        await asyncio.sleep(0.01)


def parse_sse(raw: bytes) -> list[tuple[str, str | None, dict[str, Any]]]:
    messages = []
    for block in raw.decode().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith((":", "retry"))
        )
        if "data" in fields:
            messages.append((fields.get("event", "message"), fields.get("id"), orjson.loads(fields["data"])))
    return messages


async def test_event_stream_replays_kept_events_then_streams_live_ones(client, app):
    # Given two events published before the browser connects
    hub = app.state_events
    hub.publish({"event_type": "created", "group_id": "s", "item_id": "a"})
    hub.publish({"event_type": "created", "group_id": "s", "item_id": "b"})

    # When a client reconnects after event 1 and a live event follows
    request = asyncio.create_task(client.get("/__motia/api/events", headers={"Last-Event-ID": "1"}))
    await wait_for_subscriber(hub)
    hub.publish({"event_type": "updated", "group_id": "s", "item_id": "live"})
    hub.close()  # ends the stream, so the in-process transport returns the body
    response = await asyncio.wait_for(request, 10)

    # Then it gets hello, the missed event 2 and the live one, with SSE ids
    assert response.headers["content-type"].startswith("text/event-stream")
    messages = parse_sse(response.content)
    assert messages[0] == ("hello", None, {"durable": False})
    assert [(kind, ident, data["item_id"]) for kind, ident, data in messages[1:]] == [
        ("state", "2", "b"),
        ("state", "3", "live"),
    ]
    assert hub.subscriber_count == 0


async def test_event_stream_validates_last_event_id(client):
    bad = await client.get("/__motia/api/events", headers={"Last-Event-ID": "abc"})
    assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["error"]


async def test_keep_alive_comments_on_an_idle_stream(app):
    # Given a stream with a tiny keep-alive interval and no events
    api = ConsoleAPI(app, app.state_events, keepalive=0.05)
    never = asyncio.Event()

    async def receive():  # the client never disconnects
        await never.wait()
        return {"type": "http.disconnect"}

    chunks: list[bytes] = []

    async def send(message):
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if b"keep-alive" in message.get("body", b""):
                app.state_events.close()

    # When it runs until its first keep-alive (which closes the hub, ending the stream)
    scope = {"type": "http", "method": "GET", "path": "/__motia/api/events", "headers": [], "query_string": b""}
    response = await api.events(Request(scope))
    await asyncio.wait_for(response(scope, receive, send), 10)
    # Then a comment line was sent rather than silence
    assert any(b": keep-alive" in chunk for chunk in chunks)


async def test_stats_say_what_the_store_holds(app, client):
    # Given a key written
    await app.state.set("carts", "c-1", {"items": [1]})
    response = await client.get("/__motia/api/stats")
    # Then the stats are motia state stats' figures
    assert response.status_code == 200
    stats = response.json()
    assert stats["scopes"]["carts"]["keys"] == 1
    assert stats["keys"] == 1
    assert {"pending", "dead_letters", "outbox", "streams", "size"} <= stats.keys()
    assert stats["size"]["total"] > 0
