"""The console API parses request bodies the runtime's one strict way (issue 11, #6): NaN, Infinity and
deep nesting are a 400 naming the problem, never a 500, and nothing is written."""

from __future__ import annotations

import httpx
import pytest

from motia.console.routes import console_routes
from motia.runtime.app import MotiaApp
from motia.runtime.http import build_asgi


@pytest.fixture
async def client():
    app = MotiaApp([], state="memory://", cron=False)
    await app.startup()
    asgi = build_asgi(app, extra_routes=console_routes(app))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://127.0.0.1:3111") as c:
        yield c, app
    await app.shutdown()


def put_raw(client: httpx.AsyncClient, raw: bytes):
    return client.put(
        "/__motia/api/entry",
        params={"scope": "s", "key": "k"},
        content=raw,
        headers={"content-type": "application/json"},
    )


@pytest.mark.parametrize(
    "raw",
    [
        b'{"value": NaN}',
        b'{"value": [Infinity, 123456789012345678901234567890]}',
        b'{"value": ' + b"[" * 300 + b"1" + b"]" * 300 + b"}",
        b'{"value": ' + b"[" * 50_000 + b"123456789012345678901234567890" + b"]" * 50_000 + b"}",
    ],
    ids=["nan", "infinity-with-big-int", "deep", "very-deep-with-big-int"],
)
async def test_a_body_that_is_not_strict_json_is_a_400_and_writes_nothing(client, raw: bytes) -> None:
    c, app = client
    response = await put_raw(c, raw)
    assert response.status_code == 400, response.text
    assert "malformed JSON body" in response.json()["error"]
    assert await app.state.get("s", "k") is None


async def test_big_ints_in_a_console_body_are_kept_exactly(client) -> None:
    c, app = client
    response = await put_raw(c, b'{"value": {"n": 123456789012345678901234567890}}')
    assert response.status_code == 200, response.text
    assert await app.state.get("s", "k") == {"n": 123456789012345678901234567890}
    assert b'"n":123456789012345678901234567890' in response.content
