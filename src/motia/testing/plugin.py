"""The pytest plugin: fixtures for testing a Motia project with no conftest code.

Registered through the ``pytest11`` entry point, so ``pip install pymotia[testing]`` is all a project
needs. Fixtures (all function-scoped, each test gets its own):

- ``motia_clock``: a :class:`~motia.testing.FakeClock`; the store and the app below run on it.
- ``motia_state``: a fresh store on that clock, in memory unless the test is marked
  ``@pytest.mark.motia_state("sqlite")`` or the run chooses otherwise (``--motia-state=sqlite`` or the ini
  option ``motia_state = sqlite``): then a SQLite file in the test's temporary directory.
- ``motia_project``: the project directory (``Path``): the marker ``@pytest.mark.motia_project("dir")``,
  else the ini option ``motia_project = dir``, else the rootdir; a relative ``dir`` is taken from the
  rootdir. Its steps are in ``<dir>/steps`` when there is such a directory, else in ``<dir>``.
- ``motia_app``: the project's app, started on ``motia_state``, driven by ``motia_clock`` (its cron jobs
  run at the ticks ``await motia_clock.advance(...)`` passes), shut down after the test.
- ``motia_client``: an httpx ``AsyncClient`` talking to ``motia_app`` in-process.
- ``motia_events``: a :class:`~motia.testing.MotiaEvents` recording the app's state events and enqueued
  messages from the start of the test.
- ``motia_crash``: ``with motia_crash(step="charge"):`` injects a crash after commit
  (:func:`~motia.testing.crash_after_commit` on ``motia_app``).

Async fixtures are declared with pytest-asyncio, so they work in its strict and auto modes. Nothing
heavier than ``motia`` itself is imported until a test asks for one of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

if TYPE_CHECKING:
    from motia.runtime.app import MotiaApp
    from motia.state.manager import StateManager
    from motia.testing.client import AppClient
    from motia.testing.clock import FakeClock
    from motia.testing.crash import CrashInjector
    from motia.testing.events import MotiaEvents

__all__ = [
    "motia_app",
    "motia_client",
    "motia_clock",
    "motia_crash",
    "motia_events",
    "motia_project",
    "motia_state",
    "pytest_addoption",
    "pytest_configure",
]

STATE_KINDS = ("memory", "sqlite")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("motia", "Motia (pymotia's testing kit)")
    group.addoption(
        "--motia-state",
        choices=STATE_KINDS,
        default=None,
        help="the store of the motia_state fixture: memory (default) or sqlite (a temporary file)",
    )
    parser.addini("motia_state", "the store of the motia_state fixture: memory (default) or sqlite", default="")
    parser.addini("motia_project", "the Motia project directory, relative to the rootdir (default: the rootdir)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "motia_state(kind): the store of motia_state for this test: memory or sqlite")
    config.addinivalue_line("markers", "motia_project(path): the Motia project directory of this test")


def _state_kind(request: pytest.FixtureRequest) -> str:
    marker = request.node.get_closest_marker("motia_state")
    if marker is not None:
        kind = marker.args[0] if marker.args else marker.kwargs.get("kind")
        source = "the motia_state marker"
    elif request.config.getoption("motia_state"):
        kind, source = request.config.getoption("motia_state"), "--motia-state"
    else:
        kind, source = (request.config.getini("motia_state") or "memory").strip(), "the motia_state ini option"
    if kind not in STATE_KINDS:
        raise pytest.UsageError(f"{source} must be one of {', '.join(STATE_KINDS)}, not {kind!r}")
    return str(kind)


@pytest.fixture
def motia_clock() -> FakeClock:
    """A fake clock at :data:`motia.testing.clock.DEFAULT_START`; ``await motia_clock.advance(seconds)``."""
    from motia.testing.clock import FakeClock

    return FakeClock()


@pytest_asyncio.fixture
async def motia_state(
    request: pytest.FixtureRequest, tmp_path: Path, motia_clock: FakeClock
) -> AsyncIterator[StateManager]:
    """A fresh store on ``motia_clock``: in memory, or a SQLite file in ``tmp_path`` (see the module docstring)."""
    from motia.state.manager import StateManager

    kind = _state_kind(request)
    url = "memory://" if kind == "memory" else f"sqlite:///{tmp_path / 'motia-state.db'}"
    manager = StateManager.from_url(url, clock=motia_clock)
    motia_clock.drive(manager)
    try:
        yield manager
    finally:
        motia_clock.release(manager)
        await manager.aclose()


@pytest.fixture
def motia_project(request: pytest.FixtureRequest) -> Path:
    """The project directory: the ``motia_project`` marker, the ``motia_project`` ini option, or the rootdir."""
    root = Path(request.config.rootpath)
    marker = request.node.get_closest_marker("motia_project")
    if marker is not None:
        given, source = (marker.args[0] if marker.args else marker.kwargs.get("path")), "the motia_project marker"
    else:
        given, source = request.config.getini("motia_project") or None, "the motia_project ini option"
    if given is None:
        return root
    project = (root / Path(given)).resolve()
    if not project.is_dir():
        raise pytest.UsageError(f"{source} names {given!r}, which is not a directory ({project})")
    return project


@pytest_asyncio.fixture
async def motia_app(motia_project: Path, motia_state: StateManager, motia_clock: FakeClock) -> AsyncIterator[MotiaApp]:
    """The project's app (its steps, streams and ``motia_config.py`` settings) on ``motia_state``, driven
    by ``motia_clock``, its cron scheduler and expiry sweeper replaced by the clock's stops."""
    from motia.runtime.app import MotiaApp
    from motia.runtime.project_config import idempotency_config, strict_topics_setting
    from motia.testing.client import load_project

    steps_dir = motia_project / "steps"
    steps, streams = load_project(steps_dir if steps_dir.is_dir() else motia_project)
    app = MotiaApp(
        steps,
        state=motia_state,
        cron=False,
        sweep_interval=0,
        streams=streams,
        strict_topics=strict_topics_setting(motia_project),
        idempotency=idempotency_config(motia_project),
        shutdown_timeout=5.0,
    )
    await app.startup()
    try:
        motia_clock.drive(app)
        yield app
    finally:
        motia_clock.release(app)
        await app.shutdown()


@pytest_asyncio.fixture
async def motia_client(motia_app: MotiaApp) -> AsyncIterator[AppClient]:
    """An httpx client of ``motia_app`` over its ASGI app (``base_url`` ``http://testserver``)."""
    import httpx

    from motia.testing.client import AppClient

    async with AppClient(transport=httpx.ASGITransport(app=motia_app.asgi), base_url="http://testserver") as client:
        client.app = motia_app
        yield client


@pytest_asyncio.fixture
async def motia_events(motia_app: MotiaApp) -> AsyncIterator[MotiaEvents]:
    """The state events and enqueued messages of ``motia_app`` since the test started."""
    from motia.testing.events import record_events

    async with record_events(motia_app) as events:
        yield events


@pytest.fixture
def motia_crash(motia_app: MotiaApp) -> Iterator[Callable[..., AbstractContextManager[CrashInjector]]]:
    """``with motia_crash(step=None, times=1) as crash:``: :func:`~motia.testing.crash_after_commit` on
    ``motia_app``."""
    from motia.testing.crash import crash_after_commit

    def crash(**options: Any) -> AbstractContextManager[CrashInjector]:
        return crash_after_commit(motia_app, **options)

    yield crash
