"""``PostgresBackend``: the store's methods, composed from the connection layer and one mixin per contract.

The ``StateStore`` methods come from :class:`~motia.state.backends.postgres.keyvalue.PostgresKeyValue`, the
``DeliveryStore`` methods from :class:`~motia.state.backends.postgres.delivery.PostgresDelivery` (its operator
methods from :class:`~motia.state.backends.postgres.operate.PostgresOperations`) and the
``StreamStore`` methods from :class:`~motia.state.backends.postgres.streams.PostgresStreams`; the wake-ups of
other processes' commits (``LISTEN``) from :mod:`~motia.state.backends.postgres.notify`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from motia.state.backends.base import StateBackend
from motia.state.backends.postgres.delivery import PostgresDelivery
from motia.state.backends.postgres.keyvalue import PostgresKeyValue
from motia.state.backends.postgres.operate import PostgresOperations
from motia.state.backends.postgres.schema import migrate
from motia.state.backends.postgres.settings import parse_url
from motia.state.backends.postgres.streams import PostgresStreams


class PostgresBackend(PostgresStreams, PostgresOperations, PostgresDelivery, PostgresKeyValue, StateBackend):
    """State in a PostgreSQL database (10 or newer), shared by every process that opens the same URL and schema.

    Opening connects once and creates or migrates the tables (:mod:`~motia.state.backends.postgres.schema`),
    so an unreachable server, a wrong password or a missing permission is an error here, naming the URL
    (password masked). ``schema`` and ``timeout`` override the URL's options.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        timeout: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        settings = parse_url(url, schema=schema, timeout=timeout)
        self._init_connections(settings)
        self._clock = clock
        self._events_enabled = False
        self._open_blocking(self._prepare)
        self._init_delivery()
        self._init_streams()

    async def _prepare(self, conn: object) -> None:
        await migrate(conn, self.schema, self.url)

    async def aclose(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._close_streams()
        await self._close_delivery()
        await self._close_pools()
