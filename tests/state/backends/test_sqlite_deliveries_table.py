"""Schema version 5 (issue 15): ``motia_deliveries`` without ``AUTOINCREMENT``, and older files rebuilt in place
with their waiting deliveries, order and indexes intact."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from motia import StateManager
from motia.state.backends import sqlite as sqlite_backend
from motia.state.backends.types import NewDelivery

#: The table as schema versions 1-4 made it.
OLD_TABLE = """CREATE TABLE motia_deliveries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        step TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload BLOB NOT NULL,
        order_key TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        available_at REAL NOT NULL,
        owner TEXT,
        lease_until REAL NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    )"""


def table_sql(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        row = connection.execute("SELECT sql FROM sqlite_master WHERE name = 'motia_deliveries'").fetchone()
        return str(row[0])


def index_names(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        query = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'motia_deliveries'"
        return {name for (name,) in connection.execute(query)}


async def test_a_new_file_has_no_autoincrement(sqlite_url: str, sqlite_path: Path) -> None:
    async with StateManager.from_url(sqlite_url):
        pass
    assert "AUTOINCREMENT" not in table_sql(sqlite_path).upper()


async def test_a_schema_4_file_is_rebuilt_with_its_waiting_deliveries_in_order(
    sqlite_url: str, sqlite_path: Path
) -> None:
    # Given a schema 4 file (deliveries table with AUTOINCREMENT) holding waiting deliveries of one key
    async with StateManager.from_url(sqlite_url) as sm:
        pass
    indexes = index_names(sqlite_path)
    with contextlib.closing(sqlite3.connect(sqlite_path, isolation_level=None)) as connection:
        connection.execute("DROP TABLE motia_deliveries")
        connection.execute(OLD_TABLE)
        connection.execute("CREATE INDEX motia_deliveries_step ON motia_deliveries (step, seq)")
        connection.execute(
            "CREATE INDEX motia_deliveries_order ON motia_deliveries (step, order_key, seq) WHERE order_key IS NOT NULL"
        )
        for seq, delivery_id in ((7, "first"), (9, "second"), (12, "other")):
            order = "k" if delivery_id != "other" else "o"
            connection.execute(
                "INSERT INTO motia_deliveries (seq, id, step, kind, payload, order_key, available_at, created_at)"
                " VALUES (?, ?, 'w', 'queue', x'31', ?, 0, 0)",
                (seq, delivery_id, order),
            )
        connection.execute("UPDATE motia_meta SET value = '4' WHERE name = 'schema_version'")
    assert "AUTOINCREMENT" in table_sql(sqlite_path)
    # When it is opened
    async with StateManager.from_url(sqlite_url) as sm:
        backend = sm.backend
        # Then the deliveries are all there, still one at a time per order key, oldest first
        assert await backend.pending("w") == 3
        first = await backend.claim(["w"], owner="a", limit=10, lease=60)
        assert [d.id for d in first] == ["first", "other"]
        assert await backend.complete_many(["first", "other"], owner="a") == {"first", "other"}
        # And a delivery added now comes after every one waiting
        assert await backend.enqueue([NewDelivery("third", "w", "queue", b"3", "k")]) == 1
        assert [d.id for d in await backend.claim(["w"], owner="a", limit=10, lease=60)] == ["second"]
        assert await backend.complete_many(["second"], owner="a") == {"second"}
        assert [d.id for d in await backend.claim(["w"], owner="a", limit=10, lease=60)] == ["third"]
    # and the table has no AUTOINCREMENT, the same indexes, and the current schema version
    assert "AUTOINCREMENT" not in table_sql(sqlite_path).upper()
    assert index_names(sqlite_path) == indexes
    with contextlib.closing(sqlite3.connect(sqlite_path)) as connection:
        version = connection.execute("SELECT value FROM motia_meta WHERE name = 'schema_version'").fetchone()[0]
        assert connection.execute(
            "SELECT count(*) FROM sqlite_sequence WHERE name = 'motia_deliveries'"
        ).fetchone() == (0,)
    assert version == str(sqlite_backend.SCHEMA_VERSION) == "10"


async def test_a_schema_9_file_gets_the_per_key_index_of_every_delivery(sqlite_url: str, sqlite_path: Path) -> None:
    # Given a schema 9 file: its per-key index partial (ordered deliveries only), deliveries waiting in it
    async with StateManager.from_url(sqlite_url) as sm:
        await sm.backend.enqueue(
            [NewDelivery("k0", "w", "queue", b"1", "k"), NewDelivery("u0", "w", "queue", b"2")]
            + [NewDelivery(f"k{n}", "w", "queue", b"1", "k") for n in range(1, 100)]
            + [NewDelivery("u1", "w", "queue", b"3")]
        )
    with contextlib.closing(sqlite3.connect(sqlite_path, isolation_level=None)) as connection:
        connection.execute("DROP INDEX motia_deliveries_key")
        connection.execute(
            "CREATE INDEX motia_deliveries_order ON motia_deliveries (step, order_key, seq) WHERE order_key IS NOT NULL"
        )
        connection.execute("UPDATE motia_meta SET value = '9' WHERE name = 'schema_version'")
    # When it is opened
    async with StateManager.from_url(sqlite_url) as sm:
        # Then a claim behind the key's backlog still takes its head and the unordered deliveries, in seq order
        claimed = await sm.backend.claim(["w"], owner="a", limit=10, lease=60)
        assert [d.id for d in claimed] == ["k0", "u0", "u1"]
    # and the partial index made way for one of every delivery, at the current schema version
    with contextlib.closing(sqlite3.connect(sqlite_path)) as connection:
        indexes = dict(
            connection.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'motia_deliveries'"
            )
        )
        version = connection.execute("SELECT value FROM motia_meta WHERE name = 'schema_version'").fetchone()[0]
    assert "motia_deliveries_order" not in indexes
    assert "WHERE" not in indexes["motia_deliveries_key"].upper()
    assert version == str(sqlite_backend.SCHEMA_VERSION) == "10"
