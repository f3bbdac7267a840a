"""Fixtures shared by every test directory: private Redis servers (see ``redis_server.py``) and a private
PostgreSQL cluster (see ``postgres_server.py``).

- ``redis_server``: one server for the whole run (session scope). Tests get an empty store on it by using a
  fresh key prefix (``redis://...?prefix=NAME``), never by flushing it.
- ``redis_server_factory``: ``redis_server_factory(appendonly=False)`` starts another private server (e.g. one
  with ``appendonly=True`` to kill and restart); each is stopped and removed after the test.

- ``postgres_server``: one cluster for the whole run (session scope). Tests get an empty store on it by using a
  fresh schema (``postgresql://...?schema=NAME``), never by dropping anything.

- ``run_loop``: runs a coroutine to its end on asyncio's own loop, then (the test's second parameter) on uvloop,
  the loop ``motia run`` serves on, whose tasks must step as asyncio's do. uvloop comes with ``uvicorn[standard]``:
  a missing one fails, never skips.

A pytest stopped with SIGTERM tears its fixtures down (and so stops these servers) as after Ctrl-C
(``pytest_configure`` below); one killed with SIGKILL runs no teardown, and its servers die with it
(``tests.server_process.spawn_tied``). Only their temp dirs are left then.

A failed test's report also quotes what the ``motia run`` processes it started (``run_motia``) printed and what
its browser pages (the ``browser`` fixture) logged, threw and failed to load: ``tests/failure_report.py``.

Without ``redis-server`` on PATH (or ``initdb``/``postgres``, on PATH or under ``/usr/lib/postgresql/*/bin``)
these skip with a visible reason, except in CI (``CI=true``), where a missing server is a failure: the Redis
and PostgreSQL tests must never be skipped silently there.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Coroutine, Generator, Iterator
from typing import Any

import pytest

from tests import failure_report
from tests.postgres_server import PostgresServer, postgres_bin_dir
from tests.redis_server import RedisServer, redis_server_path

#: The SIGTERM handler before :func:`pytest_configure` replaced it, restored by :func:`pytest_unconfigure`.
_sigterm_before = pytest.StashKey[Any]()


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (CI stopping a run, ``kill``) ends pytest as Ctrl-C does: the running test is interrupted and
    every fixture is torn down, which stops the private servers. By default SIGTERM ends the process at once,
    with none of that."""
    before = signal.signal(signal.SIGTERM, signal.default_int_handler)
    if before is not None:  # None: a handler set outside Python, which cannot be put back from it
        config.stash[_sigterm_before] = before


def pytest_unconfigure(config: pytest.Config) -> None:
    """Put back the SIGTERM handler (a pytest run in this process, as pytester's, leaves none behind)."""
    if _sigterm_before in config.stash:
        signal.signal(signal.SIGTERM, config.stash[_sigterm_before])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report carries what its served processes and browser pages said (``failure_report``)."""
    report = yield
    if report.failed:
        report.sections.extend(failure_report.sections(item))
    return report


@pytest.fixture(autouse=True)
def _browser_failure_report(request: pytest.FixtureRequest) -> Iterator[None]:
    """For a test that drives a browser (the ``browser`` fixture of ``tests/console``): what its pages logged,
    threw and failed to load, in its failure report."""
    if "browser" not in request.fixturenames:
        yield
        return
    yield from failure_report.browser_events(request.node, request.getfixturevalue("browser"))


def require_redis_server() -> None:
    """Skip (or, in CI, fail) the calling test when ``redis-server`` is not installed."""
    if redis_server_path() is not None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(
            "redis-server is not on PATH and CI=true: install redis-server (Debian: apt-get install redis-server; "
            "scripts/test does it when run as root) so the Redis tests run",
            pytrace=False,
        )
    pytest.skip("redis-server is not on PATH: Redis tests skipped (install the redis-server package to run them)")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One private Redis server (no persistence) for the whole test run."""
    require_redis_server()
    server = RedisServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_server_factory() -> Iterator[Callable[..., RedisServer]]:
    """``redis_server_factory(appendonly=False)`` starts an extra private server, stopped after the test."""
    require_redis_server()
    started: list[RedisServer] = []

    def start(*, appendonly: bool = False) -> RedisServer:
        server = RedisServer(appendonly=appendonly)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def require_postgres_server() -> None:
    """Skip (or, in CI, fail) the calling test when PostgreSQL's server programs are not installed."""
    if postgres_bin_dir() is not None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(
            "initdb/postgres are not installed and CI=true: install PostgreSQL (Debian: apt-get install postgresql; "
            "scripts/test does it when run as root) so the PostgreSQL tests run",
            pytrace=False,
        )
    pytest.skip("PostgreSQL (initdb, postgres) is not installed: PostgreSQL tests skipped (install postgresql)")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One private PostgreSQL cluster for the whole test run (``durable=False``: never killed nor restarted)."""
    require_postgres_server()
    server = PostgresServer(durable=False)
    try:
        yield server
    finally:
        server.close()


def _run_uvloop(main: Coroutine[Any, Any, None]) -> None:
    import uvloop  # the loop `motia run` serves on; imported where used, as the package does

    uvloop.run(main)


#: The event loops a ``run_loop`` test runs on, by name.
LOOPS: dict[str, Callable[[Coroutine[Any, Any, None]], None]] = {"asyncio": asyncio.run, "uvloop": _run_uvloop}


@pytest.fixture(params=sorted(LOOPS))
def run_loop(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, None]], None]:
    return LOOPS[request.param]
