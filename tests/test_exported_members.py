"""``motia.__all__`` is complete, duplicate-free and sorted within each commented group."""

from __future__ import annotations

import ast
import inspect
import types
from pathlib import Path

import motia


def test_all_names_exist():
    for name in motia.__all__:
        assert hasattr(motia, name), name


def test_all_is_complete():
    public = {
        name
        for name, value in vars(motia).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    # `state` is the trigger constructor (a wrapper of the function whose other attributes are the
    # subpackage's: see tests/test_state_name.py).
    assert public == set(motia.__all__)
    assert inspect.isfunction(inspect.unwrap(motia.state))


def test_all_has_no_duplicates_and_each_group_is_sorted():
    assert len(motia.__all__) == len(set(motia.__all__))
    source = Path(motia.__file__).read_text()
    tree = ast.parse(source)
    [node] = [n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "__all__"]
    assert node.end_lineno is not None
    lines = source.splitlines()[node.lineno : node.end_lineno - 1]
    groups: list[list[str]] = []
    for line in lines:
        text = line.strip()
        if text.startswith("#"):
            groups.append([])
        elif text:
            assert groups, "every name of __all__ sits under a '# Group' comment"
            groups[-1].append(ast.literal_eval(text.rstrip(",")))
    assert sum(groups, []) == motia.__all__
    for group in groups:
        assert group == sorted(group), group


def test_step_authors_imports():
    from motia import ApiResponse, FlowContext, cron, http, queue, state, stateManager, step  # noqa: F401

    assert motia.Context is motia.FlowContext
