"""A TCP proxy in front of a PostgreSQL server that can cut a connection exactly around a ``COMMIT``.

The lost-connection cases that matter for "a retried write is never applied twice" are the ones where the
client cannot know whether its transaction committed. A real server plus this proxy makes them happen on
purpose, on a real socket:

- ``cut_before_commit``: the next ``COMMIT`` the client sends is not forwarded; the connection is closed
  instead (the server rolls the transaction back).
- ``cut_after_commit``: the next ``COMMIT`` is forwarded, and when the server's ``CommandComplete`` for it
  comes back, the connection is closed instead of passing it on (the transaction did commit; the client
  never hears so).
- ``cut_before_execute`` and ``cut_after_execute``: the same around a statement run on its own (its implicit
  transaction commits at ``Sync``): the next ``Execute`` is not forwarded, or it is and the server's next
  ``ReadyForQuery`` (sent after the commit) is not passed on.

It parses just enough of the protocol to find those messages: after the start-up packet, every message is a
type byte and a 32-bit length. Runs on its own thread with its own event loop.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from typing import Any


class PgProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.cut_before_commit = False
        self.cut_after_commit = False
        self.cut_before_execute = False
        self.cut_after_execute = False
        #: How many connections were cut on purpose.
        self.cuts = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        assert self._server is not None
        self.port: int = self._server.sockets[0].getsockname()[1]

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self._ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.close()
            return
        state: dict[str, Any] = {"commit_sent": False, "execute_sent": False, "closed": False}

        def cut() -> None:
            if not state["closed"]:
                state["closed"] = True
                self.cuts += 1
            client_writer.transport.abort()
            server_writer.transport.abort()

        async def client_to_server() -> None:
            startup = True
            while True:
                if startup:  # length-prefixed, no type byte (SSLRequest, StartupMessage)
                    head = await client_reader.readexactly(4)
                    body = await client_reader.readexactly(struct.unpack("!I", head)[0] - 4)
                    server_writer.write(head + body)
                    # an SSLRequest is answered by one byte, then the real start-up packet follows
                    startup = body[:4] == b"\x04\xd2\x16\x2f"
                    continue
                kind = await client_reader.readexactly(1)
                head = await client_reader.readexactly(4)
                body = await client_reader.readexactly(struct.unpack("!I", head)[0] - 4)
                if _is_commit(kind, body):
                    if self.cut_before_commit:
                        self.cut_before_commit = False
                        cut()
                        return
                    state["commit_sent"] = True
                if kind == b"E":
                    if self.cut_before_execute:
                        self.cut_before_execute = False
                        cut()
                        return
                    if self.cut_after_execute:
                        self.cut_after_execute = False
                        state["execute_sent"] = True
                server_writer.write(kind + head + body)

        async def server_to_client() -> None:
            ssl_answer_pending = True
            while True:
                if ssl_answer_pending:
                    first = await server_reader.readexactly(1)
                    ssl_answer_pending = False
                    if first in (b"N", b"S"):  # the answer to an SSLRequest
                        client_writer.write(first)
                        continue
                    kind = first
                else:
                    kind = await server_reader.readexactly(1)
                head = await server_reader.readexactly(4)
                body = await server_reader.readexactly(struct.unpack("!I", head)[0] - 4)
                if kind == b"C" and body.startswith(b"COMMIT") and state["commit_sent"]:
                    state["commit_sent"] = False
                    if self.cut_after_commit:
                        self.cut_after_commit = False
                        cut()
                        return
                if kind == b"Z" and state["execute_sent"]:
                    cut()
                    return
                client_writer.write(kind + head + body)

        tasks = [asyncio.ensure_future(client_to_server()), asyncio.ensure_future(server_to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        finally:
            for task in tasks:
                task.cancel()
            client_writer.transport.abort()
            server_writer.transport.abort()


def _is_commit(kind: bytes, body: bytes) -> bool:
    """Whether a client message runs ``COMMIT``: a simple query, or a Parse of it (extended protocol)."""
    if kind == b"Q":
        return body.strip(b"\x00; \n").upper() == b"COMMIT"
    if kind == b"P":
        _name, _, rest = body.partition(b"\x00")
        query = rest.partition(b"\x00")[0]
        return query.strip(b"; \n").upper() == b"COMMIT"
    return False
