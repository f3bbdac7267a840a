"""Writes of one statement: a server-side function called outside any explicit transaction, one round trip.

A ``set`` in a transaction of its own costs four round trips (``BEGIN``, the commit token and the row lock,
the write, ``COMMIT``), each one a wait for the server; the raw driver's upsert costs one. So ``set`` calls
``motia_set`` (created by schema version 4, :mod:`~motia.state.backends.postgres.schema`), which does all of
it on the server, in the implicit transaction of its one statement: the guarantees stay those of
:meth:`~motia.state.backends.postgres.connection.PostgresConnections._transact`:

- The commit token is the function's first write, so a probe after a lost reply waits for the call when it
  is still running on the server. Since the statement commits by itself, a reply lost *anywhere* in the call
  leaves its outcome unknown (not only a lost ``COMMIT``): the token is probed on a new connection, and a
  call that committed is answered from the result it kept with its token (``version`` and ``old_value`` of
  ``motia_commits``): never applied twice, and the caller gets the answer of the one that applied.
- An error the server reports rolls the whole call back; a unique violation (two callers creating one key)
  and a serialization failure run it again, as ``_transact`` does.

Kept with the token, a set's previous value stays in ``motia_commits`` as long as the token (minutes): so
only values up to :data:`ONE_STATEMENT_MAX` bytes take this path (the previous value of a key is usually
about its new one's size); a larger one is written by ``_transact``, whose result never needs keeping.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from motia.exceptions import StateError, StateTimeout
from motia.state.backends.postgres.connection import RETRY_PAUSE, RETRY_PAUSE_MAX, PostgresConnections, Tx

logger = logging.getLogger("motia.state.postgres")

#: The largest value a ``set`` writes in one statement (bytes); larger ones are written in a transaction.
ONE_STATEMENT_MAX = 8192
#: The SQLSTATE ``motia_set`` raises when ``if_version`` does not match (the actual version in the detail).
CONFLICT_STATE = "MT409"

#: A committed call's row rebuilt from what its token kept (whether it recorded events is not kept: ``NULL``).
_RESULT = "SELECT NULL::boolean, old_value, version FROM motia_commits WHERE second = $1 AND token = $2"


class VersionConflict(Exception):
    """``motia_set`` found the key at another version than ``if_version`` (nothing was written)."""

    def __init__(self, actual: int) -> None:
        super().__init__(f"at version {actual}")
        self.actual = actual


class PostgresStatements(PostgresConnections):
    """Adds :meth:`_write_statement` to the connection layer."""

    async def _write_statement(self, sql: str, *args: Any, what: str) -> tuple[Any, ...]:
        """The row of ``sql`` (a call of a function that inserts its commit token from ``$1``, ``$2``, and
        keeps its result with it), run on its own with ``args`` as ``$3``...; retried like a transaction, its
        outcome probed after a lost reply: then the row is rebuilt by :data:`_RESULT` (the function's columns
        must be ``(events, old_value, version)``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        pause = RETRY_PAUSE
        warned = False
        error: BaseException | None = None
        while True:
            self._check_open()
            attempt = Tx(None, 0.0, False, False)  # a fresh commit token per attempt
            sent = False
            try:
                async with asyncio.timeout_at(deadline):
                    pool = await self._pool()
                    async with pool.acquire() as conn:
                        try:
                            sent = True
                            row = await conn.fetchrow(sql, attempt.second, attempt.token, *args)
                            await self._sweep_tokens(conn)
                        except BaseException as exc:
                            if not self._healthy_after(exc):
                                self._discard(conn)
                            raise
                        return tuple(row)
            except StateError:
                raise
            except TimeoutError as exc:
                if loop.time() < deadline:  # a connect timeout, not our deadline
                    error = exc
                elif sent:
                    raise StateTimeout(
                        f"{what}: PostgreSQL at {self.url} did not confirm the write within {self.timeout:g} s; "
                        "it may or may not have been applied"
                    ) from None
                elif error is not None:
                    raise self._translate(error, what) from error
                else:
                    raise StateTimeout(
                        f"{what}: PostgreSQL at {self.url} did not answer within {self.timeout:g} s"
                    ) from None
            except Exception as exc:
                if getattr(exc, "sqlstate", None) == CONFLICT_STATE:
                    raise VersionConflict(int(getattr(exc, "detail", None) or 0)) from None
                if self._retry_now(exc):
                    if loop.time() >= deadline:
                        raise self._translate(exc, what) from exc
                    continue
                if not self._connection_lost(exc):
                    raise self._translate(exc, what) from exc
                error = exc
            if sent and await self._committed(attempt, deadline, what):
                rows = await self._fetch(_RESULT, attempt.second, attempt.token, what=what)
                return (*tuple(rows[0]),)
            now = loop.time()
            if not warned:
                warned = True
                logger.warning("PostgreSQL at %s: %s; retrying for up to %.3g s", self.url, error, deadline - now)
            if now >= deadline:
                raise self._translate(error, what) from error
            await asyncio.sleep(min(pause, max(deadline - now, 0.0)))
            pause = min(pause * 2, RETRY_PAUSE_MAX)
