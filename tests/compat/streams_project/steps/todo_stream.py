"""The stream the Node client subscribes to: a todo list per group (SPEC 10.1, ``*_stream.py`` style)."""

from pydantic import BaseModel


class Todo(BaseModel):
    title: str
    done: bool = False


config = {"name": "todo", "schema": Todo, "baseConfig": {"storageType": "default"}}
