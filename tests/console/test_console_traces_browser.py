"""The console's Traces view in a real headless Chromium: an app and its console served by uvicorn on a
loopback port (in a thread of the test process, whose real OpenTelemetry tracer provider feeds the
recent-traces buffer), flows recorded with the SDK's tracer under the runtime's span names.

Set ``MOTIA_CONSOLE_TRACES_SCREENSHOT=docs/console-traces.png`` to keep the screenshot the docs show.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import uvicorn
from opentelemetry.sdk.trace import TracerProvider
from starlette.types import ASGIApp

from motia.console.routes import console_routes
from motia.runtime import traces as registry
from motia.runtime.app import MotiaApp
from motia.runtime.http import build_asgi
from motia.runtime.telemetry.recent import add_recent_traces
from motia.runtime.traces import TraceLimits
from motia.state.backends.types import NewDelivery
from tests.console._traces import MS, record_flow
from tests.e2e.motia_proc import poll

pytestmark = pytest.mark.slow

TOKEN = "browser-traces-token"
TIMEOUT_MS = 10_000


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the test runner keeps its own signal handlers
        yield


@contextlib.contextmanager
def served_in_thread(asgi: ASGIApp) -> Iterator[tuple[str, asyncio.AbstractEventLoop]]:
    """Serve ``asgi`` (its lifespan starts and stops the app) on a free loopback port from a thread of its
    own, as the browser is driven synchronously from this one; yield the base URL and the server's loop."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(asgi, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=2)
    server = _Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(sockets=[sock]),), daemon=True)
    thread.start()
    try:
        poll(lambda: server.started or not thread.is_alive(), timeout=10, what="uvicorn serving")
        assert server.started, "uvicorn stopped before it started"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", loop
    finally:
        server.should_exit = True
        thread.join(20)
        loop.close()
        sock.close()


def test_traces_view_lists_and_shows_a_trace_as_a_tree(browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    assert registry.installed() is None
    provider = TracerProvider()
    add_recent_traces(provider, TraceLimits(max_traces=20))
    app = MotiaApp([], state=f"sqlite:///{tmp_path / 'state.db'}", cron=False)
    asgi = build_asgi(app, extra_routes=console_routes(app, token=TOKEN))
    try:
        with served_in_thread(asgi) as (url, loop):
            # Given two flows, the second failing in its queue step, whose message became a dead letter
            now = 1_780_000_000_000 * MS
            record_flow(provider, order="o-1", start=now)
            failed = record_flow(provider, order="o-2", fail=True, start=now + 100 * MS)
            payload = orjson.dumps({"topic": "orders.placed", "data": {"order": "o-2"}, "trace_id": failed})
            dead = NewDelivery("dl-1", "bill-order", "queue", payload)
            kept = app.state.backend.add_dead_letters([dead], error="ValueError: card declined for order o-2")
            assert asyncio.run_coroutine_threadsafe(kept, loop).result(10) == 1

            # When the console's Traces view is opened
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{url}/__motia?token={TOKEN}")
            expect(page.locator("body")).to_have_attribute("data-ready", "true")
            expect(page.locator("#traces-count")).to_have_text("2")
            page.click("#open-traces")

            # Then both traces are listed, newest first, the failed one marked
            rows = page.locator("#traces tr[data-trace]")
            expect(rows).to_have_count(2)
            expect(rows.first).to_have_attribute("data-trace", failed)
            expect(rows.first).to_contain_text("POST /orders")
            expect(rows.first.locator(".error-badge")).to_have_text("error")
            expect(rows.nth(1).locator(".error-badge")).to_have_count(0)
            expect(rows.first.locator("td.num").first).to_have_text("30.0 ms")

            # A click shows the trace as a tree: steps, state operations, the message, log lines, the error
            rows.first.click()
            expect(page.locator("#trace-view")).to_be_visible()
            expect(page.locator("#trace-title")).to_contain_text("POST /orders")
            spans = page.locator("#trace-spans > li.span")
            expect(spans).to_have_count(6)
            names = [spans.nth(i).locator(".span-name").inner_text() for i in range(6)]
            assert names == [
                "POST /orders",
                "step create-order",
                "state.set",
                "enqueue orders.placed",
                "step bill-order",
                "state.get",
            ]
            depths = [spans.nth(i).get_attribute("data-depth") for i in range(6)]
            assert depths == ["0", "1", "2", "2", "3", "4"]
            create = spans.nth(1)
            expect(create.locator(".span-detail")).to_have_text("http · POST /orders · → 202")
            expect(create.locator('.span-event[data-event="log"]')).to_contain_text("order o-2 placed")
            expect(spans.nth(2).locator(".span-detail")).to_have_text("orders / o-2")
            bill = spans.nth(4)
            expect(bill).to_have_class("span cat-step failed")
            expect(bill.locator('.span-event[data-event="log"]')).to_contain_text("card declined")
            expect(bill.locator('.span-event[data-event="exception"]')).to_contain_text(
                "ValueError: card declined for order o-2"
            )
            # the bar of the queue step starts two thirds in (20 of 30 ms) and fills a third
            left = bill.locator(".bar").evaluate("bar => bar.style.left")
            assert left.startswith("66.6")
            attributes = bill.locator("table.attributes")
            expect(attributes).to_be_hidden()
            bill.locator(".span-head").click()
            expect(attributes).to_be_visible()
            expect(attributes).to_contain_text("motia.delivery.id")
            expect(attributes).to_contain_text("d-1")
            assert page.evaluate("location.hash") == f"#trace={failed}"

            # An unknown trace id typed in says why it is not there
            page.click("#trace-back")
            expect(rows).to_have_count(2)
            page.fill("#trace-id", "ab" * 16)
            page.press("#trace-id", "Enter")
            expect(page.locator("#trace-error")).to_contain_text(f"no trace {'ab' * 16} among the last 20 traces")

            # A trace recorded while the list is open appears without a reload
            page.click("#open-traces")
            record_flow(provider, order="o-3", start=now + 200 * MS)
            expect(rows).to_have_count(3)

            # The trace id of a dead letter leads to its trace
            page.click("#open-dead")
            page.click('#dead-letters tr[data-id="dl-1"]')
            link = page.locator('[data-testid="dead-trace"] a.trace-link')
            expect(link).to_have_text(failed)
            assert link.get_attribute("href") == f"/__motia/traces/{failed}"
            link.click()
            expect(page.locator("#trace-view")).to_be_visible()
            expect(page.locator("#dead-view")).to_be_hidden()
            expect(spans).to_have_count(6)

            # A live event carrying a trace id links to its trace
            page.click("#trace-back")
            app.state_events.publish(
                {"event_type": "updated", "group_id": "orders", "item_id": "o-2", "new_value": 1, "trace_id": failed}
            )
            feed_link = page.locator('#events li[data-scope="orders"] a.trace-link')
            expect(feed_link).to_have_text(failed)
            feed_link.click()
            expect(page.locator("#trace-view")).to_be_visible()
            expect(page.locator("#editor")).to_be_hidden()  # the link opens the trace, not the key
            expect(spans).to_have_count(6)

            # The screenshot of the docs: the failed trace, its queue step's attributes open
            bill.locator(".span-head").click()
            page.locator("#toast").evaluate("toast => { toast.hidden = true; }")
            shot = tmp_path / "console-traces.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000
            keep = os.environ.get("MOTIA_CONSOLE_TRACES_SCREENSHOT")
            if keep:
                shutil.copyfile(shot, Path(keep))

            # The address of a trace (from a log line, an error response) opens it in a new page
            other = browser.new_page()
            other.goto(f"{url}/__motia/traces/{failed}")
            expect(other.locator("#trace-view")).to_be_visible()
            expect(other.locator("#trace-spans > li.span")).to_have_count(6)
            missing = other.goto(f"{url}/__motia/traces/{'cd' * 16}")
            assert missing is not None and missing.status == 404
            expect(other.locator('[data-testid="trace-missing"]')).to_contain_text("among the last 20 traces")
            other.close()

            # With tracing off (the provider shut down), the view says how to turn it on
            provider.shutdown()
            page.goto(f"{url}/__motia/?again=1#traces")  # a new load, not a jump within the page
            expect(page.locator("#traces-view")).to_be_visible()
            expect(page.locator("#traces-off")).to_contain_text("Tracing is off in this process")
            expect(page.locator("#traces-off")).to_contain_text("OTEL_TRACES_EXPORTER")
            expect(page.locator("#traces-count")).to_have_text("off")
            expect(page.locator("#traces-table")).to_be_hidden()
            assert errors == []
            page.close()
    finally:
        provider.shutdown()
    assert registry.installed() is None
