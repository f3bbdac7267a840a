from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from motia import StepLoadError, http
from motia.steps.loader import (
    check_steps_dir,
    discover_step_files,
    generate_step_id,
    is_step_file,
    load_step_file,
    load_steps,
)

HEADER = "from motia import cron, http, step\n"


def write(root: Path, rel: str, body: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + textwrap.dedent(body))
    return path


def http_step(name: str, method: str = "GET", path: str = "/x") -> str:
    return f"""
    @step({{"name": {name!r}, "triggers": [http({method!r}, {path!r})]}})
    async def handler_{name}(input, ctx):
        return {{"status": 200}}
    """


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("get_session_step.py", True),
        ("get-session.step.py", True),
        ("step.py", False),
        ("_step.py", False),
        ("get_session.py", False),
        ("get_session_step.pyc", False),
        ("get_session_steps.py", False),
    ],
)
def test_is_step_file(name, expected):
    assert is_step_file(name) is expected


def test_discovery_is_recursive_sorted_and_skips_hidden_dirs(tmp_path):
    for rel in [
        "b_step.py",
        "a/z.step.py",
        "a/helper.py",
        ".hidden/c_step.py",
        "__pycache__/d_step.py",
        "a/b/c_step.py",
    ]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    found = [p.relative_to(tmp_path).as_posix() for p in discover_step_files(tmp_path)]
    assert found == ["b_step.py", "a/z.step.py", "a/b/c_step.py"]


def test_missing_directory_is_an_error(tmp_path):
    with pytest.raises(StepLoadError, match="does not exist"):
        load_steps(tmp_path / "nope")


def test_three_styles_and_module_style_load(tmp_path):
    write(
        tmp_path,
        "builder_step.py",
        """
    async def handler(input, ctx):
        return None
    default = step({"name": "builder", "triggers": [http("GET", "/a")]}, handler)
    """,
    )
    write(
        tmp_path,
        "handle_step.py",
        """
    def fn(input):
        return None
    default = step({"name": "handle", "triggers": [http("GET", "/b")]}).handle(fn)
    """,
    )
    write(tmp_path, "decorator.step.py", http_step("decorator", path="/c"))
    write(
        tmp_path,
        "module_step.py",
        """
    config = {"name": "module", "triggers": [cron("0 * * * *")], "virtualEnqueues": ["x"]}
    async def handler(_, ctx):
        return None
    """,
    )
    loaded = load_steps(tmp_path)
    assert sorted(ls.step.name for ls in loaded) == ["builder", "decorator", "handle", "module"]
    by_name = {ls.step.name: ls for ls in loaded}
    assert by_name["decorator"].path.name == "decorator.step.py"
    assert by_name["handle"].step.arity == 1


def test_config_plus_builder_in_one_file_is_one_step(tmp_path):
    # The docs' shape: a module-level config dict *and* `default = step(config, handler)`.
    write(
        tmp_path,
        "x_step.py",
        """
    config = {"name": "x", "triggers": [http("GET", "/x")]}
    async def handler(input, ctx):
        return None
    default = step(config, handler)
    """,
    )
    assert [ls.step.name for ls in load_steps(tmp_path)] == ["x"]


def test_several_steps_in_one_file(tmp_path):
    write(tmp_path, "multi_step.py", http_step("one", path="/1") + http_step("two", path="/2"))
    assert [s.name for s in load_step_file(tmp_path / "multi_step.py")] == ["one", "two"]


def test_file_without_step_is_a_warning(tmp_path, caplog):
    write(tmp_path, "empty_step.py", "X = 1\n")
    assert load_steps(tmp_path) == []
    assert "declares no step" in caplog.text


def test_step_files_can_define_pydantic_models(tmp_path):
    write(
        tmp_path,
        "model_step.py",
        """
    from pydantic import BaseModel
    class Body(BaseModel):
        n: int
    default = step({"name": "m", "triggers": [http("POST", "/m", body_schema=Body)]}, lambda input: None)
    """,
    )
    [loaded] = load_steps(tmp_path)
    assert loaded.step.http_triggers[0].body_schema.model_validate({"n": 1}).n == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("import nonexistent_module_xyz\n", r"bad_step\.py:2: failed to import: ModuleNotFoundError"),
        ("def broken(:\n", r"bad_step\.py:2: failed to import: SyntaxError"),
        ("raise RuntimeError('boom')\n", r"bad_step\.py:2: failed to import: RuntimeError: boom"),
        ("default = step({'name': 'x', 'trigers': []}, lambda i: 0)\n", r"bad_step\.py:2: invalid config .*trigers"),
        (
            "default = step({'name': 'x', 'triggers': [cron('every hour')]}, lambda i: 0)\n",
            r"bad_step\.py:2: invalid cron expression 'every hour'",
        ),
        ("default = step({'name': 'x', 'triggers': [http('GET', 'x')]}, lambda i: 0)\n", r"bad_step\.py:2: .*'/'"),
        ("pending = step({'name': 'x'})\n", r"bad_step\.py: pending = step\(\.\.\.\) has no handler"),
        ("config = {'name': 'x'}\n", r"bad_step\.py: has a module-level `config` but no `handler`"),
        ("config = {'name': 'x'}\ndef handler(a, b, c): ...\n", r"bad_step\.py: handler .* takes 3 arguments"),
        ("config = {'nome': 'x'}\ndef handler(i): ...\n", r"bad_step\.py: invalid config .*nome: unknown key"),
    ],
)
def test_load_errors_name_the_file(tmp_path, monkeypatch, body, message):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "steps/bad_step.py", body)
    with pytest.raises(StepLoadError, match=message) as info:
        load_steps(tmp_path / "steps")
    assert str(info.value).startswith("steps/bad_step.py")


def test_duplicate_step_name_names_both_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "steps/a_step.py", http_step("same", path="/a"))
    write(tmp_path, "steps/b_step.py", http_step("same", path="/b"))
    with pytest.raises(StepLoadError, match=r"steps/b_step\.py: duplicate step name 'same' .*steps/a_step\.py"):
        load_steps("steps")


def test_duplicate_route_across_param_syntaxes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "steps/a_step.py", http_step("a", path="/s/:id"))
    write(tmp_path, "steps/b_step.py", http_step("b", path="/s/{key}"))
    with pytest.raises(StepLoadError, match=r"steps/b_step\.py: duplicate route GET /s/\{key\} in step 'b' .*'a'"):
        load_steps("steps")


def test_same_path_different_methods_is_fine(tmp_path):
    write(tmp_path, "a_step.py", http_step("a", "GET", "/s/:id"))
    write(tmp_path, "b_step.py", http_step("b", "DELETE", "/s/:id"))
    assert len(load_steps(tmp_path)) == 2


def test_a_step_imported_by_another_file_registers_once(tmp_path, monkeypatch):
    write(tmp_path, "shared_helpers.py", http_step("shared", path="/shared"))
    (tmp_path / "shared_helpers.py").rename(tmp_path / "lib.py")
    write(tmp_path, "steps/a_step.py", "from lib import handler_shared as shared\n")
    write(tmp_path, "steps/b_step.py", "from lib import handler_shared as again\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_steps(tmp_path / "steps")
    assert [ls.step.name for ls in loaded] == ["shared"]
    assert loaded[0].step.http_triggers == [http("GET", "/shared")]


# -- include_files and check_steps_dir (motia check) ----------------------------------------------------------


def test_include_files_resolve_relative_to_the_step_file_with_globs(tmp_path):
    write(tmp_path, "lib/prompts/a.txt", "")
    write(tmp_path, "lib/prompts/b.txt", "")
    write(tmp_path, "lib/extra.json", "")
    write(
        tmp_path,
        "lib/uses_step.py",
        """
        config = {"name": "uses", "triggers": [], "includeFiles": ["prompts/*.txt", "extra.json"]}
        async def handler(input, ctx): ...
        """,
    )
    [loaded] = load_steps(tmp_path)
    names = [p.relative_to(tmp_path.resolve()).as_posix() for p in loaded.include_files]
    assert names == ["lib/prompts/a.txt", "lib/prompts/b.txt", "lib/extra.json"]
    assert loaded.step.config.include_files == ("prompts/*.txt", "extra.json")


@pytest.mark.parametrize("entry", ["missing.txt", "none/*.txt", "sub"])
def test_an_include_file_that_names_nothing_is_a_load_error(tmp_path, entry):
    (tmp_path / "sub").mkdir()  # a directory is not a file
    write(
        tmp_path,
        "uses_step.py",
        f"""
        config = {{"name": "uses", "triggers": [], "include_files": [{entry!r}]}}
        async def handler(input, ctx): ...
        """,
    )
    expected = rf"uses_step.py: step 'uses' includes '{re.escape(entry)}'.*relative to the step file"
    with pytest.raises(StepLoadError, match=expected):
        load_steps(tmp_path)


def test_generate_step_id_is_stable_per_path():
    assert generate_step_id("steps/a_step.py") == generate_step_id("steps/a_step.py")
    assert generate_step_id("steps/a_step.py") != generate_step_id("steps/b_step.py")
    assert len(generate_step_id("x")) == 36


def test_check_collects_every_problem_with_its_file(tmp_path):
    # Given a broken import, a bad config, a good step, a duplicate name and a duplicate route
    write(tmp_path, "a_broken_step.py", "import not_a_module_anywhere\n")
    write(
        tmp_path, "b_bad_cron_step.py", 'config = {"name": "bad", "triggers": [cron("every day")]}\nhandler = print\n'
    )
    write(tmp_path, "c_good_step.py", http_step("good", path="/good"))
    write(tmp_path, "d_same_name_step.py", http_step("good", path="/other"))
    write(tmp_path, "e_same_route_step.py", http_step("route", path="/good"))
    # When checked, then every problem is reported, file problems first, then clashes, and the rest loads.
    loaded, problems = check_steps_dir(tmp_path)
    messages = [str(p) for p in problems]
    assert len(messages) == 4, messages
    assert "a_broken_step.py:" in messages[0] and "No module named 'not_a_module_anywhere'" in messages[0]
    assert "b_bad_cron_step.py" in messages[1] and "invalid cron expression" in messages[1]
    assert "d_same_name_step.py: duplicate step name 'good'" in messages[2]
    assert "e_same_route_step.py: duplicate route GET /good" in messages[3]
    assert [ls.step.name for ls in loaded] == ["good", "route"]
    # load_steps, by contrast, stops at the first.
    with pytest.raises(StepLoadError, match="a_broken_step.py"):
        load_steps(tmp_path)
