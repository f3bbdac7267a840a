"""An open console event stream driven over ASGI message by message, for the in-process feed tests."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson


class Feed:
    """An open ``/__motia/api/events`` stream, driven over ASGI message by message (the in-process HTTP
    client would only return the body once the stream ends)."""

    def __init__(self, asgi: Any) -> None:
        self.asgi = asgi
        self.started = asyncio.Event()
        self.status: int | None = None
        self.messages: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._buffer = b""
        self._disconnect = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _receive(self) -> dict[str, Any]:
        await self._disconnect.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.started.set()
            return
        self._buffer += message.get("body", b"")
        while b"\n\n" in self._buffer:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            lines = [line for line in block.decode().splitlines() if line and not line.startswith((":", "retry"))]
            fields = dict(line.split(": ", 1) for line in lines)
            if "data" in fields:
                self.messages.put_nowait((fields.get("event", "message"), orjson.loads(fields["data"])))

    async def open(self) -> Feed:
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/__motia/api/events",
            "headers": [(b"host", b"127.0.0.1:3111")],
            "query_string": b"",
        }
        self._task = asyncio.create_task(self.asgi(scope, self._receive, self._send))
        await asyncio.wait_for(self.started.wait(), 10)
        return self

    async def next(self, kind: str = "stream") -> dict[str, Any]:
        while True:
            event, data = await asyncio.wait_for(self.messages.get(), 10)
            if event == kind:
                return data

    async def close(self) -> None:
        self._disconnect.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, 10)
