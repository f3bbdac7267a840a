"""The example's steps called in-process: the hourly cleanup cron, and the declaration styles used."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from motia import CronInput, TriggerInfo
from motia.steps.loader import load_step_file, load_steps
from motia.testing import call_handler, memory_state
from tests.e2e.motia_proc import EXAMPLE_STEPS


async def test_cleanup_cron_deletes_only_expired_sessions_across_pages():
    [cleanup] = load_step_file(EXAMPLE_STEPS / "sessions" / "cleanup_expired_sessions_step.py")
    state = memory_state()
    now_ms = int(time.time() * 1000)
    # Given more sessions than one page (500), half of them expired,
    for i in range(1100):
        expires = now_ms - 1000 if i % 2 else now_ms + 3600000
        await state.set("user-sessions", f"s{i:05d}", {"userId": str(i), "expiresAt": expires, "data": {}})
    # when the hourly job runs,
    tick = CronInput(expression="0 * * * *", scheduled_at=datetime.now(UTC))
    await call_handler(cleanup, tick, state=state, trigger=TriggerInfo(type="cron", expression="0 * * * *"))
    # then every expired session is gone and every live one is kept.
    remaining = await state.items("user-sessions")
    assert len(remaining) == 550
    assert all(entry.value["expiresAt"] > now_ms for entry in remaining)
    await state.aclose()


def test_example_uses_every_declaration_style_and_naming():
    loaded = {ls.step.name: ls for ls in load_steps(EXAMPLE_STEPS)}
    assert len(loaded) == 11
    assert loaded["list-all-scopes"].path.name.endswith(".step.py")
    sources = {name: ls.path.read_text() for name, ls in loaded.items()}
    assert "default = step(\n" in sources["get-session"]  # step(config, handler)
    assert ").handle(update_session)" in sources["update-session"]  # step(config).handle(handler)
    assert "@step(" in sources["delete-session"]  # decorator
    assert "\nconfig = {" in sources["list-sessions"] and "\nasync def handler(" in sources["list-sessions"]
    assert not loaded["check-feature"].step.is_async  # a def handler
    assert loaded["set-feature"].step.arity == 1  # a one-argument handler
