"""Request bodies are parsed one strict way (issue 11, #6): ints of any size exact; NaN, Infinity and
deep nesting are a 400 that never reaches the handler, whichever parser a body would have taken."""

from __future__ import annotations

import pytest

from motia import http, step
from motia.testing import app_client

BIG = 123456789012345678901234567890  # beyond 64 bits: read by the stdlib, not orjson


def echo_steps(calls: list[object]):
    async def echo(input, ctx):
        calls.append(input.body)
        return {"status": 200, "body": {"body": input.body}}

    return [step({"name": "echo", "triggers": [http("POST", "/echo")]}, echo)]


@pytest.fixture
async def client_calls():
    calls: list[object] = []
    async with app_client(echo_steps(calls)) as client:
        yield client, calls


async def test_big_ints_in_a_body_reach_the_handler_and_come_back_exact(client_calls) -> None:
    client, calls = client_calls
    # Given a JSON body with an int beyond 64 bits, next to ordinary values
    raw = b'{"big": %d, "neg": -%d, "small": 1, "f": 1.5}' % (BIG, BIG)
    # When it is posted
    response = await client.post("/echo", content=raw, headers={"content-type": "application/json"})
    # Then the handler saw the exact ints and the response carries them exactly
    assert response.status_code == 200
    assert calls == [{"big": BIG, "neg": -BIG, "small": 1, "f": 1.5}]
    assert b'"big":%d' % BIG in response.content


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
@pytest.mark.parametrize("with_big_int", [False, True], ids=["plain", "with-big-int"])
@pytest.mark.parametrize("content_type", ["application/json", None], ids=["json", "no-content-type"])
async def test_nan_and_infinity_are_a_400_that_never_reaches_the_handler(
    client_calls, constant: bytes, with_big_int: bool, content_type: str | None
) -> None:
    client, calls = client_calls
    # Given a body holding a non-JSON constant (with a big int, which used to switch parsers)
    raw = b'{"x": %s%s}' % (constant, b', "big": %d' % BIG if with_big_int else b"")
    headers = {"content-type": content_type} if content_type else {}
    # When it is posted
    response = await client.post("/echo", content=raw, headers=headers)
    if content_type is None:
        # Then without a JSON content type it is not JSON: the handler gets the text, never a float NaN
        assert response.status_code == 200
        assert calls == [raw.decode()]
        return
    # Then it is rejected as malformed JSON, and the handler never ran
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "Malformed JSON body"
    assert calls == []


@pytest.mark.parametrize("depth", [201, 900, 5000, 100_000])
@pytest.mark.parametrize("with_big_int", [False, True], ids=["plain", "with-big-int"])
async def test_deep_nesting_is_a_400_that_never_reaches_the_handler(
    client_calls, depth: int, with_big_int: bool
) -> None:
    client, calls = client_calls
    # Given a body nested deeper than the 200 levels a state value may have
    inner = b"%d" % BIG if with_big_int else b"1"
    raw = b"[" * depth + inner + b"]" * depth
    # When it is posted as JSON
    response = await client.post("/echo", content=raw, headers={"content-type": "application/json"})
    # Then it is a 400 naming the problem (never a 500), and the handler never ran
    assert response.status_code == 400, response.text
    assert "nested deeper than 200" in response.json()["detail"]
    assert calls == []
    # And the app keeps serving
    ok = await client.post("/echo", json={"n": 1})
    assert ok.status_code == 200


async def test_nesting_within_the_limit_is_accepted(client_calls) -> None:
    client, calls = client_calls
    raw = b"[" * 200 + b"%d" % BIG + b"]" * 200
    response = await client.post("/echo", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 200
    value = calls[0]
    for _ in range(199):
        value = value[0]
    assert value == [BIG]
