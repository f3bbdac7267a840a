"""Redis state: one store shared by many processes on many machines (``pymotia[redis]``).

The package, one concept per module:

- :mod:`~motia.state.backends.redis.keys`: the key layout, every key name in one place.
- :mod:`~motia.state.backends.redis.client`: the small Redis client (packing, a channel per event loop,
  auto-pipelining, retries within a deadline, error translation).
- ``functions.lua``: the Redis function library that makes each operation one atomic call on the server;
  ``streams.lua``, appended to it, holds the stream functions.
- :mod:`~motia.state.backends.redis.streams`: the stream half of the backend (a mixin).
- :mod:`~motia.state.backends.redis.backend`: :class:`RedisBackend`, the store's methods.

Importing this package does not import redis-py; opening a store without it raises
:class:`~motia.exceptions.ConfigError` saying ``pip install 'pymotia[redis]'``.
"""

from __future__ import annotations

from motia.state.backends.redis.backend import HINT_BYTES, HINT_VALUE_BYTES, LEASE_KEEP, PURGE_BATCH, RedisBackend
from motia.state.backends.redis.client import logger

__all__ = ["HINT_BYTES", "HINT_VALUE_BYTES", "LEASE_KEEP", "PURGE_BATCH", "RedisBackend", "logger"]
