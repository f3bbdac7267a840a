"""What only the Redis backend has to prove (SPEC 2, 8): processes sharing one key, key prefixes as separate
stores, fail-closed start-up with the password masked, durability across a server crash (AOF), and a clear
message when the ``redis`` extra is missing.

The contract itself (every operation, TTL, versions, events) runs against Redis in ``tests/state/contract/`` and the
other modules through ``BACKENDS``; the tests here use real ``redis-server`` processes (``tests/redis_server.py``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable

import pytest
import redis

from motia import (
    MotiaError,
    StateBackendUnavailable,
    StateManager,
    StateTimeout,
    SyncStateManager,
)
from motia.state.backends.base import NewDelivery, Subscription
from tests.redis_server import RedisServer
from tests.server_process import free_port
from tests.state.test_concurrency import PROCESSES, UPDATES_PER_PROCESS, check_exact_total, run_children
from tests.state.test_transaction import TRANSFER_SCRIPT

PASSWORD = "pa55-w0rd-never-printed"


def redis_keys(server: RedisServer) -> list[str]:
    """Every key on the server's db 0, read with a raw client."""
    with redis.Redis(host="127.0.0.1", port=server.port, db=0) as client:
        return sorted(key.decode() for key in client.scan_iter(count=1000))


def in_namespace(key: str, prefix: str) -> bool:
    """Whether a raw Redis key belongs to the store with this prefix: it starts with ``{NAME}:``."""
    return key.startswith(f"{{{prefix}}}:")


# -- many processes on one key -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["async", "sync"])
def test_processes_increment_one_redis_key_exactly(redis_url, child_env, mode):
    # Given 4 processes opened on one Redis store, released together
    # When each does 500 increments of the same key
    seen = run_children([mode] * PROCESSES, redis_url, UPDATES_PER_PROCESS, child_env)
    # Then the total is exactly 2000, the version is 2000 and every increment saw a distinct value
    check_exact_total(redis_url, seen, PROCESSES * UPDATES_PER_PROCESS)


@pytest.mark.slow
def test_two_processes_transferring_in_transactions_keep_the_sum(redis_url, child_env, tmp_path):
    # Given two counters and two processes moving 1 from a to b in a transaction, 200 times each
    with SyncStateManager.from_url(redis_url) as sm:
        sm.set_many("bank", {"a": {"n": 1000}, "b": {"n": 0}})
    script = tmp_path / "transfer.py"
    script.write_text(TRANSFER_SCRIPT)
    children = [
        subprocess.Popen(
            [sys.executable, str(script), redis_url, "200"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        for child in children:
            out, err = child.communicate(timeout=180)
            assert child.returncode == 0 and out.strip() == "done", err
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate(timeout=60)
    # Then no transfer was lost or doubled
    with SyncStateManager.from_url(redis_url) as sm:
        assert sm.get("bank", "a") == {"n": 600}
        assert sm.get("bank", "b") == {"n": 400}


# -- the prefix is the store ---------------------------------------------------------------------------------------


async def test_prefixes_on_one_server_are_separate_stores(redis_url_factory, clock):
    # Given two stores on the same server (two prefixes), each with a key in the same scope
    async with (
        StateManager.from_url(redis_url_factory(), clock=clock) as a,
        StateManager.from_url(redis_url_factory(), clock=clock) as b,
    ):
        await a.set("users", "u1", {"store": "a"})
        await b.set("users", "u2", {"store": "b"})
        await a.update("counters", "n", [{"type": "increment", "path": "n", "value": 1}])
        # Then each sees only its own keys, scopes and versions
        assert await a.keys("users") == ["u1"]
        assert await b.keys("users") == ["u2"]
        assert await a.list_groups() == ["counters", "users"]
        assert await b.list_groups() == ["users"]
        assert await b.get("counters", "n") is None
        # And clearing a scope in one leaves the other's scope alone
        await b.clear("users")
        assert await a.get("users", "u1") == {"store": "a"}
        assert await b.count("users") == 0


async def test_a_second_manager_on_the_same_url_is_the_same_store(redis_url, clock):
    async with StateManager.from_url(redis_url, clock=clock) as first:
        await first.set("s", "k", {"n": 1}, ttl=60)
        async with StateManager.from_url(redis_url, clock=clock) as second:
            # Then the second sees the value, version and expiry the first wrote, and vice versa
            entry = await second.get_entry("s", "k")
            assert (entry.value, entry.version, entry.expires_at) == ({"n": 1}, 1, clock() + 60)  # type: ignore[union-attr]
            await second.update("s", "k", [{"type": "increment", "path": "n", "value": 1}])
            assert await first.get("s", "k") == {"n": 2}
            assert (await first.get_entry("s", "k")).version == 2  # type: ignore[union-attr]


async def test_every_redis_key_is_under_the_store_prefix(redis_server_factory, clock):
    # Given a private server, and a store using most of what the backend keeps in Redis
    server = redis_server_factory()

    async def exercise(sm: StateManager) -> None:
        await sm.backend.enable_events()
        await sm.set("users", "u1", {"n": 1})
        await sm.set("sessions", "s1", {"user": "u1"}, ttl=10)
        await sm.update("users", "u1", [{"type": "increment", "path": "n", "value": 1}])
        await sm.set_many("bulk", {"a": 1, "b": 2})
        await sm.delete("bulk", "a")
        await sm.backend.dispatch_events([Subscription("watcher")])
        (delivery, *_) = await sm.backend.claim(["watcher"], owner="t", limit=10, lease=60)
        await sm.backend.complete(delivery.id, owner="t")
        await sm.backend.enqueue([NewDelivery("m1", "worker", "queue", b"{}")])
        (message,) = await sm.backend.claim(["worker"], owner="t", limit=10, lease=60)
        await sm.backend.dead_letter(message.id, owner="t", error="boom")
        await sm.backend.claim_tick("cron-job", clock(), hold=60)
        async with sm.transaction() as tx:
            await tx.set("tx", "k", await tx.get("users", "u1"))
        clock.advance(11)
        await sm.purge_expired()

    # When one store uses the default prefix and another one ?prefix=app1
    async with StateManager.from_url(server.url, clock=clock) as default:
        await exercise(default)
    async with StateManager.from_url(f"{server.url}?prefix=app1", clock=clock) as named:
        await exercise(named)
    # Then every key in Redis belongs to one of the two namespaces ("motia" by default), and both were used
    keys = redis_keys(server)
    outside = [k for k in keys if not in_namespace(k, "motia") and not in_namespace(k, "app1")]
    assert outside == []
    assert any(in_namespace(k, "motia") for k in keys)
    assert any(in_namespace(k, "app1") for k in keys)


async def test_events_enabled_by_one_manager_are_recorded_for_writes_of_another(redis_url, clock):
    # Given a store opened before another manager on it enabled events (a script and `motia run`)
    script = StateManager.from_url(redis_url, clock=clock)
    app = StateManager.from_url(redis_url, clock=clock)
    try:
        await app.backend.enable_events()
        # When the script writes
        await script.set("s", "from-script", 1)
        # Then the app dispatches its event
        assert await app.backend.dispatch_events([Subscription("watcher")]) == 1
    finally:
        await script.aclose()
        await app.aclose()


# -- fail closed ---------------------------------------------------------------------------------------------------


def assert_unavailable_naming_the_masked_url(exc: BaseException, masked: str) -> None:
    assert isinstance(exc, StateBackendUnavailable), repr(exc)
    assert isinstance(exc, MotiaError) and not isinstance(exc, redis.RedisError)
    message = str(exc)
    assert masked in message, message
    assert PASSWORD not in message and PASSWORD not in repr(exc)


@pytest.mark.parametrize("user", ["", "app-user"])
async def test_unreachable_redis_fails_closed_naming_the_url_without_its_password(user):
    # Given a URL with a password, on a loopback port nobody listens on
    port = free_port()
    url = f"redis://{user}:{PASSWORD}@127.0.0.1:{port}/0"
    masked = f"redis://{user}:***@127.0.0.1:{port}/0"
    # When the store is opened and first used
    with pytest.raises(StateBackendUnavailable) as excinfo:
        sm = StateManager.from_url(url)
        try:
            await asyncio.wait_for(sm.set("s", "k", 1), timeout=60)
        finally:
            await sm.aclose()
    # Then it is StateBackendUnavailable with the URL in the message, the password masked
    assert_unavailable_naming_the_masked_url(excinfo.value, masked)


def test_unreachable_redis_fails_closed_for_the_sync_manager_too():
    port = free_port()
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    with pytest.raises(StateBackendUnavailable) as excinfo:
        with SyncStateManager.from_url(url) as sm:
            sm.get("s", "k")
    assert_unavailable_naming_the_masked_url(excinfo.value, f"redis://:***@127.0.0.1:{port}/0")


# -- a server crash under load (AOF, appendfsync always) ---------------------------------------------------------

WRITERS = 4
ACKS_BEFORE_KILL = 400
ACKS_AFTER_RESTART = 400
#: A single write may take this long at most (a hung write fails the test instead of the watchdog killing it).
WRITE_DEADLINE = 30.0
#: After the restart the writers must get writes acknowledged again within this time.
RECOVERY_DEADLINE = 60.0


async def first_of(
    event: asyncio.Event, tasks: list[asyncio.Task[None]], timeout: float, what: Callable[[], str]
) -> None:
    """Wait for ``event``; a writer that ends (i.e. failed) first, or the timeout, fails the test."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait([waiter, *tasks], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    for task in tasks:
        if task in done:
            task.result()  # re-raises the writer's error
    if not event.is_set():
        if done:
            pytest.fail(f"{what()}: a writer stopped before it was told to")
        pytest.fail(f"{what()}: not reached within {timeout}s")


@pytest.mark.slow
async def test_sigkill_and_restart_of_an_aof_server_under_load_keeps_every_acknowledged_write(redis_server_factory):
    # Given a server that fsyncs every write (appendonly yes, appendfsync always)
    server = redis_server_factory(appendonly=True)
    url = f"{server.url}?prefix=aof"
    acknowledged: dict[str, int] = {}
    failures: list[BaseException] = []
    acks_after_restart = 0
    enough_before_kill = asyncio.Event()
    restarted = asyncio.Event()
    enough_after_restart = asyncio.Event()

    async def writer(sm: StateManager, name: str) -> None:
        # sequential sets; a failed one (server down) is not acknowledged and the writer carries on
        nonlocal acks_after_restart
        i = 0
        while not enough_after_restart.is_set():
            key, i = f"{name}-{i:06d}", i + 1
            try:
                await asyncio.wait_for(sm.set("aof", key, {"i": i}), timeout=WRITE_DEADLINE)
            except (StateBackendUnavailable, StateTimeout) as exc:
                failures.append(exc)
                await asyncio.sleep(0)  # a yield point, so a failing writer cannot starve the loop
                continue
            acknowledged[key] = i
            if len(acknowledged) >= ACKS_BEFORE_KILL:
                enough_before_kill.set()
            if restarted.is_set():
                acks_after_restart += 1
                if acks_after_restart >= ACKS_AFTER_RESTART:
                    enough_after_restart.set()

    async with StateManager.from_url(url) as sm:
        tasks = [asyncio.create_task(writer(sm, f"w{n}")) for n in range(WRITERS)]
        try:
            # When the server is SIGKILLed once enough writes were acknowledged, with writes in flight
            await first_of(enough_before_kill, tasks, 120, lambda: f"{ACKS_BEFORE_KILL} acknowledged writes")
            server.kill()
            acked_at_kill = len(acknowledged)
            # and restarted on the same port and dir while the writers keep going
            await asyncio.to_thread(server.restart)
            restarted.set()
            # Then the writers recover: writes are acknowledged again through the same manager
            await first_of(
                enough_after_restart,
                tasks,
                RECOVERY_DEADLINE,
                lambda: (
                    f"{ACKS_AFTER_RESTART} writes acknowledged after the restart (got {acks_after_restart}; "
                    f"failed writes: {len(failures)}, last: {failures[-1] if failures else None!r})"
                ),
            )
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    assert acked_at_kill >= ACKS_BEFORE_KILL
    # And every acknowledged write is stored, with its value, as seen by a fresh manager
    async with StateManager.from_url(url) as fresh:
        stored = {entry.key: entry.value for entry in await fresh.items("aof")}
    missing = sorted(key for key in acknowledged if key not in stored)
    assert missing == [], f"{len(missing)} acknowledged writes lost (of {len(acknowledged)}): {missing[:10]}"
    wrong = {key: stored[key] for key, i in acknowledged.items() if stored[key] != {"i": i}}
    assert wrong == {}


# -- the optional dependency ---------------------------------------------------------------------------------------

WITHOUT_REDIS = textwrap.dedent(
    """
    import sys

    class BlockRedis:
        # as if `pip install pymotia` was run without the [redis] extra
        def find_spec(self, name, path=None, target=None):
            if name == "redis" or name.startswith("redis."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, BlockRedis())
    import motia

    try:
        motia.StateManager.from_url(sys.argv[1])
    except motia.ConfigError as exc:
        print("ConfigError:", exc)
    except BaseException as exc:
        print("other:", type(exc).__qualname__, exc)
    else:
        print("opened")
    """
)


@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_missing_redis_extra_is_a_config_error_naming_the_pip_command(scheme, child_env):
    # Given a Python where `import redis` fails
    url = f"{scheme}://127.0.0.1:{free_port()}/0"
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_REDIS, url], capture_output=True, text=True, env=child_env, timeout=120
    )
    # When a redis:// store is opened
    assert proc.returncode == 0, proc.stderr
    # Then it is a ConfigError telling how to install the extra
    out = proc.stdout.strip()
    assert out.startswith("ConfigError:"), out
    assert "pip install 'pymotia[redis]'" in out, out


# -- a server that stops answering; a reply lost after the write was applied -----------------------------------


@pytest.mark.slow
async def test_a_server_that_stops_answering_raises_state_timeout_within_the_timeout(redis_server_factory):
    server = redis_server_factory()
    manager = StateManager.from_url(f"{server.url}?prefix=stall&timeout=0.5")
    try:
        await manager.set("s", "k", 1)
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)  # the socket stays open; nothing answers
        try:
            started = time.monotonic()
            with pytest.raises(StateTimeout, match=r"did not answer within 0\.5 s") as excinfo:
                await manager.update("s", "k", [{"type": "increment", "path": "n", "value": 1}])
            elapsed = time.monotonic() - started
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert 0.4 < elapsed < 3.0, elapsed
        assert "127.0.0.1" in str(excinfo.value)
        # And the store works again once the server answers (the stalled connection was replaced)
        assert await manager.get("s", "k") in (1, {"n": 1})
        await manager.set("s", "k", 2)
        assert await manager.get("s", "k") == 2
    finally:
        await manager.aclose()


@pytest.mark.slow
async def test_every_call_in_flight_on_a_stalled_server_times_out_on_its_own_deadline(redis_server_factory):
    # Given a store with a short timeout whose server stops answering (one timer keeps every call's deadline)
    server = redis_server_factory()
    manager = StateManager.from_url(f"{server.url}?prefix=stall&timeout=0.5")
    try:
        await manager.set("s", "k", 1)
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            # When calls start at different moments: twenty together, then five more 0.3 s later
            started = time.monotonic()
            first = [asyncio.ensure_future(manager.get("s", f"k{i}")) for i in range(20)]
            await asyncio.sleep(0.3)
            later = [asyncio.ensure_future(manager.set("s", f"k{i}", i)) for i in range(5)]
            first_results = await asyncio.gather(*first, return_exceptions=True)
            first_elapsed = time.monotonic() - started
            later_results = await asyncio.gather(*later, return_exceptions=True)
            later_elapsed = time.monotonic() - started
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        # Then each raised StateTimeout at its own deadline (the later ones did not end with the first)
        assert all(isinstance(result, StateTimeout) for result in first_results + later_results), first_results
        assert 0.4 < first_elapsed < 3.0, first_elapsed
        assert later_elapsed - first_elapsed > 0.15, (first_elapsed, later_elapsed)
        # And the store works again once the server answers
        await manager.set("s", "k", 2)
        assert await manager.get("s", "k") == 2
    finally:
        await manager.aclose()


class ReplyDroppingProxy:
    """A TCP proxy to Redis that, once armed, forwards the next request but cuts both connections as
    soon as the server's reply arrives: the write is applied, the client never hears so. It runs on a
    loop of its own thread (opening a store checks the server with a blocking call)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.armed = False
        self.dropped = threading.Event()
        #: Cleared when a reply is dropped: new connections then wait (a retry is held back) until set.
        self.gate = threading.Event()
        self.gate.set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.hold_retry = False
        self.port = 0

    def start(self) -> None:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self.loop
        ).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.writers.append(client_writer)
        if not self.gate.is_set():
            await asyncio.get_running_loop().run_in_executor(None, self.gate.wait, 30)
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers.append(server_writer)

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, replies: bool) -> None:
            while data := await reader.read(65536):
                if replies and self.armed:
                    self.armed = False
                    if self.hold_retry:
                        self.gate.clear()
                    self.dropped.set()
                    return
                writer.write(data)
                await writer.drain()

        try:
            await asyncio.wait(
                [
                    asyncio.ensure_future(pump(client_reader, server_writer, False)),
                    asyncio.ensure_future(pump(server_reader, client_writer, True)),
                ],
                return_when=asyncio.FIRST_COMPLETED,
            )
        except asyncio.CancelledError:
            pass  # the proxy is closing
        finally:
            client_writer.transport.abort()
            server_writer.transport.abort()

    def close(self) -> None:
        async def stop() -> None:
            assert self.server is not None
            self.server.close()
            for writer in self.writers:
                writer.transport.abort()
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.mark.parametrize("operation", ["update", "set", "transaction"])
async def test_a_write_whose_reply_was_lost_is_retried_without_being_applied_twice(redis_server, operation):
    proxy = ReplyDroppingProxy(redis_server.port)
    proxy.start()
    url = f"redis://127.0.0.1:{proxy.port}/0?prefix=lost-{operation}"
    manager = StateManager.from_url(url)
    watcher = StateManager.from_url(f"{redis_server.url}?prefix=lost-{operation}")
    try:
        await manager.backend.enable_events()
        await manager.set("s", "counter", {"n": 0})
        await manager.backend.dispatch_events([Subscription("watch", "s")])
        # When the reply to the next write is lost after Redis applied it (for a transaction: its commit)
        proxy.armed = operation != "transaction"
        if operation == "update":
            result = await manager.update("s", "counter", [{"type": "increment", "path": "n", "value": 1}])
            assert result.new_value == {"n": 1}
        elif operation == "set":
            await manager.set("s", "counter", {"n": 1})
        else:
            async with manager.transaction() as tx:
                current = await tx.get("s", "counter")
                await tx.set("s", "counter", {"n": current["n"] + 1})
                proxy.armed = True
        # Then the write was retried over a new connection and applied exactly once
        assert proxy.dropped.is_set()
        entry = await watcher.get_entry("s", "counter")
        assert entry is not None and entry.value == {"n": 1} and entry.version == 2
        # And it recorded exactly one change event (plus the creation's)
        assert await watcher.backend.dispatch_events([]) == 1
        assert await watcher.backend.pending("watch") == 2
    finally:
        await manager.aclose()
        await watcher.aclose()
        proxy.close()


@pytest.mark.parametrize("operation", ["update", "set", "delete"])
async def test_a_retried_write_is_not_applied_again_after_another_writer_changed_the_key(redis_server, operation):
    # The reply to A's write is lost; before A's retry reaches Redis, B changes the same key. The key no
    # longer holds A's write, yet the retry must still be recognised as already applied.
    proxy = ReplyDroppingProxy(redis_server.port)
    proxy.start()
    proxy.hold_retry = True
    first = StateManager.from_url(f"redis://127.0.0.1:{proxy.port}/0?prefix=interleaved-{operation}")
    second = StateManager.from_url(f"{redis_server.url}?prefix=interleaved-{operation}")
    increment = [{"type": "increment", "path": "n", "value": 1}]
    try:
        await first.set("s", "counter", {"n": 0})
        proxy.armed = True
        if operation == "update":
            write = asyncio.ensure_future(first.update("s", "counter", increment))
        elif operation == "set":
            write = asyncio.ensure_future(first.set("s", "counter", {"n": "from-first"}))
        else:
            write = asyncio.ensure_future(first.delete("s", "counter", if_version=1))
        assert await asyncio.to_thread(proxy.dropped.wait, 10)
        if operation == "update":
            await second.update("s", "counter", increment)
        elif operation == "set":
            await second.set("s", "counter", {"n": "from-second"})
        else:
            await second.set("s", "counter", {"n": "recreated"})
        proxy.gate.set()
        await write  # the retry answers as the first attempt would have (no conflict for the delete)
        entry = await second.get_entry("s", "counter")
        assert entry is not None
        if operation == "update":
            assert (entry.value, entry.version) == ({"n": 2}, 3)
        elif operation == "set":
            assert (entry.value, entry.version) == ({"n": "from-second"}, 3)
        else:
            assert (entry.value, entry.version) == ({"n": "recreated"}, 1)
    finally:
        await first.aclose()
        await second.aclose()
        proxy.close()
