"""The console's Streams view end to end: a real ``motia run`` with a declared stream, driven in a real
headless Chromium; changes written through the app's HTTP steps show up without a reload.

Set ``MOTIA_CONSOLE_STREAMS_SCREENSHOT=docs/console-streams.png`` to keep the screenshot the docs show.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.motia_proc import REPO, poll

pytestmark = pytest.mark.slow

TOKEN = "browser-streams-token-5678"
#: A todo stream (todo_stream.py) and HTTP steps writing it through ctx.streams (todo_step.py).
STEPS = Path(__file__).resolve().parent / "stream_steps"
TIMEOUT_MS = 10_000


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_stream_changes_show_up_live_in_the_streams_view(browser, run_motia, tmp_path, store):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    url = "memory://" if store == "memory" else f"sqlite:///{tmp_path / 'state.db'}"

    # Given `motia run` serving a declared stream, with items written through the app before the page opens
    server = run_motia(STEPS, state=url, env={"MOTIA_CONSOLE_TOKEN": TOKEN}).wait_ready()
    app = httpx.Client(base_url=server.url, timeout=10)
    console = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    def put(group: str, item: str, body: dict[str, object]) -> None:
        response = app.put(f"/todo/{group}/{item}", json=body)
        assert response.status_code == 200, response.text

    put("inbox", "t1", {"title": "read SPEC 10"})
    put("inbox", "t2", {"title": "write the view"})
    put("done", "t0", {"title": "install chromium", "done": True})

    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/__motia?token={TOKEN}")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#feed-status")).to_have_text("live")

    # The sidebar lists the stream with its groups; picking it shows the groups, picking one its items
    todo = page.locator('#streams [data-stream="todo"]')
    expect(todo).to_contain_text("2")
    todo.click()
    expect(page.locator("#stream-title")).to_have_text("todo")
    expect(page.locator("#stream-meta")).to_contain_text("schema Todo")
    expect(page.locator("#stream-meta")).to_contain_text("todo_stream.py")
    expect(page.locator("#stream-groups .chip")).to_have_count(2)
    page.click('#stream-groups [data-group="inbox"]')
    rows = page.locator("#stream-items tr")
    expect(rows).to_have_count(2)
    expect(page.locator('#stream-items tr[data-item="t1"]')).to_contain_text('"title":"read SPEC 10"')
    expect(page.locator("#group-seq")).to_have_text("seq 2")
    page.evaluate("window.__notReloaded = true")

    # When the app creates an item, it appears in the group and in the stream's live changes
    put("inbox", "t3", {"title": "watch it live"})
    expect(page.locator('#stream-items tr[data-item="t3"]')).to_contain_text("watch it live")
    expect(rows).to_have_count(3)
    newest = page.locator("#stream-changes li").first
    expect(newest).to_contain_text("create")
    expect(newest).to_contain_text("inbox / t3")

    # An update changes the row in place (its version too), a delete removes it
    put("inbox", "t1", {"title": "read SPEC 10", "done": True})
    t1 = page.locator('#stream-items tr[data-item="t1"]')
    expect(t1).to_contain_text('"done":true')
    expect(t1.locator("td.num")).to_have_text("2")
    assert app.delete("/todo/inbox/t2").status_code == 200
    expect(page.locator('#stream-items tr[data-item="t2"]')).to_have_count(0)
    expect(rows).to_have_count(2)
    expect(page.locator("#stream-changes li").first).to_contain_text("delete")

    # An event sent to the group (stored nowhere) shows in the changes, and the items stay as they are
    assert app.post("/todo/inbox/events", json={"type": "typing", "data": {"user": "ann"}}).status_code == 202
    newest = page.locator("#stream-changes li").first
    expect(newest).to_contain_text("event")
    expect(newest).to_contain_text("typing")
    expect(rows).to_have_count(2)

    # The page's seq is the store's: every change was applied once, in order
    stored = console.get("/__motia/api/streams/items", params={"stream": "todo", "group": "inbox"}).json()
    assert stored["seq"] == 6
    expect(page.locator("#group-seq")).to_have_text("seq 6")
    assert [row.get_attribute("data-item") for row in rows.all()] == [item["id"] for item in stored["items"]]

    # A new group appears among the groups and in the sidebar's count; the live feed shows stream changes too
    put("later", "t9", {"title": "someday"})
    expect(page.locator('#stream-groups [data-group="later"]')).to_have_count(1)
    expect(todo).to_contain_text("3")
    expect(page.locator("#events li").first).to_contain_text("todo · later / t9")

    # Clicking an item shows its JSON
    page.click('#stream-items tr[data-item="t3"]')
    expect(page.locator("#stream-item")).to_contain_text('"title": "watch it live"')
    assert page.evaluate("window.__notReloaded") is True

    # A change in the feed opens its group and item
    page.locator("#events li").first.click()
    expect(page.locator("#group-title")).to_have_text("later")
    expect(page.locator("#stream-item")).to_contain_text("someday")

    # On a shared store, the changes another process makes appear too (it writes p1 in inbox, sends an
    # event and deletes p1: the group ends as it was, its seq four further)
    if store == "sqlite":
        page.click('#stream-groups [data-group="inbox"]')
        expect(page.locator("#group-seq")).to_have_text("seq 6")
        writer = subprocess.run(
            [sys.executable, "-m", "tests.console._stream_writer", url], cwd=REPO, timeout=60, capture_output=True
        )
        assert writer.returncode == 0, writer.stderr
        expect(page.locator("#group-seq")).to_have_text("seq 10")
        changes = page.locator("#stream-changes li")
        expect(changes.first).to_contain_text("delete")
        expect(changes.first).to_contain_text("inbox / p1")
        expect(changes.nth(1)).to_contain_text("ping")
        expect(changes.nth(3)).to_contain_text("from another process")
        expect(rows).to_have_count(2)
        assert page.evaluate("window.__notReloaded") is True

    shot = tmp_path / "console-streams.png"
    page.click('#stream-groups [data-group="inbox"]')
    page.click('#stream-items tr[data-item="t1"]')
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("MOTIA_CONSOLE_STREAMS_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, Path(keep))

    # A page that goes away stops the console's tail of the store once no feed is open
    assert console.get("/__motia/api/info").json()["streams"]["tailing"] is True
    page.close()
    poll(lambda: not console.get("/__motia/api/info").json()["streams"]["tailing"], timeout=10, what="tail to stop")
    assert errors == [], errors
    app.close()
    console.close()
    assert server.stop() == 0
