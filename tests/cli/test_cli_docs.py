"""Every click command has help ending in an example and is documented, with its options, in docs/cli.md."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from motia.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
#: Commands whose shared options are documented in another command's section.
OPTIONS_DOCUMENTED_WITH = {"motia dev": "motia run"}


def commands(group: click.Group = main, prefix: str = "motia") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = [(prefix, group)]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix} {name}")
        else:
            found.append((f"{prefix} {name}", command))
    return found


def sections() -> dict[str, str]:
    """Each "## `motia ...`" / "### `motia ...`" heading of docs/cli.md and its text up to the next heading."""
    text = DOC.read_text()
    heads = list(re.finditer(r"^#{2,4} `(motia[^`]*)`\s*$", text, flags=re.M))
    return {
        m.group(1): text[m.end() : heads[i + 1].start() if i + 1 < len(heads) else len(text)]
        for i, m in enumerate(heads)
    }


ALL = commands()


def test_the_walk_finds_the_state_commands():
    names = {name for name, _ in ALL}
    assert {"motia run", "motia dev", "motia state", "motia state import", "motia state clear"} <= names


@pytest.mark.parametrize(("name", "command"), ALL, ids=[name for name, _ in ALL])
def test_help_ends_with_an_example(name, command):
    help_text = (command.help or "").strip()
    assert help_text, f"{name} has no help"
    assert "Example:" in help_text, f"{name}: help has no Example: block"
    example = help_text.rsplit("Example:", 1)[1]
    assert "motia" in example and not re.search(r"\n\s*\n\S", example), f"{name}: the example must end the help"
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"{name} {param.opts[0]} has no help"


@pytest.mark.parametrize(
    ("name", "command"), [c for c in ALL if c[0] != "motia"], ids=[n for n, _ in ALL if n != "motia"]
)
def test_documented_in_docs_cli_md(name, command):
    documented = sections()
    assert name in documented, f"docs/cli.md has no section for `{name}`"
    text = documented[name] + documented.get(OPTIONS_DOCUMENTED_WITH.get(name, ""), "")
    for param in command.params:
        if isinstance(param, click.Option):
            for flag in [*param.opts, *param.secondary_opts]:
                if flag.startswith("--") and flag != "--help":
                    assert flag in text, f"`{name}` section of docs/cli.md does not mention {flag}"
        elif isinstance(param, click.Argument):
            assert (param.metavar or param.name or "").upper() in text, f"`{name}`: argument {param.name} undocumented"
