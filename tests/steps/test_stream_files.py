"""Stream discovery: stream files (config + hooks, or Stream objects) and Stream objects of step files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from motia import StepLoadError
from motia.steps.loader import load_steps
from motia.steps.stream_files import discover_stream_files, is_stream_file, load_streams


def write(root: Path, rel: str, body: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("todo_stream.py", True),
        ("todo.stream.py", True),
        ("_stream.py", False),
        ("stream.py", False),
        ("todo_step.py", False),
    ],
)
def test_is_stream_file(name, expected):
    assert is_stream_file(name) is expected


def test_stream_files_declare_by_config_with_hooks_or_by_objects(tmp_path):
    write(
        tmp_path,
        "todo_stream.py",
        """
        from pydantic import BaseModel

        class Todo(BaseModel):
            title: str

        config = {"name": "todo", "schema": Todo, "baseConfig": {"storageType": "default"}}

        def can_access(subscription, auth_context):
            return auth_context is not None

        async def on_join(subscription, ctx, auth_context):
            pass
        """,
    )
    write(
        tmp_path,
        "chat/messages.stream.py",
        """
        from motia import Stream, StreamConfig
        messages = Stream(StreamConfig(name="messages", history=50))
        """,
    )
    assert [p.name for p in discover_stream_files(tmp_path)] == ["todo_stream.py", "messages.stream.py"]
    definitions = {d.name: d for d in load_streams(tmp_path)}
    assert sorted(definitions) == ["messages", "todo"]
    todo = definitions["todo"]
    assert todo.schema.__name__ == "Todo" and todo.can_access is not None and todo.on_join is not None
    assert todo.on_leave is None and todo.source == str(tmp_path / "todo_stream.py")
    assert definitions["messages"].history == 50


def test_stream_objects_in_step_files_declare_and_references_do_not(tmp_path):
    write(
        tmp_path,
        "add_step.py",
        """
        from motia import Stream, StreamConfig, http, step
        progress = Stream(StreamConfig(name="progress"))
        todo = Stream("todo")  # a reference to a stream declared elsewhere

        @step({"name": "add", "triggers": [http("POST", "/add")]})
        async def add(input, ctx):
            return {"status": 200}
        """,
    )
    loaded = load_steps(tmp_path)
    assert [d.name for d in load_streams(tmp_path, loaded)] == ["progress"]


def test_two_declarations_of_one_name_fail_naming_both_files(tmp_path):
    write(tmp_path, "a_stream.py", 'config = {"name": "todo"}\n')
    write(tmp_path, "b_stream.py", 'config = {"name": "todo", "history": 5}\n')
    with pytest.raises(StepLoadError) as caught:
        load_streams(tmp_path)
    assert "duplicate stream name 'todo'" in str(caught.value)
    assert "a_stream.py" in str(caught.value) and "b_stream.py" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("x = 1\n", "needs a module-level `config`"),
        ('config = {"name": "bad name"}\n', "may hold only"),
        ('config = {"name": "t", "schema": 5}\n', "schema must be"),
        ("raise RuntimeError('boom')\n", "failed to import: RuntimeError: boom"),
        ('config = {"name": "t"}\ncan_access = 5\n', "can_access"),
    ],
)
def test_bad_stream_files_fail_naming_the_file(tmp_path, body, message):
    write(tmp_path, "bad_stream.py", body)
    with pytest.raises(StepLoadError) as caught:
        load_streams(tmp_path)
    assert "bad_stream.py" in str(caught.value) and message in str(caught.value)
