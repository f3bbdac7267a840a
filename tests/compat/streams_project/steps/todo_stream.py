"""The stream the Node client subscribes to: a todo list per group (SPEC 10.1, ``*_stream.py`` style)."""

from pydantic import BaseModel


class Todo(BaseModel):
    title: str
    done: bool = False


config = {"name": "todo", "schema": Todo, "baseConfig": {"storageType": "default"}}


def can_access(subscription, auth_context):
    """Group ``forbidden`` is refused to everyone: the Node client test checks what a refused join sends."""
    return subscription.group_id != "forbidden"
