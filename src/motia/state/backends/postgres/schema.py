"""The PostgreSQL schema: its tables, their version, and creating or migrating them when a store is opened.

Every table is named ``motia_*`` and lives in the URL's schema (``?schema=NAME``, default ``public``; created
when missing), so several apps can share one database, each in its own schema.

Layout (version 1, the key-value store and its outbox):

- ``motia_meta (name, value)``: ``schema_version``, and ``events`` (``'0'``/``'1'``): whether writes record
  change events. The ``events`` row always exists; every write whose process has not yet seen it on reads it
  ``FOR SHARE`` in its transaction, and ``enable_events`` sets it with an ``UPDATE`` (which waits for those
  readers), so no write that commits after ``enable_events`` returned misses its event. Once on, it never
  goes off, so a process stops reading it once it saw it on.
- ``motia_state (scope, key, value, version, expires_at)``, primary key ``(scope, key)``. Scopes and keys are
  ``bytea`` holding their UTF-8: byte order is code point order (the order every backend keeps) whatever the
  database's collation or encoding, and a key may hold ``\\x00`` (``text`` cannot). ``value`` is the encoded
  JSON (``bytea``), ``expires_at`` Unix seconds (``NULL``: never), filtered in every read.
- ``motia_state_events`` (the transactional outbox): one row per changed key, inserted in the write's
  transaction: ``seq`` (an identity: ascending in insertion order; for one key also in commit order, since
  writers of a key hold its row lock until they commit), ``event_type`` (``created``, ``updated``,
  ``deleted``, ``expired``), ``scope``, ``key`` (``bytea`` as above), ``old_value``, ``new_value``,
  ``version``, ``timestamp``. ``dispatch_events`` consumes them (and deletes what it consumed).

- ``motia_commits (second, token)``: the commit token of every write transaction, kept
  :data:`~motia.state.backends.postgres.connection.COMMIT_TOKENS_KEPT` seconds (ordered by ``second``, so the
  old ones go in one range delete). When a ``COMMIT``'s reply is lost, finding its token says it committed
  (see :mod:`~motia.state.backends.postgres.connection`).

Version 2, deliveries (their use: :mod:`~motia.state.backends.postgres.delivery`): ``motia_meta``'s ``outbox``
row, which dispatchers lock to take turns; ``motia_deliveries`` (``seq`` an identity giving delivery order,
``id`` unique, ``order_key``, ``attempts``, ``available_at``, ``owner`` and ``lease_until``), indexed by
``(step, seq)`` and ``(step, order_key, seq)`` (ordered deliveries only until version 8);
``motia_subscriptions`` (state triggers of every app, ``b''`` for any scope or key); ``motia_dead_letters``
(``error`` as UTF-8 ``bytea``: a message may hold a NUL); ``motia_cron_ticks`` (``(job, tick)``, tick in
milliseconds); ``motia_leases``; ``motia_steps`` (retention).

Version 3, streams (:mod:`~motia.state.backends.postgres.streams`): ``motia_stream_items`` keyed by
``(stream, grp, item)`` (``bytea``, as keys); ``motia_stream_groups``, one row per group (its ``seq``, live
item count, ``history`` and oldest logged change), locked by each change of the group (a row retention
removes raises ``motia_meta``'s ``stream_seq_floor``, where a new group counts on from: no migration); the change log
``motia_stream_changes`` keyed by ``position``, which a change takes from the one row of
``motia_stream_head`` (locked to commit: positions in commit order); ``motia_stream_subscriptions``.

Version 4, one round trip per ``set`` (:mod:`~motia.state.backends.postgres.statement`): the function
``motia_set`` (:data:`MOTIA_SET`), and ``motia_commits.version``/``old_value``, where a ``set`` keeps its
result with its token (answered from there when its reply was lost).

Version 5, trace context: ``motia_state_events.trace``, the ``traceparent`` of the write that recorded the
event (``NULL`` without tracing), carried to its deliveries (issue 17).

Version 6, keyed concurrency: ``motia_deliveries.order_slots``, how many deliveries of the row's
``(step, order_key)`` may be leased at once (1 for every row written before).

Version 7, dead letters you can operate: ``first_error`` and ``last_error`` (``bytea``, ``NULL`` until an
attempt failed) of ``motia_deliveries``, ``first_error`` of ``motia_dead_letters``.

Version 8, a claim behind a hot key (:mod:`~motia.state.backends.postgres.claim`): ``motia_deliveries_key``,
``(step, order_key, seq)`` over every delivery (unordered ones under ``order_key`` ``NULL``), replaces the partial
``motia_deliveries_order`` (ordered deliveries only).

**Migration.** At open: if ``motia_meta`` says this version, nothing is done (no lock taken). Otherwise, in
one transaction under an advisory lock (``pg_advisory_xact_lock``, per schema, so concurrent openers wait
for one another), every migration past the stored version runs and the version is recorded. A store of a
newer version than this pymotia knows is refused. Every statement is idempotent (``IF NOT EXISTS``), so a
migration interrupted by a crash simply runs again.
"""

from __future__ import annotations

import logging
from typing import Any

from motia.exceptions import StateBackendUnavailable

logger = logging.getLogger("motia.state.postgres")

#: ``StateStore.set`` as one statement (see :mod:`~motia.state.backends.postgres.keyvalue`): the commit token
#: first (a probe after a lost reply waits for this call), the events flag, the row locked, an expired row
#: removed with its event, ``if_version`` checked (SQLSTATE ``MT409``, the actual version in the detail),
#: the write, its event and ``NOTIFY``, and the result kept with the token. Written in the schema of the
#: migration; its statements find the tables through the connection's ``search_path`` (that schema).
MOTIA_SET = """CREATE OR REPLACE FUNCTION motia_set(
    p_second bigint, p_token bigint, p_read_flag boolean, p_scope bytea, p_key bytea, p_value bytea,
    p_expires_at double precision, p_if_version bigint, p_now double precision, p_channel text, p_payload text,
    OUT o_events boolean, OUT o_old bytea, OUT o_version bigint
) LANGUAGE plpgsql AS $motia$
DECLARE
    v_version bigint;
    v_expires double precision;
BEGIN
    INSERT INTO motia_commits (second, token) VALUES (p_second, p_token);
    IF p_read_flag THEN
        SELECT m.value = '1' INTO o_events FROM motia_meta m WHERE m.name = 'events' FOR SHARE;
    ELSE
        o_events := true;
    END IF;
    SELECT s.value, s.version, s.expires_at INTO o_old, v_version, v_expires
        FROM motia_state s WHERE s.scope = p_scope AND s.key = p_key FOR UPDATE;
    IF v_expires IS NOT NULL AND v_expires <= p_now THEN
        DELETE FROM motia_state s WHERE s.scope = p_scope AND s.key = p_key;
        IF o_events THEN
            INSERT INTO motia_state_events (event_type, scope, key, old_value, new_value, version, timestamp)
                VALUES ('expired', p_scope, p_key, o_old, NULL, v_version, p_now);
        END IF;
        o_old := NULL;
        v_version := NULL;
    END IF;
    IF p_if_version IS NOT NULL AND p_if_version <> coalesce(v_version, 0) THEN
        RAISE EXCEPTION 'version conflict' USING ERRCODE = 'MT409', DETAIL = coalesce(v_version, 0)::text;
    END IF;
    o_version := coalesce(v_version, 0) + 1;
    IF v_version IS NULL THEN
        INSERT INTO motia_state (scope, key, value, version, expires_at)
            VALUES (p_scope, p_key, p_value, o_version, p_expires_at);
    ELSE
        UPDATE motia_state s SET value = p_value, version = o_version, expires_at = p_expires_at
            WHERE s.scope = p_scope AND s.key = p_key;
    END IF;
    IF o_events THEN
        INSERT INTO motia_state_events (event_type, scope, key, old_value, new_value, version, timestamp)
            VALUES (CASE WHEN o_old IS NULL THEN 'created' ELSE 'updated' END, p_scope, p_key, o_old, p_value,
                    o_version, p_now);
        PERFORM pg_notify(p_channel, p_payload);
    END IF;
    UPDATE motia_commits c SET version = o_version, old_value = o_old
        WHERE c.second = p_second AND c.token = p_token;
END
$motia$"""

#: ``motia_set`` of version 5: the same, with ``p_trace`` (the writer's ``traceparent``) kept in its events.
MOTIA_SET_TRACED = (
    MOTIA_SET.replace("p_channel text, p_payload text,", "p_channel text, p_payload text, p_trace text,")
    .replace(
        "(event_type, scope, key, old_value, new_value, version, timestamp)",
        "(event_type, scope, key, old_value, new_value, version, timestamp, trace)",
    )
    .replace("o_old, NULL, v_version, p_now);", "o_old, NULL, v_version, p_now, p_trace);")
    .replace("                    o_version, p_now);", "                    o_version, p_now, p_trace);")
)
assert MOTIA_SET_TRACED.count("p_trace") == 3

#: Statements of each schema version, applied in order to a store at an older version.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE IF NOT EXISTS motia_meta (name text PRIMARY KEY, value text NOT NULL)",
        "INSERT INTO motia_meta (name, value) VALUES ('events', '0') ON CONFLICT (name) DO NOTHING",
        """CREATE TABLE IF NOT EXISTS motia_state (
            scope bytea NOT NULL,
            key bytea NOT NULL,
            value bytea NOT NULL,
            version bigint NOT NULL,
            expires_at double precision,
            PRIMARY KEY (scope, key)
        )""",
        "CREATE INDEX IF NOT EXISTS motia_state_expiry ON motia_state (expires_at) WHERE expires_at IS NOT NULL",
        # One row per write transaction, kept a few minutes: proof that it committed when its reply was lost.
        """CREATE TABLE IF NOT EXISTS motia_commits (
            second bigint NOT NULL,
            token bigint NOT NULL,
            PRIMARY KEY (second, token)
        )""",
        """CREATE TABLE IF NOT EXISTS motia_state_events (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_type text NOT NULL,
            scope bytea NOT NULL,
            key bytea NOT NULL,
            old_value bytea,
            new_value bytea,
            version bigint NOT NULL,
            timestamp double precision NOT NULL
        )""",
    ),
    # Deliveries (version 2): the outbox's consumers, leased deliveries, dead letters, cron ticks, leases, steps.
    2: (
        # Dispatchers lock this row for their transaction: they take turns (see postgres/delivery.py).
        "INSERT INTO motia_meta (name, value) VALUES ('outbox', '') ON CONFLICT (name) DO NOTHING",
        """CREATE TABLE IF NOT EXISTS motia_deliveries (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id text NOT NULL UNIQUE,
            step text NOT NULL,
            kind text NOT NULL,
            payload bytea NOT NULL,
            order_key text,
            attempts integer NOT NULL DEFAULT 0,
            available_at double precision NOT NULL,
            owner text,
            lease_until double precision NOT NULL DEFAULT 0,
            created_at double precision NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS motia_deliveries_step ON motia_deliveries (step, seq)",
        """CREATE INDEX IF NOT EXISTS motia_deliveries_order ON motia_deliveries (step, order_key, seq)
            WHERE order_key IS NOT NULL""",
        # Every state-trigger subscription any app registered (b'' = any scope/key): dispatch serves them all.
        """CREATE TABLE IF NOT EXISTS motia_subscriptions (
            step text NOT NULL,
            scope bytea NOT NULL,
            key bytea NOT NULL,
            PRIMARY KEY (step, scope, key)
        )""",
        """CREATE TABLE IF NOT EXISTS motia_dead_letters (
            id text PRIMARY KEY,
            step text NOT NULL,
            kind text NOT NULL,
            payload bytea NOT NULL,
            attempts integer NOT NULL,
            error bytea NOT NULL,
            created_at double precision NOT NULL,
            failed_at double precision NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS motia_dead_letters_failed ON motia_dead_letters (failed_at)",
        """CREATE TABLE IF NOT EXISTS motia_cron_ticks (
            job text NOT NULL,
            tick bigint NOT NULL,
            expires_at double precision NOT NULL,
            PRIMARY KEY (job, tick)
        )""",
        """CREATE TABLE IF NOT EXISTS motia_leases (
            name text PRIMARY KEY,
            owner text NOT NULL,
            expires_at double precision NOT NULL
        )""",
        "CREATE TABLE IF NOT EXISTS motia_steps (step text PRIMARY KEY, seen_at double precision NOT NULL)",
    ),
    # Streams (version 3): items, one row per group, the change log and its head, stream-trigger subscriptions.
    3: (
        """CREATE TABLE IF NOT EXISTS motia_stream_items (
            stream bytea NOT NULL,
            grp bytea NOT NULL,
            item bytea NOT NULL,
            value bytea NOT NULL,
            version bigint NOT NULL,
            PRIMARY KEY (stream, grp, item)
        )""",
        """CREATE TABLE IF NOT EXISTS motia_stream_groups (
            stream bytea NOT NULL,
            grp bytea NOT NULL,
            seq bigint NOT NULL,
            items bigint NOT NULL,
            history bigint NOT NULL,
            oldest bigint NOT NULL,
            oldest_position bigint NOT NULL,
            oldest_time double precision NOT NULL,
            PRIMARY KEY (stream, grp)
        )""",
        """CREATE INDEX IF NOT EXISTS motia_stream_groups_backlog ON motia_stream_groups (stream, grp)
            WHERE oldest <= seq - history""",
        """CREATE TABLE IF NOT EXISTS motia_stream_changes (
            position bigint PRIMARY KEY,
            stream bytea NOT NULL,
            grp bytea NOT NULL,
            item bytea,
            seq bigint NOT NULL,
            kind text NOT NULL,
            old_value bytea,
            new_value bytea,
            timestamp double precision NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS motia_stream_changes_group ON motia_stream_changes (stream, grp, seq)",
        # The newest position: a change takes the next by updating this row, locked until it commits.
        """CREATE TABLE IF NOT EXISTS motia_stream_head (
            id integer PRIMARY KEY CHECK (id = 1),
            position bigint NOT NULL
        )""",
        "INSERT INTO motia_stream_head (id, position) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
        # Stream triggers of every app on the store (b'' group/item: any), served as a union like state's.
        """CREATE TABLE IF NOT EXISTS motia_stream_subscriptions (
            stream bytea NOT NULL,
            step text NOT NULL,
            grp bytea NOT NULL,
            item bytea NOT NULL,
            PRIMARY KEY (stream, step, grp, item)
        )""",
        "CREATE INDEX IF NOT EXISTS motia_stream_subscriptions_step ON motia_stream_subscriptions (step)",
    ),
    # One round trip per set (version 4): motia_set, and the result a token keeps for a lost reply.
    4: (
        "ALTER TABLE motia_commits ADD COLUMN IF NOT EXISTS version bigint",
        "ALTER TABLE motia_commits ADD COLUMN IF NOT EXISTS old_value bytea",
        MOTIA_SET,
    ),
    # The writer's traceparent with each outbox event (issue 17).
    5: (
        "ALTER TABLE motia_state_events ADD COLUMN IF NOT EXISTS trace text",
        # motia_set with the traceparent as its last argument (the 11-argument one of version 4 goes).
        "DROP FUNCTION IF EXISTS motia_set(bigint, bigint, boolean, bytea, bytea, bytea, double precision, bigint,"
        " double precision, text, text)",
        MOTIA_SET_TRACED,
    ),
    # Keyed concurrency: how many deliveries of an order key may be leased at once.
    6: ("ALTER TABLE motia_deliveries ADD COLUMN IF NOT EXISTS order_slots integer NOT NULL DEFAULT 1",),
    # Dead letters you can operate (issue 18): the errors of a delivery's failed attempts, the first kept
    # by its dead letter (self-contained: the lead may renumber it when merging other migrations).
    7: (
        "ALTER TABLE motia_deliveries ADD COLUMN IF NOT EXISTS first_error bytea",
        "ALTER TABLE motia_deliveries ADD COLUMN IF NOT EXISTS last_error bytea",
        "ALTER TABLE motia_dead_letters ADD COLUMN IF NOT EXISTS first_error bytea",
    ),
    # A claim behind a hot key (issue 15): the per-key index holds every delivery, the unordered ones under
    # order_key NULL, so a claim finds each key's head and the unordered deliveries without reading the backlog.
    8: (
        "CREATE INDEX IF NOT EXISTS motia_deliveries_key ON motia_deliveries (step, order_key, seq)",
        "DROP INDEX IF EXISTS motia_deliveries_order",
    ),
}

#: The version this pymotia writes: the newest migration.
SCHEMA_VERSION = max(MIGRATIONS)

#: The advisory lock's first key ("motia" in ASCII); the second is the schema name's hash.
_LOCK_CLASS = 0x6D6F7469


async def migrate(conn: Any, schema: str, url: str) -> None:
    """Create or migrate the tables of ``schema`` on ``conn`` (see the module docstring)."""
    asyncpg = _asyncpg()
    try:
        stored = await conn.fetchval(f"SELECT value FROM \"{schema}\".motia_meta WHERE name = 'schema_version'")
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        stored = None
    if stored is not None and int(stored) == SCHEMA_VERSION:
        return
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, schema)
        exists = await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema)
        if not exists:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        has_meta = await conn.fetchval("SELECT to_regclass('motia_meta') IS NOT NULL")
        stored = await conn.fetchval("SELECT value FROM motia_meta WHERE name = 'schema_version'") if has_meta else None
        current = int(stored) if stored is not None else 0
        if current > SCHEMA_VERSION:
            raise StateBackendUnavailable(
                f"the state store {url} has schema version {current}, newer than this pymotia understands "
                f"({SCHEMA_VERSION}); upgrade pymotia"
            )
        if current == SCHEMA_VERSION:
            return  # another opener migrated it while this one waited for the lock
        statements = [
            statement for version in sorted(MIGRATIONS) if version > current for statement in MIGRATIONS[version]
        ]
        statements.append(
            f"INSERT INTO motia_meta (name, value) VALUES ('schema_version', '{SCHEMA_VERSION}')"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value"
        )
        await conn.execute(";\n".join(statements))  # one round trip (a simple query runs them all, in order)
    if current:
        logger.info("migrated the state store %s from schema version %d to %d", url, current, SCHEMA_VERSION)


def _asyncpg() -> Any:
    import asyncpg

    return asyncpg
