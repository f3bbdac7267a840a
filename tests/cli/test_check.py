"""``motia check``: every problem of every step file, with its file; exit 1 if any; nothing served."""

from __future__ import annotations

import sys
from pathlib import Path

from click.testing import CliRunner

from motia.cli import main

GOOD = 'from motia import http, step\nconfig = {"name": "NAME", "triggers": [http("GET", "/NAME")]}\nhandler = print\n'


def project(root: Path, files: dict[str, str]) -> Path:
    steps = root / "steps"
    for name, text in files.items():
        (steps / name).parent.mkdir(parents=True, exist_ok=True)
        (steps / name).write_text(text)
    return steps


def test_clean_project_exits_0(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    project(tmp_path, {"a_step.py": GOOD.replace("NAME", "a"), "sub/b_step.py": GOOD.replace("NAME", "b")})
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok: 2 steps in 2 files\n"


def test_every_problem_is_printed_with_its_file(tmp_path):
    steps = project(
        tmp_path,
        {
            "a_step.py": "syntax error here\n",
            "b_step.py": '{"type": "event"}\nconfig = {"type": "event", "name": "b"}\nhandler = print\n',
            "c_step.py": GOOD.replace("NAME", "c"),
            "d_step.py": GOOD.replace("NAME", "c").replace('"/c"', '"/d"'),
        },
    )
    result = CliRunner().invoke(main, ["check", "--dir", str(steps)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 4, lines
    assert lines[0].startswith("error: ") and "a_step.py:1: failed to import: SyntaxError" in lines[0]
    assert "b_step.py" in lines[1] and "an event step needs 'subscribes'" in lines[1]
    assert "d_step.py: duplicate step name 'c'" in lines[2]
    assert lines[3] == "3 problems found (1 step in 1 file loaded)"
    assert result.stdout == ""


def test_missing_directory(tmp_path):
    result = CliRunner().invoke(main, ["check", "--dir", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "does not exist" in result.stderr


def test_step_files_may_import_from_the_project_directory(tmp_path, monkeypatch):
    # Given a helper module at the project root (Motia's templates import `src.services...` this way)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    (tmp_path / "check_helper_mod.py").write_text("GREETING = 'hi'\n")
    body = GOOD.replace("NAME", "a") + "from check_helper_mod import GREETING\n"
    project(tmp_path, {"a_step.py": body})
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 0, result.output


def test_a_stream_trigger_on_an_undeclared_stream_is_a_problem_of_its_file(tmp_path, monkeypatch):
    # Given a stream file declaring "todo" and two steps with stream triggers, one on a misspelt stream
    monkeypatch.chdir(tmp_path)
    watcher = 'from motia import stream\nconfig = {"name": "NAME", "triggers": [stream("STREAM")]}\nhandler = print\n'
    project(
        tmp_path,
        {
            "todo_stream.py": 'config = {"name": "todo"}\n',
            "ok_step.py": watcher.replace("NAME", "ok").replace("STREAM", "todo"),
            "typo_step.py": watcher.replace("NAME", "typo").replace("STREAM", "todos"),
        },
    )
    # When checked, then the misspelt one is reported with its file, step and stream
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("error: steps/typo_step.py: step 'typo' has a stream trigger on 'todos'")
    assert "declared streams: todo" in lines[0]
    assert lines[1] == "1 problem found (2 steps in 2 files loaded)"
