"""SQLite state: the embedded default. One file, many processes, acknowledged = committed.

The package, one concept per module (each module's docstring holds its part of the design):

- :mod:`~motia.state.backends.sqlite.schema`: the tables, ``SCHEMA_VERSION``, creating or upgrading them at open.
- :mod:`~motia.state.backends.sqlite.connection`: a connection per thread, fork handling, WAL checkpoints,
  reads, and the translation of driver errors.
- :mod:`~motia.state.backends.sqlite.writer`: group commit per event loop, one transaction per batch.
- :mod:`~motia.state.backends.sqlite.transaction`: the buffered rows and events of one batch.
- :mod:`~motia.state.backends.sqlite.keyvalue`: the key-value writes (set, update, delete, clear, ...).
- :mod:`~motia.state.backends.sqlite.delivery`: the outbox, deliveries, dead letters, cron ticks, leases,
  retention.
- :mod:`~motia.state.backends.sqlite.streams`: stream items, the change log (positions, trimming), tails, and
  stream-trigger deliveries made in the write's transaction.
- :mod:`~motia.state.backends.sqlite.backend`: :class:`SQLiteBackend`, the store's methods composed from them.
"""

from __future__ import annotations

from motia.state.backends.sqlite.backend import INLINE_PAGE_LIMIT, SQLiteBackend
from motia.state.backends.sqlite.connection import (
    CHECKPOINT_WRITES,
    OPEN_RETRY_PAUSE,
    OPEN_RETRY_PAUSE_MAX,
    SQLITE_READONLY,
    logger,
)
from motia.state.backends.sqlite.delivery import TICK_PRUNE_INTERVAL
from motia.state.backends.sqlite.keyvalue import CLEAR_CHUNK_BYTES, CLEAR_CHUNK_ROWS
from motia.state.backends.sqlite.schema import SCHEMA_VERSION
from motia.state.backends.sqlite.writer import MAX_BATCH, SWEEP_BATCH

__all__ = [
    "CHECKPOINT_WRITES",
    "CLEAR_CHUNK_BYTES",
    "CLEAR_CHUNK_ROWS",
    "INLINE_PAGE_LIMIT",
    "MAX_BATCH",
    "OPEN_RETRY_PAUSE",
    "OPEN_RETRY_PAUSE_MAX",
    "SCHEMA_VERSION",
    "SQLITE_READONLY",
    "SWEEP_BATCH",
    "SQLiteBackend",
    "TICK_PRUNE_INTERVAL",
    "logger",
]
