"""Fixtures of the streams tests: ``stream_backend`` opens a fresh store on each backend that implements
the stream contract (``STREAM_BACKENDS``)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest

from motia.state.backends.base import StateBackend
from motia.state.manager import StateManager
from tests.postgres_server import PostgresServer
from tests.redis_server import RedisServer

#: The backends the streams tests run on.
STREAM_BACKENDS = ["memory", "sqlite", "redis", "postgres"]

_prefixes = itertools.count()


@pytest.fixture(params=STREAM_BACKENDS)
async def stream_state(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[StateManager]:
    """A fresh StateManager (its ``backend`` serves streams), once per backend."""
    if request.param == "memory":
        url = "memory://"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/streams.db"
    elif request.param == "postgres":
        cluster: PostgresServer = request.getfixturevalue("postgres_server")
        url = f"{cluster.url}?schema=s{next(_prefixes)}"
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        url = f"{server.url}?prefix=s{next(_prefixes)}"
    manager = StateManager.from_url(url)
    yield manager
    await manager.aclose()


@pytest.fixture
def stream_backend(stream_state: StateManager) -> StateBackend:
    return stream_state.backend
