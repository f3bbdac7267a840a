"""The PostgreSQL backend beyond the shared contract suite (which runs on it through ``BACKENDS``): its URL and
options, failing closed at open (unreachable, wrong password, missing permission; the password never shown),
schemas sharing one database, the schema version, the outbox rows its writes record, a server restarted or
killed under load, and a connection cut around a ``COMMIT`` (the write is applied exactly once).

Every test runs against real PostgreSQL servers (``tests/postgres_server.py``); the cuts go through a real TCP
proxy (``_pg_proxy.py``).
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from motia import ConfigError, StateManager, SyncStateManager
from motia.exceptions import StateBackendUnavailable, StateClosedError, StateConflictError
from motia.state.backends.base import NewDelivery
from motia.state.backends.postgres import SCHEMA_VERSION, PostgresBackend, parse_url
from motia.state.backends.postgres.connection import COMMIT_TOKENS_KEPT
from motia.state.backends.postgres.statement import ONE_STATEMENT_MAX
from tests.postgres_server import PASSWORD, PostgresServer
from tests.server_process import free_port
from tests.state.backends._pg_proxy import PgProxy

INC = [{"type": "increment", "path": "n", "value": 1}]


def schema_url(server: PostgresServer, schema: str, **options: str) -> str:
    query = "&".join(f"{name}={value}" for name, value in {"schema": schema, **options}.items())
    return f"{server.url}?{query}"


# -- URL and options -------------------------------------------------------------------------------------------


def test_url_options_are_parsed_and_the_password_is_masked() -> None:
    settings = parse_url("postgres://ada:hunter2@db.example:5433/app?schema=orders&timeout=2.5&sslmode=require")
    assert settings.schema == "orders"
    assert settings.timeout == 2.5
    assert settings.sslmode == "require"
    assert settings.dsn == "postgresql://ada:hunter2@db.example:5433/app"
    assert settings.url == "postgresql://ada:***@db.example:5433/app?schema=orders&sslmode=require&timeout=2.5"
    defaults = parse_url("postgresql://db.example/app")
    assert (defaults.schema, defaults.timeout, defaults.sslmode) == ("public", 10.0, None)
    assert defaults.url == "postgresql://db.example/app"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?prefix=x", "unknown option"),
        ("?schema=Bad-Name", "schema must be"),
        ("?schema=", "schema must be"),
        ("?timeout=soon", "timeout must be"),
        ("?timeout=0", "timeout must be"),
        ("?timeout=451", "at most 450"),
        ("?sslmode=maybe", "sslmode must be"),
    ],
)
def test_bad_options_are_config_errors_naming_the_masked_url(query: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as excinfo:
        StateManager.from_url(f"postgresql://ada:hunter2@127.0.0.1:1/app{query}")
    assert "hunter2" not in str(excinfo.value)


def test_keyword_options_override_the_url(postgres_server: PostgresServer) -> None:
    backend = PostgresBackend(schema_url(postgres_server, "kwopt"), schema="kwopt2", timeout=3)
    try:
        assert (backend.schema, backend.timeout) == ("kwopt2", 3.0)
        assert backend.url.endswith("?schema=kwopt2&timeout=3")
    finally:
        asyncio.run(backend.aclose())


def test_sslmode_disable_connects(postgres_server: PostgresServer) -> None:
    with SyncStateManager.from_url(schema_url(postgres_server, "ssl_off", sslmode="disable")) as sm:
        sm.set("s", "k", 1)
        assert sm.get("s", "k") == 1


# -- failing closed at open ------------------------------------------------------------------------------------


def test_an_unreachable_server_is_an_error_at_open_naming_the_masked_url() -> None:
    url = f"postgresql://ada:hunter2@127.0.0.1:{free_port()}/app?timeout=1"
    started = time.monotonic()
    with pytest.raises(StateBackendUnavailable, match="unreachable") as excinfo:
        StateManager.from_url(url)
    assert time.monotonic() - started < 10
    assert "ada:***@127.0.0.1" in str(excinfo.value)
    assert "hunter2" not in str(excinfo.value)


def test_a_wrong_password_is_an_error_at_open_at_once(postgres_server: PostgresServer) -> None:
    url = postgres_server.password_url("not-the-password") + "?schema=pw&timeout=30"
    started = time.monotonic()
    with pytest.raises(StateBackendUnavailable, match="refused the credentials") as excinfo:
        StateManager.from_url(url)
    assert time.monotonic() - started < 10  # not retried until the timeout
    assert "motia_pw:***@" in str(excinfo.value)
    assert "not-the-password" not in str(excinfo.value)
    # and the right password opens the store
    with SyncStateManager.from_url(postgres_server.password_url(PASSWORD) + "?schema=pw") as sm:
        sm.set("s", "k", 1)


@pytest.mark.parametrize("schema", ["public", "limited"])
def test_a_missing_permission_is_an_error_at_open(postgres_server: PostgresServer, schema: str) -> None:
    # Given a user who may connect but create nothing (no CREATE on the database nor on public)
    with pytest.raises(StateBackendUnavailable, match="denied a permission") as excinfo:
        StateManager.from_url(f"{postgres_server.limited_url}?schema={schema}&timeout=2")
    assert schema in str(excinfo.value)


# -- schemas and the schema version ----------------------------------------------------------------------------


async def test_schemas_are_independent_stores_in_one_database(postgres_server: PostgresServer) -> None:
    async with (
        StateManager.from_url(schema_url(postgres_server, "share_a")) as a,
        StateManager.from_url(schema_url(postgres_server, "share_b")) as b,
    ):
        await a.set("orders", "o1", {"by": "a"})
        await b.set("orders", "o1", {"by": "b"})
        await b.set("orders", "o2", {"by": "b"})
        assert await a.get("orders", "o1") == {"by": "a"}
        assert await a.keys("orders") == ["o1"]
        assert await b.keys("orders") == ["o1", "o2"]
        await a.clear("orders")
        assert await b.count("orders") == 2
    tables = postgres_server.psql(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables"
        " WHERE table_schema LIKE 'share\\_%' AND table_name = 'motia_state' ORDER BY 1"
    )
    assert tables.split() == ["share_a.motia_state", "share_b.motia_state"]


async def test_opening_again_is_idempotent_and_concurrent_opens_agree(postgres_server: PostgresServer) -> None:
    url = schema_url(postgres_server, "reopen")
    managers = await asyncio.gather(*(asyncio.to_thread(StateManager.from_url, url) for _ in range(4)))
    try:
        await managers[0].set("s", "k", 1)
        assert [await sm.get("s", "k") for sm in managers] == [1, 1, 1, 1]
    finally:
        for sm in managers:
            await sm.aclose()
    version = postgres_server.psql("SELECT value FROM reopen.motia_meta WHERE name = 'schema_version'")
    assert version.strip() == str(SCHEMA_VERSION)


async def test_a_version_5_store_migrates_keeping_its_ordered_deliveries(postgres_server: PostgresServer) -> None:
    # Given a store written before order slots (version 5) holding two deliveries of one order key
    url = schema_url(postgres_server, "slots")
    async with StateManager.from_url(url) as sm:
        await sm.backend.enqueue([NewDelivery(f"m{n}", "worker", "queue", b"1", order_key="fifo:g") for n in range(2)])
    postgres_server.psql(
        "ALTER TABLE slots.motia_deliveries DROP COLUMN order_slots;"
        " UPDATE slots.motia_meta SET value = '5' WHERE name = 'schema_version'"
    )
    # When it is opened again
    async with StateManager.from_url(url) as sm:
        # Then the old deliveries are still one at a time, and new ones may have several slots
        assert [d.id for d in await sm.backend.claim(["worker"], owner="w", limit=5, lease=60)] == ["m0"]
        await sm.backend.enqueue(
            [NewDelivery(f"s{n}", "worker", "queue", b"1", order_key="key:k", order_slots=2) for n in range(3)]
        )
        assert [d.id for d in await sm.backend.claim(["worker"], owner="w", limit=5, lease=60)] == ["s0", "s1"]
    version = postgres_server.psql("SELECT value FROM slots.motia_meta WHERE name = 'schema_version'")
    assert version.strip() == str(SCHEMA_VERSION) == "8"


def test_a_store_of_a_newer_schema_version_is_refused(postgres_server: PostgresServer) -> None:
    url = schema_url(postgres_server, "newer")
    SyncStateManager.from_url(url).close()
    postgres_server.psql(f"UPDATE newer.motia_meta SET value = '{SCHEMA_VERSION + 1}' WHERE name = 'schema_version'")
    with pytest.raises(StateBackendUnavailable, match="newer than this pymotia"):
        StateManager.from_url(url)


async def test_an_older_store_is_migrated_keeping_its_deliveries_and_dead_letters(
    postgres_server: PostgresServer,
) -> None:
    # Given a store of schema version 6 (before the errors of failed attempts) with a delivery and a dead letter
    url = schema_url(postgres_server, "upgrade_dl")
    async with StateManager.from_url(url) as sm:
        await sm.backend.enqueue([NewDelivery("p1", "worker", "queue", b"1")])
        await sm.backend.add_dead_letters([NewDelivery("d0", "gone", "queue", b"0")], error="old")
    postgres_server.psql(
        "ALTER TABLE upgrade_dl.motia_deliveries DROP COLUMN first_error, DROP COLUMN last_error;"
        " ALTER TABLE upgrade_dl.motia_dead_letters DROP COLUMN first_error;"
        " UPDATE upgrade_dl.motia_meta SET value = '6' WHERE name = 'schema_version'"
    )
    # When it is opened again
    async with StateManager.from_url(url) as sm:
        # Then what it held is there and failures are recorded
        old = await sm.backend.get_dead_letter("d0")
        assert old is not None and (old.error, old.first_error) == ("old", None)
        (claimed,) = await sm.backend.claim(["worker"], owner="w", limit=5, lease=30)
        assert await sm.backend.retry(claimed.id, owner="w", delay=0, error="first")
        (pending,) = await sm.backend.pending_page()
        assert (pending.id, pending.first_error, pending.last_error) == ("p1", "first", "first")
    version = postgres_server.psql("SELECT value FROM upgrade_dl.motia_meta WHERE name = 'schema_version'")
    assert version.strip() == str(SCHEMA_VERSION)


async def test_a_version_7_store_gets_the_per_key_index_of_every_delivery(postgres_server: PostgresServer) -> None:
    # Given a store of schema version 7: its per-key index partial (ordered deliveries only), a key's backlog
    # longer than a claim's window waiting in it with unordered deliveries before and after it
    url = schema_url(postgres_server, "upgrade_key")
    async with StateManager.from_url(url) as sm:
        await sm.backend.enqueue(
            [NewDelivery("k0", "w", "queue", b"1", "k"), NewDelivery("u0", "w", "queue", b"2")]
            + [NewDelivery(f"k{n}", "w", "queue", b"1", "k") for n in range(1, 100)]
            + [NewDelivery("u1", "w", "queue", b"3")]
        )
    postgres_server.psql(
        "DROP INDEX upgrade_key.motia_deliveries_key;"
        " CREATE INDEX motia_deliveries_order ON upgrade_key.motia_deliveries (step, order_key, seq)"
        " WHERE order_key IS NOT NULL;"
        " UPDATE upgrade_key.motia_meta SET value = '7' WHERE name = 'schema_version'"
    )
    # When it is opened again
    async with StateManager.from_url(url) as sm:
        # Then a claim behind the key's backlog takes its head and the unordered deliveries, in seq order
        claimed = await sm.backend.claim(["w"], owner="a", limit=10, lease=60)
        assert [d.id for d in claimed] == ["k0", "u0", "u1"]
        assert await sm.backend.complete("k0", owner="a")
        assert [d.id for d in await sm.backend.claim(["w"], owner="a", limit=10, lease=60)] == ["k1"]
    # and the partial index made way for one of every delivery, at the current schema version
    indexes = postgres_server.psql(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'upgrade_key' AND tablename = 'motia_deliveries'"
    )
    assert "motia_deliveries_order" not in indexes
    (key,) = [line for line in indexes.splitlines() if line.startswith("motia_deliveries_key|")]
    assert key.endswith("(step, order_key, seq)")
    version = postgres_server.psql("SELECT value FROM upgrade_key.motia_meta WHERE name = 'schema_version'")
    assert version.strip() == str(SCHEMA_VERSION) == "8"


# -- the outbox ------------------------------------------------------------------------------------------------


async def test_writes_record_their_events_once_enabled_even_by_another_process(postgres_server: PostgresServer) -> None:
    url = schema_url(postgres_server, "outbox")
    async with StateManager.from_url(url) as sm:
        # Given writes before events are enabled: they record nothing
        await sm.set("s", "before", 1)
        # When another process enables events (the flag row the DeliveryStore's enable_events sets)
        postgres_server.psql("UPDATE outbox.motia_meta SET value = '1' WHERE name = 'events'")
        # Then every write of this (already open) store records its event, in order, in its transaction
        await sm.set("s", "a", {"v": 1}, ttl=60)
        await sm.update("s", "a", [{"type": "set", "path": "v", "value": 2}])
        await sm.delete("s", "before")
        with pytest.raises(StateConflictError):
            await sm.set("s", "a", 9, if_version=7)  # rolled back: no event
        async with sm.transaction() as tx:
            await tx.set("s", "b", True)
            await tx.set("t", "c", False)
        await sm.clear("t")
    rows = postgres_server.psql(
        "SELECT event_type, convert_from(scope, 'UTF8'), convert_from(key, 'UTF8'),"
        " coalesce(convert_from(old_value, 'UTF8'), '-'), coalesce(convert_from(new_value, 'UTF8'), '-'), version"
        " FROM outbox.motia_state_events ORDER BY seq"
    )
    assert [row.split("|") for row in rows.splitlines()] == [
        ["created", "s", "a", "-", '{"v":1}', "1"],
        ["updated", "s", "a", '{"v":1}', '{"v":2}', "2"],
        ["deleted", "s", "before", "1", "-", "1"],
        ["created", "s", "b", "-", "true", "1"],
        ["created", "t", "c", "-", "false", "1"],
        ["deleted", "t", "c", "false", "-", "1"],
    ]


async def test_expired_keys_are_swept_with_expired_events(postgres_server: PostgresServer) -> None:
    clock = [1_000.0]
    url = schema_url(postgres_server, "sweep")
    async with StateManager.from_url(url, clock=lambda: clock[0]) as sm:
        postgres_server.psql("UPDATE sweep.motia_meta SET value = '1' WHERE name = 'events'")
        await sm.set("s", "short", 1, ttl=5)
        await sm.set("s", "long", 2, ttl=500)
        await sm.set("s", "rewritten", 3, ttl=5)
        clock[0] += 10
        assert await sm.get("s", "short") is None  # invisible at once
        # a write that finds its key expired removes it first (firing "expired"), then creates it anew
        assert (await sm.set("s", "rewritten", 4)).version == 1
        assert await sm.purge_expired() == 1
        assert await sm.purge_expired() == 0
        assert await sm.keys("s") == ["long", "rewritten"]
    rows = postgres_server.psql(
        "SELECT event_type || ':' || convert_from(key, 'UTF8') FROM sweep.motia_state_events ORDER BY seq"
    )
    assert rows.split() == [
        "created:short",
        "created:long",
        "created:rewritten",
        "expired:rewritten",
        "created:rewritten",
        "expired:short",
    ]


# -- connection loss -------------------------------------------------------------------------------------------


@pytest.fixture
def proxy(postgres_server: PostgresServer):
    proxy = PgProxy(postgres_server.port)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.mark.parametrize("cut", ["cut_before_commit", "cut_after_commit"])
async def test_a_connection_cut_around_commit_applies_the_write_exactly_once(proxy: PgProxy, cut: str) -> None:
    # Given a store reached through a proxy that will cut the connection around the next COMMIT
    url = f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres?schema=cut_{cut}&sslmode=disable"
    async with StateManager.from_url(url) as sm:
        await sm.set("s", "k", {"n": 0})
        setattr(proxy, cut, True)
        # When an increment's COMMIT is cut off (before the server got it, or after it committed)
        result = await sm.update("s", "k", INC)
        # Then the call still succeeds, and the increment is applied exactly once
        assert proxy.cuts == 1
        assert result.new_value == {"n": 1}
        entry = await sm.get_entry("s", "k")
        assert entry is not None and entry.value == {"n": 1} and entry.version == 2


@pytest.mark.parametrize("cut", ["cut_before_execute", "cut_after_execute"])
async def test_a_set_whose_reply_is_lost_is_applied_once_and_answers_as_applied(proxy: PgProxy, cut: str) -> None:
    # Given a store reached through a proxy that will cut the connection around the next statement (a set
    # is one statement: motia_set, committed by the server on its own)
    url = f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres?schema=setcut_{cut}&sslmode=disable"
    async with StateManager.from_url(url) as sm:
        await sm.set("s", "k", {"n": 1})
        setattr(proxy, cut, True)
        # When a set's statement never reaches the server, or its reply is lost after it committed
        result = await sm.set("s", "k", {"n": 2})
        # Then the call succeeds with the answer of the one write applied: version 2, the old value 1
        assert proxy.cuts == 1
        assert (result.version, result.old_value, result.new_value) == (2, {"n": 1}, {"n": 2})
        entry = await sm.get_entry("s", "k")
        assert entry is not None and entry.value == {"n": 2} and entry.version == 2


async def test_a_large_set_and_a_conflicting_set_keep_their_meaning(postgres_server: PostgresServer) -> None:
    # Given a key (values up to ONE_STATEMENT_MAX are set by motia_set, larger ones in a transaction)
    async with StateManager.from_url(schema_url(postgres_server, "bigset")) as sm:
        small = await sm.set("s", "k", {"n": 1})
        big = await sm.set("s", "k", {"blob": "x" * (ONE_STATEMENT_MAX + 10)})
        back = await sm.set("s", "k", {"n": 3})
        assert (small.version, big.version, back.version) == (1, 2, 3)
        assert big.old_value == {"n": 1} and back.old_value == {"blob": "x" * (ONE_STATEMENT_MAX + 10)}
        # When a set names another version than the key's, by either path
        with pytest.raises(StateConflictError) as small_conflict:
            await sm.set("s", "k", {"n": 4}, if_version=2)
        with pytest.raises(StateConflictError) as big_conflict:
            await sm.set("s", "k", {"blob": "y" * (ONE_STATEMENT_MAX + 10)}, if_version=0)
        # Then both are conflicts naming the actual version, and nothing was written
        assert (small_conflict.value.expected, small_conflict.value.actual) == (2, 3)
        assert (big_conflict.value.expected, big_conflict.value.actual) == (0, 3)
        entry = await sm.get_entry("s", "k")
        assert entry is not None and entry.value == {"n": 3} and entry.version == 3
        # And if_version=0 creates an absent key by either path
        assert (await sm.set("s", "new", {"n": 1}, if_version=0)).version == 1
        with pytest.raises(StateConflictError):
            await sm.set("s", "new", {"n": 1}, if_version=0)


def test_old_commit_tokens_are_deleted_by_writes(postgres_server: PostgresServer) -> None:
    url = schema_url(postgres_server, "tokens")
    with SyncStateManager.from_url(url) as sm:
        sm.set("s", "k", 1)
    # Given a token older than the keeping time and a fresh one
    old, fresh = int(time.time() - COMMIT_TOKENS_KEPT - 5), int(time.time())
    postgres_server.psql(f"INSERT INTO tokens.motia_commits VALUES ({old}, 1), ({fresh}, 2)")
    # When a newly opened store writes
    with SyncStateManager.from_url(url) as sm:
        sm.set("s", "k", 2)
    # Then the old token is gone, the fresh one kept (with the two writes' own)
    rows = postgres_server.psql("SELECT second, token FROM tokens.motia_commits WHERE token IN (1, 2)")
    assert rows.split() == [f"{fresh}|2"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["restart", "kill"])
async def test_a_server_restarted_under_load_loses_nothing_and_applies_nothing_twice(how: str) -> None:
    # Given a private server and 20 tasks writing (a shared counter and keys of their own)
    server = PostgresServer()
    try:
        url = f"{server.url}?schema=load&timeout=60"
        async with StateManager.from_url(url) as sm:
            done = threading.Event()
            progress = [0]

            async def writer(task: int) -> None:
                for i in range(40):
                    await sm.update("load", "counter", INC)
                    await sm.set("keys", f"{task}-{i}", {"task": task, "i": i})
                    progress[0] += 1

            def bounce() -> None:
                while progress[0] < 200 and not done.is_set():
                    time.sleep(0.005)
                # When the server is restarted (or killed and started: crash recovery) mid-load
                if how == "restart":
                    server.restart()
                else:
                    server.kill()
                    server.start()

            bouncer = threading.Thread(target=bounce)
            bouncer.start()
            try:
                await asyncio.gather(*(writer(task) for task in range(20)))
            finally:
                done.set()
                await asyncio.to_thread(bouncer.join)
            # Then every write returned, each increment landed exactly once, and every key is there
            assert progress[0] == 800
            entry = await sm.get_entry("load", "counter")
            assert entry is not None and entry.value == {"n": 800} and entry.version == 800
            assert await sm.count("keys") == 800
            assert await sm.get("keys", "19-39") == {"task": 19, "i": 39}
    finally:
        server.close()


async def test_calls_racing_aclose_fail_as_closed_never_as_a_backend_error(postgres_url: str) -> None:
    # Given reads and writes in flight on a store
    state = StateManager.from_url(postgres_url)
    await state.set("race", "k", 0)
    calls = [
        asyncio.ensure_future(state.get("race", "k") if i % 2 else state.set("race", f"k{i}", i)) for i in range(60)
    ]
    await asyncio.sleep(0)  # every call has started, none has finished
    # When the store is closed under them
    await state.aclose()
    results = await asyncio.gather(*calls, return_exceptions=True)
    # Then each call either finished or says the store is closed: the pool closing under a call is not a
    # backend failure (it answered StateBackendError "pool is closing" before the fix)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(r, StateClosedError) for r in failures), {type(r).__name__: str(r) for r in failures}
