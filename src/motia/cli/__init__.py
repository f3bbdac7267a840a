"""The ``motia`` command line: the click group ``main`` (entry point ``motia.cli:main``).

A thin layer over the library. Every ``MotiaError`` becomes a ``click.ClickException`` (message on
stderr, exit status 1). Commands live in their own modules and attach to ``main`` here: ``motia run``
and ``motia dev`` in :mod:`motia.cli.run` (serving: :mod:`motia.cli.serve`), ``motia state ...`` in
:mod:`motia.cli.state`, ``motia check`` in :mod:`motia.cli.check`, ``motia deliveries ...`` in
:mod:`motia.cli.deliveries`. Before any command runs, the
project's ``.env`` is loaded (:mod:`motia.cli.environment`).
"""

from __future__ import annotations

import click

from motia.cli import check, deliveries, run, state
from motia.cli.environment import load_project_env
from motia.cli.run import run_options

__all__ = ["main", "run_options"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pymotia", prog_name="motia")
def main() -> None:
    """pymotia: Motia's steps, triggers and scoped persistent state in pure Python.

    Reads the project's .env (in the current directory) first; variables already set win.

    \b
    Example:
        motia run --dir steps
        motia state groups
    """
    load_project_env()


main.add_command(run.run)
main.add_command(run.dev)
main.add_command(state.state)
main.add_command(check.check)
main.add_command(deliveries.deliveries)
