"""Each step file is imported as a module of its own, however its path is spelled (issue 11): before,
``steps/orders/create_step.py`` and ``steps/orders_create_step.py`` got one module name, so the second
import replaced the first in ``sys.modules`` and code resolving names through its module broke."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from pathlib import Path

from motia.steps.loader import load_steps

STEP = """
from dataclasses import dataclass

from motia import http, step

MARK = {mark!r}


@dataclass
class Payload:
    mark: str = MARK


@step({{"name": {name!r}, "triggers": [http("GET", {route!r})]}})
async def handler(input, ctx):
    return {{"status": 200, "body": {{"mark": MARK}}}}
"""


def write(root: Path, rel: str, **fields: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(STEP.format(**fields)))


def test_paths_that_differ_only_in_separators_get_their_own_modules(tmp_path: Path) -> None:
    # Given two step files whose paths differ only in "/" versus "_" (and "-" versus ".")
    write(tmp_path, "orders/create_step.py", mark="nested", name="nested", route="/a")
    write(tmp_path, "orders_create_step.py", mark="flat", name="flat", route="/b")
    write(tmp_path, "orders-create.step.py", mark="dashed", name="dashed", route="/c")
    write(tmp_path, "orders_create.step.py", mark="dotted", name="dotted", route="/d")

    # When they are loaded
    loaded = load_steps(tmp_path)

    # Then each handler lives in a module of its own, registered under its own name
    modules = {ls.step.name: ls.step.handler.__module__ for ls in loaded}
    assert len(set(modules.values())) == 4, modules
    for name, module_name in modules.items():
        module = sys.modules[module_name]
        assert module.MARK == name  # the module registered under that name is this file's, not another's
        # And names defined in the file resolve through its module (dataclasses, pydantic, pickling do this)
        assert dataclasses.fields(module.Payload)[0].default == name
