"""Writes the ``todo`` stream on a store from a process of its own: ``python -m tests.console._stream_writer URL``.

The console tests run it as "another process" on a shared store (a SQLite file, a Redis server): its
changes reach the console only through the store's stream log.
"""

from __future__ import annotations

import asyncio
import sys

from motia.state.manager import StateManager
from motia.streams import StreamManager
from motia.streams.config import definition_from_config


async def main(url: str) -> None:
    state = StateManager.from_url(url)
    try:
        streams = StreamManager(state.backend, [definition_from_config({"name": "todo"})])
        await streams.set("todo", "inbox", "p1", {"title": "from another process"})
        await streams.update("todo", "inbox", "p1", [{"type": "set", "path": "done", "value": True}])
        await streams.send("todo", {"groupId": "inbox"}, {"type": "ping", "data": {"from": "writer"}})
        await streams.delete("todo", "inbox", "p1")
    finally:
        await state.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
