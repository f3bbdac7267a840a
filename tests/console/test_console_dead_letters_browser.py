"""The console's Dead letters view end to end: a real ``motia run`` whose steps make a dead letter (a failing
handler) and keep a message nobody subscribes to, driven in a real headless Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def test_console_actions_over_real_http(run_motia, tmp_path):
    # Given `motia run` with a dead letter of a failing handler and one of a message nobody subscribes to
    server = run_motia(STEPS, state=f"sqlite:///{tmp_path / 'state.db'}", env={"MOTIA_CONSOLE_TOKEN": TOKEN})
    server.wait_ready()
    app = httpx.Client(base_url=server.url, timeout=10)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    console = httpx.Client(base_url=server.url, headers=auth, timeout=10)
    assert app.post("/orders", json={"id": "o-18", "total": 5}).status_code == 202

    def listed() -> list[dict[str, Any]]:
        return console.get("/__motia/api/dead-letters").json()["dead_letters"]

    poll(lambda: len(listed()) == 2, timeout=10)
    billing = next(letter for letter in listed() if letter["step"] == "bill-order")
    # A write from another origin, or without the token, is refused and changes nothing
    assert httpx.post(f"{server.url}/__motia/api/dead-letters/purge", json={"all": True}).status_code == 401
    cross = console.post("/__motia/api/dead-letters/purge", json={"all": True}, headers={"Origin": "http://evil.test"})
    assert cross.status_code == 403 and len(listed()) == 2
    # When the failing letter is redriven, it is delivered again: its handler fails again, so it comes back
    # under the same id, a later failure
    redriven = console.post("/__motia/api/dead-letters/redrive", json={"ids": [billing["id"]]})
    assert redriven.json() == {"redriven": 1, "ids": [billing["id"]], "skipped": []}
    poll(lambda: any(d["id"] == billing["id"] and d["failed_at"] > billing["failed_at"] for d in listed()), timeout=10)
    # And purging the kept audit message by filter removes it only
    purged = console.post("/__motia/api/dead-letters/purge", json={"step": "(no subscriber)"})
    assert purged.json() == {"purged": 1}
    assert [d["step"] for d in listed()] == ["bill-order"]
    app.close()
    console.close()


def test_dead_letters_view_redrives_and_purges(browser, run_motia, tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    # Given `motia run` with two failed orders and their two audit messages nobody subscribes to
    server = run_motia(STEPS, state=f"sqlite:///{tmp_path / 'state.db'}", env={"MOTIA_CONSOLE_TOKEN": TOKEN})
    server.wait_ready()
    app = httpx.Client(base_url=server.url, timeout=10)
    console = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    for order in ("o-1", "o-2"):
        assert app.post("/orders", json={"id": order, "total": 1}).status_code == 202

    def count(**params: str) -> int:
        return len(console.get("/__motia/api/dead-letters", params=params).json()["dead_letters"])

    poll(lambda: count() == 4, timeout=10)
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/__motia?token={TOKEN}#dead-letters")
    expect(page.locator("#dead-view")).to_be_visible()
    rows = page.locator("#dead-letters tr[data-id]")
    expect(rows).to_have_count(4)

    # A row opened shows the trace id and the error; its Purge button asks first, then deletes it
    first_audit = page.locator("#dead-letters tr[data-id]", has_text="(no subscriber)").first
    first_audit.click()
    expect(page.locator('[data-testid="dead-facts"]')).to_contain_text("trace ")
    expect(page.locator('[data-testid="dead-error"]')).to_contain_text("no step subscribes to topic 'orders.audit'")
    first_audit.locator('[data-testid="purge"]').click()
    expect(page.locator("#confirm")).to_be_visible()
    page.click("#confirm-ok")
    expect(rows).to_have_count(3)
    assert count(step="(no subscriber)") == 1

    # Bulk purge of what the filters match: confirmed, then only those go
    page.fill("#dead-step", "(no subscriber)")
    expect(rows).to_have_count(1)
    page.click('[data-testid="purge-matching"]')
    expect(page.locator("#confirm-text")).to_contain_text("every dead letter of step “(no subscriber)”")
    page.click("#confirm-ok")
    expect(page.locator("#no-dead")).to_be_visible()
    assert count() == 2

    # Bulk redrive of every billing letter: they are delivered again (and fail again: the handler still fails)
    page.fill("#dead-step", "bill-order")
    expect(rows).to_have_count(2)
    before = {d["id"]: d["failed_at"] for d in console.get("/__motia/api/dead-letters").json()["dead_letters"]}
    page.click('[data-testid="redrive-matching"]')
    expect(page.locator("#confirm-text")).to_contain_text("Redrive every dead letter of step “bill-order”?")
    page.click("#confirm-ok")
    expect(page.locator("#toast")).to_contain_text("Redrove 2 dead letters")

    def failed_again() -> bool:
        now = {d["id"]: d["failed_at"] for d in console.get("/__motia/api/dead-letters").json()["dead_letters"]}
        return now.keys() == before.keys() and all(now[i] > before[i] for i in before)

    poll(failed_again, timeout=10)
    # The pending deliveries list answers (none left)
    page.click('[data-testid="load-pending"]')
    expect(page.locator("#pending-table")).to_be_visible()
    expect(page.locator("#pending-deliveries tr")).to_have_count(0)
    assert errors == []
    page.close()
    app.close()
    console.close()
