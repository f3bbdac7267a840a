"""The console end to end: a real ``motia run`` process, driven in a real headless Chromium.

Set ``MOTIA_CONSOLE_SCREENSHOT=docs/console.png`` to keep the screenshot the README shows.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import httpx
import pytest

from motia import SyncStateManager
from tests.e2e.motia_proc import EXAMPLE_STEPS, poll

pytestmark = pytest.mark.slow

TOKEN = "browser-test-token-1234"
#: A state-triggered step added to the example app (its changes reach the feed through the runtime).
STEPS = Path(__file__).resolve().parent / "steps"
TIMEOUT_MS = 10_000


def write(url: str, *writes) -> None:
    """``(scope, key, value, ttl)`` writes from outside the server, as another process would make them."""
    # The blocking twin: Playwright's sync API keeps an event loop on this thread, so no asyncio.run here.
    with SyncStateManager.from_url(url) as state:
        for scope, key, value, ttl in writes:
            state.set(scope, key, value, ttl=ttl)


def entry(url: str, scope: str, key: str):
    with SyncStateManager.from_url(url) as state:
        return state.get_entry(scope, key)


def test_console_in_a_real_browser(browser, run_motia, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)

    # Given a SQLite store written before the server starts, served by `motia run` with a console token
    url = f"sqlite:///{tmp_path / 'state.db'}"
    write(
        url,
        ("user-sessions", "s-1f3a", {"userId": "42", "data": {"pageViews": 12, "theme": "dark"}}, 3600),
        ("user-sessions", "s-9c21", {"userId": "7", "data": {"pageViews": 3}}, None),
        ("user-sessions", "s-b77e", {"userId": "42", "data": {"cart": ["sku-1", "sku-9"]}}, 86400),
        ("rate-limits", "ip:10.0.0.8", {"count": 17, "window": 60}, 60),
        ("carts", "c-1", {"items": [{"sku": "sku-1", "qty": 2}], "total": 19.0}, None),
        ("carts", "c-2", {"items": [], "total": 0}, None),
    )
    # (a long shutdown timeout: the end of the test checks that open feeds do not make the stop wait for it)
    steps = tmp_path / "steps"
    shutil.copytree(EXAMPLE_STEPS, steps)
    shutil.copy(STEPS / "audit_sessions_step.py", steps)
    shutil.copy(STEPS / "session_audits_step.py", steps)
    server = run_motia(
        steps, state=url, env={"MOTIA_CONSOLE_TOKEN": TOKEN}, extra=["--shutdown-timeout", "30"]
    ).wait_ready()
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # Without the token the page is refused; opening it once with ?token= signs the browser in (cookie)
    refused = page.goto(f"{server.url}/__motia/")
    assert refused is not None and refused.status == 401
    page.goto(f"{server.url}/__motia?token={TOKEN}")
    assert page.url == f"{server.url}/__motia/"
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#feed-status")).to_have_text("live")

    # The page lists the scopes written before, with their counts, and the registered steps
    sessions = page.locator('#scopes [data-scope="user-sessions"]')
    expect(sessions).to_contain_text("3")
    expect(page.locator('#scopes [data-scope="carts"]')).to_contain_text("2")
    expect(page.locator("#store-stats")).to_contain_text("6 keys")  # the overview line: motia state stats
    expect(page.locator("#steps")).to_contain_text("get-session")
    expect(page.locator("#steps")).to_contain_text("GET /session/{sessionId}")
    expect(page.locator("#steps")).to_contain_text("cron 0 * * * *")
    expect(page.locator("#steps")).to_contain_text("state user-sessions")
    # with how it delivers: the added queue step's settings and retry policy, the state trigger's retries
    expect(page.locator("#steps")).to_contain_text("queue session-audits")
    expect(page.locator("#steps")).to_contain_text(
        "fifo · 2 per 60s per tenant · 5 retries, backoff 2s doubling to 30s"
    )
    expect(page.locator("#steps")).to_contain_text("3 retries, backoff 1s doubling to 60s")

    # Selecting a scope shows its keys with values; the prefix filter narrows them
    sessions.click()
    expect(page.locator("#keys tr")).to_have_count(3)
    expect(page.locator('#keys tr[data-key="s-9c21"]')).to_contain_text('"pageViews":3')
    page.fill("#prefix", "s-9")
    expect(page.locator("#keys tr")).to_have_count(1)
    page.fill("#prefix", "")
    expect(page.locator("#keys tr")).to_have_count(3)

    # Editing a value saves it (checked in the state file, from this process)
    page.click('#keys tr[data-key="s-9c21"]')
    expect(page.locator("#editor-meta")).to_contain_text("version 1")
    page.fill("#editor-value", '{"userId": "7", "data": {"pageViews": 4, "edited": true}}')
    page.click("#editor-save")
    expect(page.locator("#editor-meta")).to_contain_text("version 2")
    saved = entry(url, "user-sessions", "s-9c21")
    assert saved.value == {"userId": "7", "data": {"pageViews": 4, "edited": True}} and saved.version == 2
    expect(page.locator('#keys tr[data-key="s-9c21"]')).to_contain_text('"edited":true')

    # A value that is not JSON cannot be saved
    page.fill("#editor-value", "{oops")
    expect(page.locator("#editor-error")).to_contain_text("Not valid JSON")
    expect(page.locator("#editor-save")).to_be_disabled()

    # A concurrent change, written through StateManager while the editor is open, shows a conflict
    page.click('#keys tr[data-key="s-1f3a"]')
    expect(page.locator("#editor-meta")).to_contain_text("version 1")
    write(url, ("user-sessions", "s-1f3a", {"userId": "42", "data": {"pageViews": 13}, "by": "another process"}, None))
    page.fill("#editor-value", '{"userId": "42", "mine": true}')
    page.click("#editor-save")
    conflict = page.locator("#conflict")
    expect(conflict).to_be_visible()
    expect(conflict).to_contain_text("changed since you opened it")
    expect(conflict).to_contain_text("now version 2")
    expect(page.locator("#conflict-current")).to_contain_text("another process")
    assert entry(url, "user-sessions", "s-1f3a").value["by"] == "another process"  # not overwritten
    page.click("#conflict-load")
    expect(conflict).to_be_hidden()
    expect(page.locator("#editor-value")).to_have_value(re.compile("another process"))

    # Deleting asks for confirmation, then removes the key from the page and the store
    page.click('#keys tr[data-key="s-b77e"]')
    page.click("#editor-delete")
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("s-b77e")
    page.click("#confirm-ok")
    expect(page.locator('#keys tr[data-key="s-b77e"]')).to_have_count(0)
    expect(page.locator("#keys tr")).to_have_count(2)
    assert entry(url, "user-sessions", "s-b77e") is None
    expect(sessions).to_contain_text("2")

    # A new write made by another client through the console API appears in the live feed without a reload
    page.evaluate("window.__notReloaded = true")
    response = api.put(
        "/__motia/api/entry",
        params={"scope": "user-sessions", "key": "s-new"},
        json={"value": {"userId": "99", "data": {}}, "if_version": 0, "ttl": 1800},
    )
    assert response.status_code == 200, response.text
    newest = page.locator("#events li").first
    expect(newest).to_contain_text("created")
    expect(newest).to_contain_text("user-sessions / s-new")
    expect(page.locator('#keys tr[data-key="s-new"]')).to_have_count(1)  # the key list refreshed too

    # So does a write by another process (this one, through StateManager) to a scope a state trigger
    # watches: the runtime delivers it to the step and shows it in the feed
    write(url, ("user-sessions", "s-from-a-script", {"userId": "5", "data": {}}, None))
    newest = page.locator("#events li").first
    expect(newest).to_contain_text("user-sessions / s-from-a-script")
    expect(page.locator('#keys tr[data-key="s-from-a-script"]')).to_have_count(1)
    assert page.evaluate("window.__notReloaded") is True

    # Clearing a scope needs its name typed into the confirmation
    page.click('#scopes [data-scope="carts"]')
    expect(page.locator("#keys tr")).to_have_count(2)
    page.click("#clear-scope")
    expect(page.locator("#confirm-ok")).to_be_disabled()
    page.fill("#confirm-typed", "carts")
    page.click("#confirm-ok")
    expect(page.locator('#scopes [data-scope="carts"]')).to_have_count(0)
    assert entry(url, "carts", "c-1") is None

    # The screenshot of the README: a scope, its keys, the editor and the live feed
    page.click('#scopes [data-scope="user-sessions"]')
    page.click('#keys tr[data-key="s-9c21"]')
    expect(page.locator("#editor")).to_be_visible()
    page.locator("#toast").evaluate("toast => { toast.hidden = true; }")  # the last action's notice
    shot = tmp_path / "console.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("MOTIA_CONSOLE_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, Path(keep))

    # A page that goes away releases its event stream on the server
    other = browser.new_page()
    other.goto(f"{server.url}/__motia/")
    expect(other.locator("#feed-status")).to_have_text("live")
    assert api.get("/__motia/api/info").json()["events"]["subscribers"] == 2
    other.close()
    poll(lambda: api.get("/__motia/api/info").json()["events"]["subscribers"] == 1, timeout=10, what="stream release")

    # Stopping the server while the page's stream is open: the stream ends at once (no wait for the
    # 30 s shutdown timeout), the process exits 0, and the page notices
    assert errors == [], errors
    api.close()
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 15
    expect(page.locator("#feed-status")).to_have_text("reconnecting…")
    page.close()
