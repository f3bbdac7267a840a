"""Fixtures for the state test suite.

Backends are listed once, in ``BACKENDS``. A backend ``name`` needs three fixtures: ``{name}_url`` (the URL of a
fresh, empty store), ``{name}_url_factory`` (a callable returning such URLs) and ``{name}_state`` (an opened
``StateManager`` on ``{name}_url``). Redis runs on one private server for the whole session (``redis_server`` in
``tests/conftest.py``, which skips with a visible reason when ``redis-server`` is not installed, and fails in CI);
each test gets an empty store on it through a fresh key prefix (``?prefix=t<N>``). PostgreSQL likewise runs one
private cluster (``postgres_server``) and each test gets a fresh schema (``?schema=t<N>``).

Tests that need the delivery or stream part of a backend carry the ``delivery`` marker (a module's
``pytestmark`` or one test's decorator); on a backend of ``BACKENDS`` not in ``DELIVERY_BACKENDS`` they are
skipped, saying so.

- ``state``: an opened async ``StateManager`` for each backend, closed after the test.
- ``state_factory``: for each backend, a callable opening more managers on that backend's URL (the same store
  for SQLite and Redis, a fresh private one for ``memory://``), all closed after the test. Use ``state`` *or*
  ``state_factory`` in one test, not both (each is parametrized on its own).
- ``clock``: a ``FakeClock`` passed as ``clock=`` to every manager the fixtures open.
- ``fresh_url_factory``: for each backend, a zero-argument callable returning the URL of a new, empty store
  (for property tests that need a fresh store per example).
- ``clock_factory``: the ``FakeClock`` class, for code that builds its own clocks.
- ``child_env``: the environment for child Python processes (``motia`` importable from ``src``).
"""

from __future__ import annotations

import faulthandler
import importlib.util
import itertools
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SRC_DIR = REPO_ROOT / "src"

if importlib.util.find_spec("motia") is None:  # not installed in the venv: import it from the src layout
    sys.path.insert(0, str(SRC_DIR))

from motia import StateClosedError, StateManager  # noqa: E402
from tests.postgres_server import PostgresServer  # noqa: E402 - tests/postgres_server.py
from tests.redis_server import RedisServer  # noqa: E402 - tests/redis_server.py

#: Every backend the contract suite runs against (each needs ``{name}_url``, ``{name}_url_factory``, ``{name}_state``).
BACKENDS = ["memory", "sqlite", "redis", "postgres"]
#: The backends that implement the delivery and stream contracts too (tests marked ``delivery`` run on these).
DELIVERY_BACKENDS = ["memory", "sqlite", "redis", "postgres"]

#: Numbers the Redis key prefixes handed out in this run: every test's store is new and empty.
_redis_prefixes = itertools.count()
#: Numbers the PostgreSQL schemas handed out in this run, likewise.
_postgres_schemas = itertools.count()

#: A test that runs longer than this is considered hung (e.g. a deadlocked sync call): dump and abort.
WATCHDOG_SECONDS = 240


class FakeClock:
    """A controllable clock: ``clock()`` returns Unix time in seconds, ``advance`` moves it forward."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def _watchdog() -> Iterator[None]:
    """Turn a hang into a loud failure: dump every thread's stack and exit instead of blocking forever."""
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True, file=sys.__stderr__)  # type: ignore[arg-type]
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def memory_url() -> str:
    return "memory://"


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def sqlite_url(sqlite_path: Path) -> str:
    # tmp_path is absolute, so this is sqlite:////abs/path/state.db
    return f"sqlite:///{sqlite_path}"


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    # one shared server; a new key prefix is a new, empty store
    return f"{redis_server.url}?prefix=t{next(_redis_prefixes)}"


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    # one shared cluster; a new schema is a new, empty store
    return f"{postgres_server.url}?schema=t{next(_postgres_schemas)}&timeout=5"


@pytest.fixture
def memory_url_factory() -> Callable[[], str]:
    return lambda: "memory://"


@pytest.fixture
def sqlite_url_factory(tmp_path: Path) -> Callable[[], str]:
    counter = itertools.count()
    return lambda: f"sqlite:///{tmp_path}/fresh-{next(counter)}.db"


@pytest.fixture
def redis_url_factory(redis_server: RedisServer) -> Callable[[], str]:
    return lambda: f"{redis_server.url}?prefix=t{next(_redis_prefixes)}"


@pytest.fixture
def postgres_url_factory(postgres_server: PostgresServer) -> Callable[[], str]:
    return lambda: f"{postgres_server.url}?schema=t{next(_postgres_schemas)}&timeout=5"


@pytest.fixture
def fresh_url_factory(backend: str, request: pytest.FixtureRequest) -> Callable[[], str]:
    return request.getfixturevalue(f"{backend}_url_factory")


@pytest.fixture
def clock_factory() -> type[FakeClock]:
    return FakeClock


@pytest.fixture
async def memory_state(memory_url: str, clock: FakeClock) -> AsyncIterator[StateManager]:
    sm = StateManager.from_url(memory_url, clock=clock)
    yield sm
    await sm.aclose()


@pytest.fixture
async def sqlite_state(sqlite_url: str, clock: FakeClock) -> AsyncIterator[StateManager]:
    sm = StateManager.from_url(sqlite_url, clock=clock)
    yield sm
    await sm.aclose()


@pytest.fixture
async def redis_state(redis_url: str, clock: FakeClock) -> AsyncIterator[StateManager]:
    sm = StateManager.from_url(redis_url, clock=clock)
    yield sm
    await sm.aclose()


@pytest.fixture
async def postgres_state(postgres_url: str, clock: FakeClock) -> AsyncIterator[StateManager]:
    sm = StateManager.from_url(postgres_url, clock=clock)
    yield sm
    await sm.aclose()


def skip_unless_delivery(request: pytest.FixtureRequest, backend: str) -> None:
    """Skip a test marked ``delivery`` on a backend whose delivery and stream parts are not built yet."""
    if backend not in DELIVERY_BACKENDS and request.node.get_closest_marker("delivery") is not None:
        pytest.skip(f"{backend}: the delivery and stream contracts are not implemented on this backend yet")


@pytest.fixture(params=BACKENDS)
def state(request: pytest.FixtureRequest) -> StateManager:
    """An opened async StateManager on a fresh store, once per backend."""
    skip_unless_delivery(request, request.param)
    return request.getfixturevalue(f"{request.param}_state")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    skip_unless_delivery(request, request.param)
    return request.param


@pytest.fixture
def backend_url(backend: str, request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{backend}_url")


@pytest.fixture
async def state_factory(backend_url: str, clock: FakeClock) -> AsyncIterator[Callable[..., StateManager]]:
    """``state_factory(**options)`` opens a StateManager on this backend's URL (clock=clock by default)."""
    opened: list[StateManager] = []

    def _open(**options: Any) -> StateManager:
        options.setdefault("clock", clock)
        sm = StateManager.from_url(backend_url, **options)
        opened.append(sm)
        return sm

    yield _open
    for sm in opened:
        try:
            await sm.aclose()
        except StateClosedError:  # pragma: no cover - aclose is expected to be idempotent
            pass


@pytest.fixture
def child_env() -> dict[str, str]:
    """Environment for child Python processes: ``motia`` importable from the src layout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC_DIR), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env
