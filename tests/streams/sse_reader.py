"""Reading a ``text/event-stream`` response event by event (as a browser's ``EventSource`` parses it)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson


@dataclass
class ServerSentEvent:
    event: str
    id: str | None
    data: Any  # the decoded JSON message


@dataclass
class EventReader:
    """The events of one streaming response; comments (keep-alives, the closing reason) are kept apart."""

    response: httpx.Response
    comments: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lines = self.response.aiter_lines()

    async def next(self, timeout: float = 10.0) -> ServerSentEvent | None:
        """The next event, or ``None`` when the response ended."""
        return await asyncio.wait_for(self._next(), timeout)

    async def next_comment(self, timeout: float = 10.0) -> str | None:
        """The next comment line (a keep-alive), skipping nothing else: ``None`` if an event or the end
        comes first."""
        return await asyncio.wait_for(self._next_comment(), timeout)

    async def _next_comment(self) -> str | None:
        async for line in self._lines:
            if line.startswith(":"):
                return line[1:].strip()
            if line:
                return None
        return None

    async def _next(self) -> ServerSentEvent | None:
        event, event_id, data = "message", None, list[str]()
        async for line in self._lines:
            if line == "":
                if data:
                    return ServerSentEvent(event, event_id, orjson.loads("\n".join(data)))
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "id":
                event_id = value
            elif name == "data":
                data.append(value)
        return None
