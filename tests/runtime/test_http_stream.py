"""Streaming HTTP responses (``input.response``, motia-py 1.0's ``MotiaHttpArgs``), served by uvicorn on a
real socket and read by an httpx client as the handler writes: the first event arrives while the handler
still waits on something only the test can give it."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from motia import ClientDisconnected, HttpResponseError, MotiaHttpArgs, MotiaHttpResponse, http, step
from motia.runtime.app import MotiaApp
from motia.runtime.http_stream import HIGH_WATER
from motia.steps.definition import Step
from motia.testing import api_request
from tests.polling import eventually
from tests.streams.serving import serving

SSE = {"content-type": "text/event-stream", "cache-control": "no-cache", "x-custom": "yes"}


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class Gate:
    """What a handler waits on, opened by the test (an asyncio and a threading event: async and def handlers)."""

    def __init__(self) -> None:
        self.loop_event = asyncio.Event()
        self.thread_event = threading.Event()
        self.finished = False

    def open(self) -> None:
        self.loop_event.set()
        self.thread_event.set()


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def steps(gate: Gate) -> list[Step]:
    async def async_sse(args: MotiaHttpArgs[Any]) -> None:
        response = args.response
        await response.status(201)
        await response.headers(SSE)
        response.writer.stream.write(sse("first", {"n": 1}))
        await gate.loop_event.wait()
        response.writer.stream.write(sse("second", {"n": 2}))
        response.close()
        gate.finished = True

    def sync_sse(args, ctx):  # a `def` handler: runs in a pool thread, its writes cross to the loop
        args.response.status(202)  # not awaited: acts at once
        args.response.headers(SSE)
        for i in range(3):
            args.response.writer.stream.write(sse("tick", {"i": i}))
        if not gate.thread_event.wait(10):
            raise TimeoutError("the test never opened the gate")
        args.response.stream.write("event: last\ndata: {}\n\n")  # text is sent as UTF-8
        gate.finished = True

    async def watches_the_client(args, ctx):
        await args.response.headers(SSE)
        args.response.writer.stream.write(sse("hello", {}))
        await asyncio.wait_for(args.response.wait_disconnected(), 10)
        try:
            args.response.writer.stream.write(sse("anyone", {}))
        except ClientDisconnected as exc:
            await ctx.state.set("sse", "outcome", {"error": type(exc).__name__, "closed": args.response.disconnected})

    async def waits_before_writing(args, ctx):
        await args.response.headers(SSE)
        waiter = asyncio.ensure_future(args.response.wait_disconnected())
        gate.loop_event.set()  # tells the test the handler is waiting
        await asyncio.wait_for(waiter, 10)
        await ctx.state.set("sse", "early", {"disconnected": args.response.disconnected})

    async def fails_mid_stream(args, ctx):
        await args.response.headers({"content-type": "text/plain"})
        args.response.writer.stream.write(b"partial ")
        raise RuntimeError("boom after the first chunk")

    def def_fails_mid_stream(args, ctx):
        args.response.headers({"content-type": "text/plain"})
        args.response.writer.stream.write(b"partial ")
        raise RuntimeError("boom after the first chunk")

    async def fails_before_writing(args, ctx):
        await args.response.status(200)
        raise RuntimeError("boom before any chunk")

    async def headers_then_returns(args, ctx):
        await args.response.headers({"x-from-stream": "1"})
        return {"status": 200, "body": {"returned": True}, "headers": {"x-from-return": "1"}}

    async def writes_then_returns(args, ctx):
        args.response.writer.stream.write(b"streamed")
        await args.response.status(418)  # too late: logged, ignored
        return {"status": 200, "body": {"ignored": True}}

    async def echo_body(args, ctx):
        chunks = [chunk for chunk in args.request.request_body.stream]
        async_chunks = [chunk async for chunk in args.request_body.stream]
        await args.response.headers({"content-type": "application/octet-stream"})
        args.response.writer.stream.end(b"|".join([*chunks, *async_chunks]))

    async def tagging(request, ctx, next):
        await ctx.state.set("mw", "before", True)
        result = await next()
        await ctx.state.set("mw", "after", {"result": result})
        return result

    async def with_middleware(args, ctx):
        args.response.writer.stream.write(b"through middleware")

    def step_of(name: str, method: str, path: str, handler: Any, **options: Any) -> Step:
        return step({"name": name, "triggers": [http(method, path, **options)]}, handler)

    return [
        step_of("async-sse", "GET", "/sse/async", async_sse),
        step_of("sync-sse", "GET", "/sse/sync", sync_sse),
        step_of("watcher", "GET", "/sse/watch", watches_the_client),
        step_of("early", "GET", "/sse/early", waits_before_writing),
        step_of("fails-mid", "GET", "/fails/mid", fails_mid_stream),
        step_of("def-fails-mid", "GET", "/fails/def-mid", def_fails_mid_stream),
        step_of("fails-before", "GET", "/fails/before", fails_before_writing),
        step_of("headers-return", "GET", "/mixed/headers", headers_then_returns),
        step_of("writes-return", "GET", "/mixed/writes", writes_then_returns),
        step_of("echo", "POST", "/echo", echo_body),
        step_of("mw", "GET", "/mw", with_middleware, middleware=[tagging]),
    ]


@pytest.fixture
async def served(steps: list[Step], state_url: str) -> AsyncIterator[tuple[MotiaApp, httpx.AsyncClient]]:
    app = MotiaApp(steps, state=state_url, cron=False, delivery=False, shutdown_timeout=2.0)
    try:
        async with serving(app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield app, client
    finally:
        if app.started:
            await app.shutdown()


async def first_chunk(response: httpx.Response, chunks: AsyncIterator[bytes]) -> bytes:
    return await asyncio.wait_for(anext(chunks), 10)


@pytest.mark.parametrize(
    ("path", "status", "first", "rest"),
    [
        ("/sse/async", 201, sse("first", {"n": 1}), sse("second", {"n": 2})),
        (
            "/sse/sync",
            202,
            sse("tick", {"i": 0}),
            sse("tick", {"i": 1}) + sse("tick", {"i": 2}) + b"event: last\ndata: {}\n\n",
        ),
    ],
    ids=["async", "def"],
)
async def test_the_client_reads_the_first_event_before_the_handler_finishes(served, gate, path, status, first, rest):
    app, client = served
    # Given a handler that writes an event, then waits for the test
    async with client.stream("GET", path) as response:
        # Then the client has the status, the headers and the first event while the handler waits
        assert response.status_code == status
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["x-custom"] == "yes"
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
        assert response.headers["x-trace-id"]
        chunks = response.aiter_raw()
        received = await first_chunk(response, chunks)
        assert received == first
        assert not gate.finished
        # When the test lets it go on
        gate.open()
        async for chunk in chunks:
            received += chunk
    # Then the rest arrives, in order, and the body ends
    assert received == first + rest
    assert gate.finished


async def test_a_client_that_goes_away_is_seen_by_the_handler(served):
    app, client = served
    # Given a streaming handler waiting for its client to leave
    async with client.stream("GET", "/sse/watch") as response:
        assert await first_chunk(response, response.aiter_raw()) == sse("hello", {})
    # When the client closed the connection (leaving the block, the body unread)
    # Then the handler saw it: its next write raised ClientDisconnected
    outcome = await eventually(lambda: app.state.get("sse", "outcome"), what="the handler's outcome")
    assert outcome == {"error": "ClientDisconnected", "closed": True}


async def test_a_client_leaving_before_anything_was_written_is_seen(served, gate):
    app, client = served
    port = client.base_url.port
    # Given a handler that set headers and waits for its client to leave, before writing anything
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /sse/early HTTP/1.1\r\nhost: localhost\r\n\r\n")
    await writer.drain()
    await asyncio.wait_for(gate.loop_event.wait(), 10)
    # When the client closes the connection
    writer.close()
    await writer.wait_closed()
    # Then the handler's wait ended
    outcome = await eventually(lambda: app.state.get("sse", "early"), what="the handler seeing the disconnect")
    assert outcome == {"disconnected": True}


@pytest.mark.parametrize("path", ["/fails/mid", "/fails/def-mid"], ids=["async", "def"])
async def test_an_exception_mid_stream_ends_the_body_and_is_logged(served, caplog, path):
    app, client = served
    caplog.set_level(logging.ERROR)
    # Given a handler that raises after its first chunk
    response = await client.get(path)
    # Then the client got the chunk and a well-ended body (no second response, no broken connection)
    assert (response.status_code, response.content) == (200, b"partial ")
    trace_id = response.headers["x-trace-id"]
    [record] = [r for r in caplog.records if "boom after the first chunk" in r.getMessage()]
    assert record.motia_trace_id == trace_id
    # And the server keeps serving
    assert (await client.get("/fails/before")).status_code == 500


async def test_an_exception_before_any_chunk_answers_500(served):
    app, client = served
    response = await client.get("/fails/before")
    assert response.status_code == 500
    assert response.json() == {"error": "Internal Server Error", "trace_id": response.headers["x-trace-id"]}


async def test_a_returned_response_with_nothing_written_is_the_answer_with_the_headers_set(served):
    app, client = served
    response = await client.get("/mixed/headers")
    assert response.json() == {"returned": True}
    assert (response.headers["x-from-stream"], response.headers["x-from-return"]) == ("1", "1")


async def test_a_response_returned_after_writing_is_ignored_and_late_status_logged(served, caplog):
    app, client = served
    caplog.set_level(logging.WARNING)
    response = await client.get("/mixed/writes")
    # The stream is intact: its status (200, not the late 418) and its body, not the returned one
    assert (response.status_code, response.content) == (200, b"streamed")
    messages = [r.getMessage() for r in caplog.records]
    assert any("status(418) after the first chunk" in m for m in messages), messages
    assert any("the returned one is ignored" in m for m in messages), messages


async def test_the_raw_request_body_is_a_stream_sync_and_async(served):
    app, client = served
    response = await client.post(
        "/echo", content=b"a=1&b=2", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.content == b"a=1&b=2|a=1&b=2"


async def test_middleware_runs_around_a_streaming_handler(served):
    app, client = served
    response = await client.get("/mw")
    assert response.content == b"through middleware"
    assert await app.state.get("mw", "before") is True
    assert await app.state.get("mw", "after") == {"result": None}


async def test_bad_use_is_a_clear_error():
    response = api_request().response
    with pytest.raises(HttpResponseError, match="between 100 and 599"):
        await response.status(99)
    for bad in ({"bad name": "x"}, {"x-ok": "a\r\nx-injected: 1"}, {"x-ok": "caf\u00e9"}, {"": "x"}):
        with pytest.raises(HttpResponseError, match="invalid response header"):
            await response.headers(bad)
    assert response.headers_sent == {}
    with pytest.raises(HttpResponseError, match="bytes or str"):
        response.writer.stream.write({"not": "bytes"})  # type: ignore[arg-type]
    response.close()
    with pytest.raises(HttpResponseError, match="after close"):
        response.write(b"late")
    assert response.chunks == []


async def test_without_a_server_the_response_records_what_is_written():
    # motia.testing: a streaming handler can be unit-tested without serving it
    request = api_request("POST", "/sse", body="x")
    assert isinstance(request, MotiaHttpArgs)
    assert isinstance(request.response, MotiaHttpResponse)
    assert request.response is request.response  # built once
    await request.response.status(201)
    await request.response.headers({"Content-Type": "text/event-stream"})
    request.response.writer.stream.write(b"one")
    request.response.writer.stream.end("two")
    assert request.response.chunks == [b"one", b"two"]
    assert (request.response.status_code, request.response.headers_sent) == (201, {"content-type": "text/event-stream"})
    assert request.response.closed
    assert request["response"] is request.response


async def test_a_def_handler_waits_for_a_stalled_client_instead_of_queueing_without_bound():
    # Given a response whose client takes nothing until the test says so (its send blocks)
    released = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        await released.wait()
        sent.append(message)

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError("unreachable")

    response = MotiaHttpResponse(send, receive, trace_id="t", loop=asyncio.get_running_loop())
    chunk = b"x" * (256 * 1024)
    written = 0

    def handler() -> None:  # a `def` handler's thread writing 8 MiB
        nonlocal written
        for _ in range(32):
            response.write(chunk)
            written += 1

    # When it writes
    thread = asyncio.ensure_future(asyncio.to_thread(handler))
    # Then it is held once just over HIGH_WATER bytes wait in memory, not 8 MiB
    # (the write that passes the mark is counted, and waits: it has not returned)
    held = HIGH_WATER // len(chunk)
    await eventually(
        lambda: written == held and response._queued_bytes == (held + 1) * len(chunk),
        what="the writes up to the high-water mark",
    )
    assert not thread.done()
    assert written == held
    # And when the client takes the bytes, the rest goes through, in full
    released.set()
    await asyncio.wait_for(thread, 10)
    await response.finish()
    body = [m for m in sent if m["type"] == "http.response.body"]
    assert b"".join(m["body"] for m in body) == chunk * 32
    assert body[-1]["more_body"] is False
