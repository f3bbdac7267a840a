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

Later versions add the delivery and stream tables (one entry of :data:`MIGRATIONS` each).

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
