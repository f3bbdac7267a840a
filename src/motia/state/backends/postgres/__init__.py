"""PostgreSQL state (``pymotia[postgres]``, driver asyncpg): many processes and machines on one database.

The package, one concept per module (each module's docstring holds its part of the design):

- :mod:`~motia.state.backends.postgres.settings`: the URL and its options.
- :mod:`~motia.state.backends.postgres.connection`: a pool per event loop,
  transactions retried on connection loss (never applied twice), the translation of driver errors.
- :mod:`~motia.state.backends.postgres.schema`: the tables, ``SCHEMA_VERSION``, creating or migrating them at open.
- :mod:`~motia.state.backends.postgres.keyvalue`: the key-value store (``StateStore``) and its outbox.
- :mod:`~motia.state.backends.postgres.delivery`: the ``DeliveryStore``: dispatch, leased deliveries, dead
  letters, cron tick claims, named leases, retention.
- :mod:`~motia.state.backends.postgres.streams`: the ``StreamStore``: items, the change log, tails.
- :mod:`~motia.state.backends.postgres.stream_retention`: stream history removed by age, empty groups forgotten.
- :mod:`~motia.state.backends.postgres.notify`: wake-ups across processes (``LISTEN``/``NOTIFY``).
- :mod:`~motia.state.backends.postgres.backend`: :class:`PostgresBackend`, composed from them.

Why asyncpg rather than psycopg 3: on the same server and machine, 2000 sequential upserts ran 20-35 %
faster with asyncpg (binary protocol, prepared statements cached per connection) and its pool was as fast
or faster under 2000 concurrent upserts; both are maintained and typed enough. The figures are in
``docs/benchmarks.md``.
"""

from __future__ import annotations

from motia.state.backends.postgres.backend import PostgresBackend
from motia.state.backends.postgres.connection import POOL_SIZE
from motia.state.backends.postgres.schema import MIGRATIONS, SCHEMA_VERSION
from motia.state.backends.postgres.settings import DEFAULT_SCHEMA, DEFAULT_TIMEOUT, PostgresSettings, parse_url

__all__ = [
    "DEFAULT_SCHEMA",
    "DEFAULT_TIMEOUT",
    "MIGRATIONS",
    "POOL_SIZE",
    "SCHEMA_VERSION",
    "PostgresBackend",
    "PostgresSettings",
    "parse_url",
]
