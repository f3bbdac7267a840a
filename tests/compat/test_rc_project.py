"""Step files of the 1.0 release candidates (``await state_manager.<op>``, ``ctx.emit``, ``ctx.logger``,
``ctx.state``) load and run unchanged, on every backend."""

from __future__ import annotations

from motia import SyncStateManager, state_manager, stateManager
from motia.testing import app_client, drain
from tests.compat.conftest import HERE

STEPS = HERE / "rc_project" / "steps"


async def test_state_manager_is_the_apps_store_inside_handlers(state_url):
    async with app_client(STEPS, state=state_url) as client:
        assert (await client.post("/counters/a")).json() == {"value": 1}
        assert (await client.post("/counters/a")).json() == {"value": 2}
        await drain(client)
        # Written with `await state_manager.set` by one step, emitted with ctx.emit, stored by another.
        assert await client.state.get("counters", "a") == {"value": 2}
        bump = await client.state.get("bumps", "a")
        assert bump["name"] == "a" and bump["value"] in (1, 2) and "counters" in bump["groupsSeen"]
        # Bound while the app runs: the module-level twin is the app's manager.
        assert state_manager.manager is client.state


async def test_state_manager_outside_an_app_opens_the_configured_store(tmp_path, monkeypatch):
    # Given no running app and MOTIA_STATE_URL pointing at a SQLite file
    url = f"sqlite:///{tmp_path / 'script.db'}"
    monkeypatch.setenv("MOTIA_STATE_URL", url)
    stateManager.close()
    try:
        # When a script awaits the async twin, then it writes where the blocking twin reads.
        await state_manager.set("notes", "n1", {"text": "hi"})
        assert await state_manager.get("notes", "n1") == {"text": "hi"}
        assert state_manager.manager.url == url
    finally:
        stateManager.close()
    with SyncStateManager.from_url(url) as reopened:
        assert reopened.get("notes", "n1") == {"text": "hi"}
