"""The console's Dead letters view end to end: a real ``motia run`` whose steps make a dead letter (a failing
handler) and keep a message nobody subscribes to, driven in a real headless Chromium."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.motia_proc import poll

pytestmark = pytest.mark.slow

TOKEN = "browser-dead-letters-token"
STEPS = Path(__file__).resolve().parent / "dead_letter_steps"
TIMEOUT_MS = 10_000


def test_dead_letters_view_lists_and_expands(browser, run_motia, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    # Given `motia run` on SQLite whose order flow fails in billing and audits to a topic nobody subscribes to
    server = run_motia(STEPS, state=f"sqlite:///{tmp_path / 'state.db'}", env={"MOTIA_CONSOLE_TOKEN": TOKEN})
    server.wait_ready()
    app = httpx.Client(base_url=server.url, timeout=10)
    console = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert app.post("/orders", json={"id": "o-17", "total": 42}).status_code == 202

    def both_kept() -> bool:
        return len(console.get("/__motia/api/dead-letters").json()["dead_letters"]) == 2

    poll(both_kept, timeout=10)

    # When the console's Dead letters view is opened
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/__motia?token={TOKEN}")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#dead-count")).to_have_text("2")
    page.click("#open-dead")

    # Then both are listed with step, kind, topic, error and attempts
    expect(page.locator("#dead-view")).to_be_visible()
    rows = page.locator("#dead-letters tr[data-id]")
    expect(rows).to_have_count(2)
    billing = page.locator("#dead-letters tr[data-id]", has_text="bill-order")
    expect(billing).to_contain_text("orders.placed")
    expect(billing).to_contain_text("ValueError: card declined for order o-17")
    expect(billing.locator("td.num")).to_have_text("1")
    kept = page.locator("#dead-letters tr[data-id]", has_text="(no subscriber)")
    expect(kept).to_contain_text("orders.audit")
    expect(kept).to_contain_text("no subscriber: no step subscribes to topic 'orders.audit'")
    expect(kept.locator("td.num")).to_have_text("0")

    # A click shows the payload; filtering by topic narrows the list
    kept.click()
    payload = page.locator('[data-testid="dead-payload"]')
    expect(payload).to_contain_text('"topic": "orders.audit"')
    expect(payload).to_contain_text('"order": "o-17"')
    page.fill("#dead-topic", "orders.placed")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("bill-order")
    page.select_option("#dead-kind", "state")
    expect(page.locator("#no-dead")).to_be_visible()
    expect(page.locator("#dead-total")).to_have_text("0 dead letters")

    # The view is opened by its address (a new load: the filters start empty)
    page.goto(f"{server.url}/__motia/?again=1#dead-letters")
    expect(page.locator("#dead-view")).to_be_visible()
    expect(rows).to_have_count(2)
    assert errors == []
    page.close()
    app.close()
    console.close()
