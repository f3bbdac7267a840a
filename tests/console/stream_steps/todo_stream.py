"""A stream of todo items, declared the Motia way (a ``*_stream.py`` file with a ``config``)."""

from pydantic import BaseModel


class Todo(BaseModel):
    title: str
    done: bool = False


config = {"name": "todo", "schema": Todo, "base_config": {"storage_type": "default"}}
