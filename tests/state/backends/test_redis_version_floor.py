"""The oldest redis-py that pyproject.toml declares really works (issue 11, #5).

The floor was once ``>=5.0`` while the backend needed APIs of 5.3 (``ConnectionPool.get_connection()``
without a command name; ``aclose``, which 5.0.0 lacks): with 5.2 every call failed. This test reads the floor
from pyproject.toml, installs exactly that version (with its dependencies) into a directory of its own with
``pip install --target`` (cached in the temp dir across runs), and runs a child process with that directory
first on its path, doing real calls of every kind against a private ``redis-server``.

Installing needs the package index: outside CI a failed install skips with the reason; with ``CI=true`` it
fails, so the floor is always checked where it counts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import tomllib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]

CHILD = textwrap.dedent(
    """
    import asyncio
    import sys

    import redis

    from motia import StateBackendUnavailable, StateManager, SyncStateManager
    from motia.state.backends.base import NewDelivery, Subscription

    url, admin_port = sys.argv[1], int(sys.argv[2])


    async def main() -> None:
        async with StateManager.from_url(url) as sm:
            backend = sm.backend
            await backend.enable_events()
            await sm.set("s", "k", {"n": 1})
            assert await sm.get("s", "k") == {"n": 1}
            result = await sm.update("s", "k", [{"type": "increment", "path": "n", "value": 1}])
            assert result.new_value == {"n": 2}, result
            await asyncio.gather(*(sm.set("s", f"k{i}", i) for i in range(50)))  # pipelined batches
            assert await sm.count("s") == 51
            assert await sm.keys("s", prefix="k1", limit=2) == ["k1", "k10"]
            async with sm.transaction() as tx:
                current = await tx.get("s", "k")
                await tx.set("s", "k", {"n": current["n"] + 1})
            assert await sm.get("s", "k") == {"n": 3}
            await sm.delete("s", "k0")
            # the library lost (FUNCTION FLUSH) is loaded again
            with redis.Redis(host="127.0.0.1", port=admin_port) as admin:
                admin.function_flush()
            await sm.set("s", "after-flush", 1)
            # delivery: events dispatched, a queue message, claims, settling, a dead letter, a cron tick
            assert await backend.dispatch_events([Subscription("watch", "s")]) == 55
            await backend.enqueue([NewDelivery("q1", "worker", "queue", b"{}")])
            assert await backend.pending() == 56
            settled = 0
            for _ in range(5):  # a key's events are leased one at a time, in order: a few rounds
                for delivery in await backend.claim(["watch", "worker"], owner="me", limit=100, lease=30):
                    if settled == 0:
                        assert await backend.dead_letter(delivery.id, owner="me", error="boom")
                    else:
                        assert await backend.complete(delivery.id, owner="me")
                    settled += 1
            assert settled == 56 and await backend.pending() == 0
            assert [letter.error for letter in await backend.dead_letters()] == ["boom"]
            assert await backend.claim_tick("job", 1_700_000_000.0, hold=10)
        # short-lived loops and the blocking twin
        with SyncStateManager.from_url(url) as sync:
            assert sync.get("s", "k") == {"n": 3}
        manager = StateManager.from_url(url)
        for _ in range(3):
            await asyncio.to_thread(asyncio.run, manager.get("s", "k"))
        await manager.aclose()
        # driver errors are translated
        try:
            StateManager.from_url("redis://127.0.0.1:1/0")
        except StateBackendUnavailable:
            pass
        else:
            raise AssertionError("an unreachable server opened")
        print("ok", redis.__version__)


    asyncio.run(main())
    """
)


def declared_floor() -> str:
    """The redis-py floor pyproject.toml declares, the same in the ``redis`` and ``test`` extras."""
    extras = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    floors = set()
    for extra in ("redis", "test"):
        (requirement,) = [r for r in extras[extra] if re.match(r"redis\b", r)]
        match = re.fullmatch(r"redis\[hiredis\]>=([0-9.]+)", requirement)
        assert match, f"the {extra} extra should declare redis as redis[hiredis]>=X.Y, not {requirement!r}"
        floors.add(match.group(1))
    assert len(floors) == 1, f"the redis and test extras declare different floors: {sorted(floors)}"
    return floors.pop()


def install(version: str) -> Path:
    """``redis[hiredis]==version`` in a directory of its own, installed once and reused (atomically renamed
    into place, so concurrent runs never see half an install)."""
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    target = Path(tempfile.gettempdir()) / f"pymotia-test-redis-{version}-{tag}"
    if (target / "redis" / "__init__.py").exists():
        return target
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}-", dir=target.parent))
    try:
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input"]
        command += ["--target", str(staging), f"redis[hiredis]=={version}"]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            reason = f"cannot install redis=={version} (the declared floor): {proc.stderr.strip()[-2000:]}"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(reason, pytrace=False)
            pytest.skip(reason)
        try:
            staging.rename(target)
        except OSError:  # another run put it in place first
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@pytest.mark.slow
def test_the_declared_redis_py_floor_runs_every_kind_of_call(redis_server_factory, child_env):
    floor = declared_floor()
    target = install(floor)
    server = redis_server_factory()
    env = dict(child_env)
    env["PYTHONPATH"] = os.pathsep.join([str(target), env["PYTHONPATH"]])
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, f"{server.url}?prefix=floor", str(server.port)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert proc.stdout.split() == ["ok", floor], (proc.stdout, proc.stderr[-2000:])
