"""Fixtures for the runtime tests: started apps over each backend, with fast delivery options."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from motia.runtime.app import MotiaApp
from motia.state.manager import StateManager
from motia.steps.definition import Step
from tests.runtime.delivery_helpers import FAST, StartApp

_schemas = itertools.count()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh store, on each backend (PostgreSQL: a new schema on the session's cluster)."""
    if request.param == "postgres":
        return f"{request.getfixturevalue('postgres_server').url}?schema=rt{next(_schemas)}"
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
async def start_app(state_url: str) -> AsyncIterator[StartApp]:
    """``await start_app(steps, state=None, delivery=FAST)``: a started app, shut down (and its store
    closed) after the test. Without ``state`` it opens ``state_url``."""
    apps: list[tuple[MotiaApp, StateManager | None]] = []

    async def start(steps: list[Step], *, state: StateManager | None = None, **options: Any) -> MotiaApp:
        options.setdefault("delivery", FAST)
        options.setdefault("shutdown_timeout", 2.0)
        app = MotiaApp(steps, state=state if state is not None else state_url, cron=False, **options)
        await app.startup()
        apps.append((app, state))
        return app

    yield start
    for app, _ in reversed(apps):
        await app.shutdown()
