"""Stream declarations: StreamConfig (motia-py 1.0 and Motia's camelCase dict) and its checks."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from motia import ConfigError, Stream, StreamConfig
from motia.streams.config import DEFAULT_HISTORY, StreamDefinition, check_stream_name, definition_from_config


class Todo(BaseModel):
    title: str
    done: bool = False


class WithId(BaseModel):
    id: str
    title: str


def can_access(subscription, auth_context):
    return True


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"name": "todo"}, StreamDefinition("todo")),
        ({"name": "todo", "schema": Todo}, StreamDefinition("todo", schema=Todo)),
        (
            {"name": "todo", "schema": {"type": "object"}, "baseConfig": {"storageType": "default"}},
            StreamDefinition("todo", schema={"type": "object"}),
        ),
        (
            {"name": "todo", "base_config": {"storage_type": "default"}, "history": 5},
            StreamDefinition("todo", history=5),
        ),
        ({"name": "chat-room.v2:a_b"}, StreamDefinition("chat-room.v2:a_b")),
        ({"name": "todo", "canAccess": can_access}, StreamDefinition("todo", can_access=can_access)),
        (
            StreamConfig(name="todo", schema=Todo, description="d"),
            StreamDefinition("todo", schema=Todo, description="d"),
        ),
    ],
)
def test_configs_that_declare_a_stream(config, expected):
    assert definition_from_config(config) == expected


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "name"),
        ({"name": ""}, "must not be empty"),
        ({"name": "to do"}, "may hold only"),
        ({"name": "a/b"}, "may hold only"),
        ({"name": 3}, "name"),
        ({"name": "todo", "schema": 3}, "schema must be"),
        ({"name": "todo", "schema": str}, "schema must be"),
        ({"name": "todo", "baseConfig": {"storageType": "custom"}}, "storage_type 'custom' is not supported"),
        ({"name": "todo", "history": 0}, "history"),
        ({"name": "todo", "canAccess": "yes"}, "canAccess: Input should be callable"),
        ({"name": "todo", "colour": "red"}, "colour"),
        ("todo", "must be a dict or a StreamConfig"),
    ],
)
def test_bad_configs_fail_naming_the_problem_and_the_file(config, message):
    with pytest.raises(ConfigError) as caught:
        definition_from_config(config, source="steps/todo_stream.py")
    assert message in str(caught.value)
    if isinstance(config, dict):
        assert "steps/todo_stream.py" in str(caught.value)


def test_module_hooks_join_the_config_and_the_configs_own_win():
    def other(subscription, auth_context):
        return False

    definition = definition_from_config({"name": "todo", "canAccess": can_access}, hooks={"can_access": other})
    assert definition.can_access is can_access
    assert definition_from_config({"name": "todo"}, hooks={"on_join": other}).on_join is other


def test_defaults():
    definition = definition_from_config({"name": "todo"})
    assert definition.history == DEFAULT_HISTORY >= 1000
    assert definition.schema is None and definition.can_access is None


def test_declares_id_tells_whether_the_schema_has_an_id_field():
    assert not StreamDefinition("t").declares_id()
    assert not StreamDefinition("t", schema=Todo).declares_id()
    assert StreamDefinition("t", schema=WithId).declares_id()
    assert StreamDefinition("t", schema={"properties": {"id": {"type": "string"}}}).declares_id()
    assert not StreamDefinition("t", schema={"type": "object"}).declares_id()


def test_a_stream_object_records_the_file_that_declared_it():
    todo = Stream(StreamConfig(name="todo"))
    assert todo.definition is not None and todo.definition.source == __file__
    assert Stream("todo").definition is None  # a reference declares nothing


@pytest.mark.parametrize("name", ["", "a b", "x" * 257, None])
def test_check_stream_name_refuses(name):
    with pytest.raises(ConfigError):
        check_stream_name(name)
