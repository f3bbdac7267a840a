"""Motia's own browser stream client (``@motiadev/stream-client-browser`` 0.17.x), unchanged, in a headless
Chromium against a real ``motia run`` (SPEC 10.3).

The client's ``dist/index.js`` is an ES module whose only bare imports (``@motiadev/stream-client``,
``uuid``) an import map resolves, so the page (``stream_client_node/browser.html``) loads the installed
files as they are, no bundler. Playwright's ``page.route`` serves the page and those files at a path of the
server's own origin, from the gitignored ``node_modules`` that ``npm ci`` installs: nothing from a CDN.
"""

from __future__ import annotations

import json
import mimetypes
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest

from tests.compat.node_client import NODE_DIR, ensure_installed
from tests.compat.test_stream_client_node import BURST, GROUP, ITEM, STEPS, todo
from tests.console.conftest import browser  # noqa: F401 - the fixture (Debian's Chromium through Playwright)

pytestmark = pytest.mark.slow

#: The path, on the server's origin, where the route serves the page and the node_modules files.
PREFIX = "/__motia_stream_client_browser/"
PAGE = NODE_DIR / "browser.html"
MODULES = (NODE_DIR / "node_modules").resolve()


@pytest.fixture(scope="module")
def installed() -> None:
    ensure_installed()


def serve_offline(route: Any) -> None:
    """The page, or a file of the installed node_modules; 404 for anything else (no path leaves them)."""
    path = urlsplit(route.request.url).path[len(PREFIX) :]
    if path == "index.html":
        route.fulfill(status=200, content_type="text/html", body=PAGE.read_text())
        return
    target = (NODE_DIR / path).resolve()
    if not target.is_relative_to(MODULES) or not target.is_file():
        route.fulfill(status=404, body=f"not served: {path}")
        return
    kind = "text/javascript" if target.suffix in (".js", ".mjs") else mimetypes.guess_type(target.name)[0]
    route.fulfill(status=200, content_type=kind or "application/octet-stream", body=target.read_bytes())


class BrowserClient:
    """The page's record of what the client saw (``window.__lines``), read as it grows."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.lines: list[dict[str, Any]] = []
        self._seen = 0

    def expect(self, what: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """The next line matching ``predicate``, waiting (bounded) for the page to record more lines."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        deadline = time.monotonic() + timeout
        while True:
            for line in self.page.evaluate("n => window.__lines.slice(n)", self._seen):
                self._seen += 1
                self.lines.append(line)
                if predicate(line):
                    return line
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise PlaywrightTimeout("deadline")
                self.page.wait_for_function("n => window.__lines.length > n", arg=self._seen, timeout=left * 1000)
            except PlaywrightTimeout:
                pytest.fail(f"the browser client did not see {what} within {timeout}s; it saw:\n{self.transcript()}")

    def state(self, kind: str, expected: Any, timeout: float = 10.0) -> dict[str, Any]:
        return self.expect(
            f"{kind} state {expected!r}", lambda line: line["kind"] == kind and line["state"] == expected, timeout
        )

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["kind"] == kind]

    def raw(self) -> list[dict[str, Any]]:
        return [line["message"] for line in self.lines if line["kind"] == "raw"]

    def transcript(self) -> str:
        return "\n".join(json.dumps(line) for line in self.lines[-60:])


def test_the_motia_browser_client_sees_sync_every_change_and_events_once(installed, browser, run_motia, tmp_path):  # noqa: F811
    server = run_motia(STEPS, state=f"sqlite:///{tmp_path / 'state.db'}").wait_ready()
    api = httpx.Client(base_url=server.url, timeout=10)

    def ok(response: httpx.Response) -> Any:
        assert response.status_code < 300, response.text
        return response.json()

    # Given a group holding two items before the page opens
    ok(api.put(f"/todo/{GROUP}/t1", json={"title": "write tests"}))
    ok(api.put(f"/todo/{GROUP}/t0", json={"title": "read the client", "done": True}))
    t0, t1 = todo("t0", "read the client", done=True), todo("t1", "write tests")

    # When a page loads Motia's browser client (served from node_modules) and subscribes to the group and item
    # (a document fulfilled by the route has no address, so Chromium counts it as public and blocks its socket
    # to 127.0.0.1 by Local Network Access: the test grants that permission, as a user would be asked to)
    browser.grant_permissions(["local-network-access"], origin=server.url)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.route(f"{server.url}{PREFIX}**", serve_offline)
    query = {"ws": server.url.replace("http://", "ws://") + "/", "stream": "todo", "group": GROUP, "item": ITEM}
    page.goto(f"{server.url}{PREFIX}index.html?{urlencode({**query, 'events': 'nudge,done'})}")
    page.wait_for_selector("body[data-ready='true']", state="attached", timeout=10_000)
    page.evaluate("window.__notReloaded = true")
    client = BrowserClient(page)

    # Then each subscription gets its initial sync: the group's items in id order, and the item
    seen: set[str] = set()

    def synced(line: dict[str, Any]) -> bool:
        expected = {"group": [t0, t1], "item": t1}
        if line["kind"] in expected and line["state"] == expected[line["kind"]]:
            seen.add(line["kind"])
        return seen == {"group", "item"}

    client.expect("the group and the item sync", synced)

    # A create reaches the group
    ok(api.put(f"/todo/{GROUP}/t2", json={"title": "ship"}))
    t2 = todo("t2", "ship")
    client.state("group", [t0, t1, t2])

    # Updates (by set, then by operations) reach both subscriptions
    ok(api.put(f"/todo/{GROUP}/t1", json={"title": "write more tests"}))
    client.state("item", todo("t1", "write more tests"))
    client.state("group", [t0, todo("t1", "write more tests"), t2])
    ok(api.patch(f"/todo/{GROUP}/t1", json=[{"type": "set", "path": "done", "value": True}]))
    client.state("item", todo("t1", "write more tests", done=True))
    client.state("group", [t0, todo("t1", "write more tests", done=True), t2])

    # A custom event to the group reaches the group's listener; one to the item reaches both listeners
    ok(api.post(f"/todo/{GROUP}/events", json={"type": "nudge", "data": {"to": "group"}}))
    client.expect(
        "the group event", lambda line: line == {"kind": "group-event", "type": "nudge", "data": {"to": "group"}}
    )
    ok(api.post(f"/todo/{GROUP}/events", json={"type": "nudge", "data": {"to": "t1"}, "id": ITEM}))
    client.expect("the item event", lambda line: line == {"kind": "item-event", "type": "nudge", "data": {"to": "t1"}})
    client.expect(
        "the item event at the group",
        lambda line: line == {"kind": "group-event", "type": "nudge", "data": {"to": "t1"}},
    )

    # Changes made back to back all reach the item subscription, in order
    ok(api.post(f"/todo/{GROUP}/{ITEM}/burst", json={"count": BURST}))
    for n in range(BURST):
        client.state("item", todo("t1", f"burst {n}"))
    client.state("group", [t0, todo("t1", f"burst {BURST - 1}"), t2])

    # Deletes reach the group, and the item subscription sees its item gone
    ok(api.delete(f"/todo/{GROUP}/t2"))
    client.state("group", [t0, todo("t1", f"burst {BURST - 1}")])
    ok(api.delete(f"/todo/{GROUP}/t1"))
    client.state("item", None)
    client.state("group", [t0])

    # A last event marks the end: everything sent before it on the socket has arrived
    ok(api.post(f"/todo/{GROUP}/events", json={"type": "done", "data": None}))
    client.expect("the closing event", lambda line: line == {"kind": "group-event", "type": "done", "data": None})

    # All of it in one page life, on one socket, with every file from this machine
    assert page.evaluate("window.__notReloaded") is True
    assert errors == [] and client.of_kind("failed") == [], (errors, client.transcript())
    assert client.of_kind("open") == [{"kind": "open"}], client.transcript()
    assert client.of_kind("close") == [] and client.of_kind("error") == [], client.transcript()
    assert all(url.startswith(f"{server.url}{PREFIX}") for url in requested), requested
    loaded = {urlsplit(url).path[len(PREFIX) :] for url in requested}
    assert "node_modules/@motiadev/stream-client-browser/dist/index.js" in loaded, loaded

    raw = client.raw()
    kinds = [(message["event"]["type"], message.get("id")) for message in raw]
    # exactly one message per change (and per sync) on the socket: nothing arrived twice, nothing extra
    assert kinds.count(("sync", None)) == 1 and kinds.count(("sync", ITEM)) == 1, kinds
    assert sorted(kinds[2:], key=str) == sorted(
        [("create", "t2"), ("update", "t1"), ("update", "t1"), ("event", None), ("event", ITEM)]
        + [("update", "t1")] * BURST
        + [("delete", "t2"), ("delete", "t1"), ("event", None)],
        key=str,
    ), kinds
    for message in raw:
        assert message["type"] == "stream" and message["streamName"] == "todo" and message["groupId"] == GROUP
    timestamps = [message["timestamp"] for message in raw]
    assert all(a < b for a, b in zip(timestamps, timestamps[1:], strict=False)), timestamps
    # the item listener fired once per message for the item (its sync, its updates, its delete), no more
    item_messages = [k for k in kinds if k[1] == ITEM and k[0] != "event"]
    assert len(client.of_kind("item")) == len(item_messages), (kinds, client.of_kind("item"))

    # Closing the client sends its leave frames and closes the socket
    page.evaluate("window.__closeClient()")
    client.expect("the socket closing", lambda line: line["kind"] == "close")
    page.close()
    browser.clear_permissions()
    api.close()
    assert server.stop() == 0
