"""The ``todo`` stream: one group per list (``home``, ``work``...), one item per todo.

Every write through ``ctx.streams.todo`` reaches every page subscribed to that list, live, over Server-Sent
Events (``GET /__motia/streams/todo/{list}``) or Motia's WebSocket clients.
"""

from pydantic import BaseModel, Field


class Todo(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    done: bool = False


config = {"name": "todo", "schema": Todo}
