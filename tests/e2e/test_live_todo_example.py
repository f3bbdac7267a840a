"""The live todo example (examples/live-todo) in a real headless Chromium against a real ``motia run``:
the page follows the list over Server-Sent Events, so changes made over HTTP by someone else show up
without a reload, and the page's own changes go through the steps and come back through the stream."""

from __future__ import annotations

import httpx
import pytest

from tests.console.conftest import browser  # noqa: F401 - the fixture (Debian's Chromium through Playwright)
from tests.e2e.motia_proc import REPO

pytestmark = pytest.mark.slow

STEPS = REPO / "examples" / "live-todo" / "steps"
TIMEOUT_MS = 10_000


def test_the_page_shows_changes_made_over_http_without_reload(browser, run_motia, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    server = run_motia(STEPS, state=f"sqlite:///{tmp_path / 'state.db'}").wait_ready()
    api = httpx.Client(base_url=server.url, timeout=10)

    # Given a list with one todo, made before the page opens
    first = api.post("/lists/home/todos", json={"title": "water the plants"})
    assert first.status_code == 201, first.text
    first_id = first.json()["id"]

    # When the page opens, it shows the list as the stream's sync gives it, and says it is live
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/?list=home")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#status")).to_have_text("live")
    expect(page.locator("#todos li")).to_have_count(1)
    expect(page.locator(f'#todos li[data-id="{first_id}"]')).to_contain_text("water the plants")
    page.evaluate("window.__notReloaded = true")

    # Then a todo added over HTTP by another client appears without a reload
    added = api.post("/lists/home/todos", json={"title": "buy milk"})
    assert added.status_code == 201, added.text
    added_id = added.json()["id"]
    expect(page.locator(f'#todos li[data-id="{added_id}"]')).to_contain_text("buy milk")
    expect(page.locator("#todos li")).to_have_count(2)

    # And so do an update and a delete made over HTTP
    assert api.patch(f"/lists/home/todos/{first_id}", json={"done": True}).status_code == 200
    expect(page.locator(f'#todos li[data-id="{first_id}"]')).to_have_class("done")
    expect(page.locator(f'#todos li[data-id="{first_id}"] input[type="checkbox"]')).to_be_checked()
    assert api.delete(f"/lists/home/todos/{added_id}").status_code == 200
    expect(page.locator(f'#todos li[data-id="{added_id}"]')).to_have_count(0)

    # A change of another list does not show on this one
    assert api.post("/lists/work/todos", json={"title": "file the report"}).status_code == 201

    # The page's own changes go through the steps: added in the page, seen over HTTP and in the page
    page.fill("#new-title", "call mum")
    page.click("#add button")
    expect(page.locator("#todos li", has_text="call mum")).to_have_count(1)
    titles = sorted(todo["title"] for todo in api.get("/lists/home/todos").json())
    assert titles == ["call mum", "water the plants"]
    expect(page.locator("#todos li")).to_have_count(2)
    page.locator(f'#todos li[data-id="{first_id}"] button').click()
    expect(page.locator(f'#todos li[data-id="{first_id}"]')).to_have_count(0)
    assert [todo["title"] for todo in api.get("/lists/home/todos").json()] == ["call mum"]

    assert page.evaluate("window.__notReloaded") is True
    assert errors == [], errors
    page.close()
    api.close()
    assert server.stop() == 0
