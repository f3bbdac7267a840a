"""Fixtures for the compatibility tests: each era's fixture project, run on every backend."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.e2e.motia_proc import run_motia  # noqa: F401 - the fixture, for the Node client test

HERE = Path(__file__).parent


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh store on each backend (Redis: a fresh key prefix on the shared test server;
    PostgreSQL: a fresh schema on the shared test server)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    if request.param == "postgres":
        return f"{request.getfixturevalue('postgres_server').url}?schema=compat_{uuid.uuid4().hex[:12]}"
    server = request.getfixturevalue("redis_server")
    return f"{server.url}?prefix=compat-{uuid.uuid4().hex[:12]}"
