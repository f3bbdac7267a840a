"""``motia check``: load every step file and report every problem, serving nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from motia.cli.run import steps_dir_option
from motia.exceptions import MotiaError

__all__ = ["check"]


@click.command()
@steps_dir_option
def check(steps_dir: str) -> None:
    """Load every step file and print each problem with its file; exit 1 if there is any.

    Imports each file as `motia run` would (so a file's module-level code runs) and checks its config,
    triggers, cron expressions and include_files, then step names and routes across files. Unlike
    `motia run`, it goes on after a problem, so one run lists them all. Nothing is served and no state
    store is opened.

    \b
    Example:
        motia check --dir steps
    """
    from motia.exceptions import StepLoadError
    from motia.runtime.stream_triggers import check_stream_triggers
    from motia.steps.loader import check_steps_dir, display_path
    from motia.steps.stream_files import load_streams

    # As `motia run` does: step files may import helper modules from the project (current) directory.
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        loaded, problems = check_steps_dir(Path(steps_dir))
    except MotiaError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        streams = load_streams(Path(steps_dir), loaded)
    except StepLoadError as exc:
        problems.append(exc)
    else:
        declared = {definition.name for definition in streams}
        for ls in loaded:
            try:
                check_stream_triggers([ls.step], declared)
            except StepLoadError as exc:
                problems.append(StepLoadError(f"{display_path(ls.path)}: {exc}"))
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    files = len({ls.path for ls in loaded})
    steps = f"{len(loaded)} step{'s' * (len(loaded) != 1)} in {files} file{'s' * (files != 1)}"
    if problems:
        count = len(problems)
        click.echo(f"{count} problem{'s' * (count != 1)} found ({steps} loaded)", err=True)
        raise SystemExit(1)
    click.echo(f"ok: {steps}")
