"""The console's Traces view API over real HTTP (uvicorn on a loopback port) with a real OpenTelemetry
tracer provider and the recent-traces buffer: the list, one trace as a tree, the links to a trace, the
answers when a trace is unknown or tracing is off, and the console never importing OpenTelemetry itself."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider

from motia import http, step
from motia.console.routes import console_routes
from motia.runtime import traces as registry
from motia.runtime.app import MotiaApp
from motia.runtime.http import build_asgi
from motia.runtime.telemetry.recent import RecentTraces, add_recent_traces
from motia.runtime.traces import TraceLimits
from tests.console._traces import MS, record_flow
from tests.e2e.motia_proc import REPO
from tests.streams.serving import serving

TOKEN = "traces-token"


async def hello(request: Any, ctx: Any) -> dict[str, Any]:
    return {"status": 200, "body": {"ok": True}}


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    """A real tracer provider whose recent traces the console of this process shows (3 traces at most)."""
    assert registry.installed() is None
    provider = TracerProvider()
    add_recent_traces(provider, TraceLimits(max_traces=3, max_spans=50))
    try:
        yield provider
    finally:
        provider.shutdown()


@pytest.fixture
async def console() -> AsyncIterator[httpx.AsyncClient]:
    async with console_client() as client:
        yield client


@contextlib.asynccontextmanager
async def console_client(
    *, token: str | None = None, traces: RecentTraces | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An app with its console served by uvicorn, and an httpx client on it (``token``: the console's;
    ``traces``: a buffer given to the console instead of the one installed)."""
    app = MotiaApp([step({"name": "hello", "triggers": [http("GET", "/hello")]}, hello)], state="memory://", cron=False)
    asgi = build_asgi(app, extra_routes=console_routes(app, token=token, traces=traces))
    async with serving(app, asgi=asgi) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        yield client


async def test_lists_the_recent_traces_newest_first(provider: TracerProvider, console: httpx.AsyncClient) -> None:
    # Given two flows, the second failing in its queue step
    ok = record_flow(provider, order="o-1", start=1_000_000 * MS)
    failed = record_flow(provider, order="o-2", fail=True, start=1_000_100 * MS)

    response = await console.get("/__motia/api/traces")
    assert response.status_code == 200
    body = response.json()
    assert body["enabled"] is True and body["limit"] == 100
    assert body["kept"] == {"max_traces": 3, "max_spans": 50, "max_total_spans": 10_000}
    assert body["traces"] == [
        {
            "trace_id": failed,
            "root": "POST /orders",
            "start": 1_000_100.0 / 1000,
            "duration_ms": 30.0,
            "span_count": 6,
            "dropped": 0,
            "error": True,
        },
        {
            "trace_id": ok,
            "root": "POST /orders",
            "start": 1_000_000.0 / 1000,
            "duration_ms": 30.0,
            "span_count": 6,
            "dropped": 0,
            "error": False,
        },
    ]
    limited = await console.get("/__motia/api/traces", params={"limit": 1})
    assert [t["trace_id"] for t in limited.json()["traces"]] == [failed]
    info = await console.get("/__motia/api/info")
    assert info.json()["traces"] == {"enabled": True}


async def test_one_trace_is_a_tree_of_steps_state_operations_messages_and_logs(
    provider: TracerProvider, console: httpx.AsyncClient
) -> None:
    trace_id = record_flow(provider, order="o-9", fail=True, start=2_000_000 * MS)

    response = await console.get(f"/__motia/api/traces/{trace_id.upper()}")  # ids are read in any case
    assert response.status_code == 200
    body = response.json()
    assert (body["trace_id"], body["root"], body["span_count"], body["error"]) == (trace_id, "POST /orders", 6, True)
    spans = body["spans"]
    assert [(s["name"], s["category"], s["depth"], s["offset_ms"], s["duration_ms"]) for s in spans] == [
        ("POST /orders", "http", 0, 0.0, 9.0),
        ("step create-order", "step", 1, 1.0, 7.0),
        ("state.set", "state", 2, 3.0, 2.0),
        ("enqueue orders.placed", "enqueue", 2, 6.0, 1.0),
        ("step bill-order", "step", 3, 20.0, 10.0),
        ("state.get", "state", 4, 21.0, 1.0),
    ]
    server, create, write, enqueue, bill, read = spans
    assert server["parent_id"] is None and create["parent_id"] == server["span_id"]
    assert bill["parent_id"] == enqueue["span_id"] and not any(s["orphan"] for s in spans)
    assert write["attributes"] == {"motia.state.scope": "orders", "motia.state.key": "o-9"}
    assert enqueue["kind"] == "producer" and enqueue["attributes"]["messaging.destination.name"] == "orders.placed"
    assert create["events"] == [
        {"name": "log", "offset_ms": 2.0, "attributes": {"log.severity": "info", "log.message": "order o-9 placed"}}
    ]
    assert (bill["error"], bill["status"], bill["status_message"]) == (
        True,
        "error",
        "ValueError: card declined for order o-9",
    )
    log, exception = bill["events"]
    assert log["attributes"]["log.message"] == "card declined" and log["offset_ms"] == 23.0
    assert exception["name"] == "exception" and exception["attributes"]["exception.type"] == "ValueError"
    assert not read["error"] and not create["error"]


async def test_an_unknown_or_evicted_trace_is_a_clear_404(provider: TracerProvider, console: httpx.AsyncClient) -> None:
    first = record_flow(provider, order="o-1")
    for number in range(3):  # the buffer keeps 3: the first is evicted
        record_flow(provider, order=f"o-{number + 2}")

    for trace_id in (first, "ab" * 16):
        response = await console.get(f"/__motia/api/traces/{trace_id}")
        assert response.status_code == 404
        assert response.json() == {
            "error": f"no trace {trace_id} among the last 3 traces this process keeps: it was evicted by newer ones, "
            "ran in another process or instance, or was not sampled",
            "trace_id": trace_id,
            "enabled": True,
        }
        page = await console.get(f"/__motia/traces/{trace_id}")
        assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
        assert f"no trace {trace_id} among the last 3 traces" in page.text


@pytest.mark.parametrize("bad", ["xyz", "12345", "0" * 33, "g" * 32])
async def test_a_malformed_trace_id_is_a_client_error(
    provider: TracerProvider, console: httpx.AsyncClient, bad: str
) -> None:
    response = await console.get(f"/__motia/api/traces/{bad}")
    assert response.status_code == 400
    assert response.json()["error"] == f"a trace id is 32 hexadecimal digits (16 without tracing), not {bad!r}"


@pytest.mark.parametrize(("params", "message"), [({"limit": "0"}, "between 1 and 10000"), ({"limit": "x"}, "integer")])
async def test_a_bad_limit_is_a_client_error(
    provider: TracerProvider, console: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    response = await console.get("/__motia/api/traces", params=params)
    assert response.status_code == 400 and message in response.json()["error"]


async def test_a_trace_address_leads_to_the_console_showing_it(
    provider: TracerProvider, console: httpx.AsyncClient
) -> None:
    # A trace id in a log line or an error response becomes /__motia/traces/<id>
    trace_id = record_flow(provider)
    response = await console.get(f"/__motia/traces/{trace_id}")
    assert response.status_code == 303 and response.headers["location"] == f"/__motia/#trace={trace_id}"


async def test_tracing_off_says_how_to_turn_it_on(console: httpx.AsyncClient) -> None:
    assert registry.installed() is None
    listed = await console.get("/__motia/api/traces")
    assert listed.status_code == 200
    body = listed.json()
    assert (body["enabled"], body["traces"]) == (False, [])
    assert "pymotia[otel]" in body["hint"] and "OTEL_TRACES_EXPORTER" in body["hint"]
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    one = await console.get(f"/__motia/api/traces/{trace_id}")
    assert one.status_code == 404 and one.json()["enabled"] is False
    assert one.json()["error"] == f"no trace {trace_id}: {body['hint']}"
    page = await console.get(f"/__motia/traces/{trace_id}")
    assert page.status_code == 404 and "Tracing is off in this process" in page.text
    assert (await console.get("/__motia/api/info")).json()["traces"] == {"enabled": False}


async def test_the_view_follows_a_buffer_installed_after_the_console_was_built(console: httpx.AsyncClient) -> None:
    assert (await console.get("/__motia/api/traces")).json()["enabled"] is False
    provider = TracerProvider()
    add_recent_traces(provider)
    try:
        trace_id = record_flow(provider)
        listed = (await console.get("/__motia/api/traces")).json()
        assert listed["enabled"] is True and [t["trace_id"] for t in listed["traces"]] == [trace_id]
    finally:
        provider.shutdown()
    assert (await console.get("/__motia/api/traces")).json()["enabled"] is False


async def test_a_buffer_handed_to_the_console_is_the_one_it_shows() -> None:
    # Given a provider whose buffer is handed to the console, not installed for the process
    provider = TracerProvider()
    buffer = RecentTraces(TraceLimits(max_traces=5))
    provider.add_span_processor(buffer)
    try:
        trace_id = record_flow(provider)
        assert registry.installed() is None
        async with console_client(traces=buffer) as client:
            listed = (await client.get("/__motia/api/traces")).json()
            assert listed["kept"]["max_traces"] == 5 and [t["trace_id"] for t in listed["traces"]] == [trace_id]
            assert (await client.get(f"/__motia/api/traces/{trace_id}")).json()["span_count"] == 6
    finally:
        provider.shutdown()


async def test_needs_the_console_token(provider: TracerProvider) -> None:
    trace_id = record_flow(provider)
    async with console_client(token=TOKEN) as client:
        for path in ("/__motia/api/traces", f"/__motia/api/traces/{trace_id}"):
            assert (await client.get(path)).status_code == 401
            assert (await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 200
        page = await client.get(f"/__motia/traces/{trace_id}")
        assert page.status_code == 401 and "needs its token" in page.text
        # Opening the link with ?token= signs in and comes back to the trace
        login = await client.get(f"/__motia/traces/{trace_id}", params={"token": TOKEN})
        assert login.status_code == 303 and login.headers["location"] == f"/__motia/traces/{trace_id}"
        assert client.cookies.get("motia_console_token") == TOKEN
        signed_in = await client.get(f"/__motia/traces/{trace_id}")
        assert signed_in.status_code == 303 and signed_in.headers["location"] == f"/__motia/#trace={trace_id}"
        wrong = await client.get(f"/__motia/traces/{trace_id}", params={"token": "nope"})
        assert wrong.status_code == 401
        # Whatever the address holds, the way back is the same path, quoted (never a header of its own)
        odd = await client.get("/__motia/traces/a%0d%0aSet-Cookie:%20x=1", params={"token": TOKEN})
        assert odd.status_code == 303 and odd.headers["location"] == "/__motia/traces/a%0D%0ASet-Cookie%3A%20x%3D1"
        assert (await client.get(odd.headers["location"])).status_code == 400


async def test_the_page_loads_the_traces_script(console: httpx.AsyncClient) -> None:
    page = await console.get("/__motia/")
    assert b'src="/__motia/static/traces.js"' in page.content
    script = await console.get("/__motia/static/traces.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert b"function openTrace" in script.content


def test_the_console_imports_no_opentelemetry_when_tracing_is_off() -> None:
    # Given a process that builds the console and answers the Traces view's requests, without tracing
    program = textwrap.dedent(
        """
        import asyncio, sys
        import httpx
        from motia.console.routes import console_routes
        from motia.runtime.app import MotiaApp
        from motia.runtime.http import build_asgi

        async def main():
            app = MotiaApp([], state='memory://', cron=False)
            asgi = build_asgi(app, extra_routes=console_routes(app))
            transport = httpx.ASGITransport(app=asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                listed = await client.get("/__motia/api/traces")
                one = await client.get("/__motia/api/traces/" + "a" * 32)
                page = await client.get("/__motia/")
            print(listed.json()["enabled"], one.status_code, page.status_code)
            print(sorted(name for name in sys.modules if name.split(".")[0] == "opentelemetry"))
            await app.state.aclose()

        asyncio.run(main())
        """
    )
    result = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    # Then it answered, and no OpenTelemetry module was loaded
    assert result.stdout.splitlines() == ["False 404 200", "[]"]
