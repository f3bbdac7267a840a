"""``motia run`` and ``motia dev``: thin click commands over :mod:`motia.cli.serve`.

Every ``MotiaError`` becomes a ``click.ClickException`` (message on stderr, exit status 1). The serving
code is imported when a command runs, so ``motia --help`` and ``motia state ...`` never load the web
server.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from motia.exceptions import MotiaError

__all__ = ["dev", "run", "run_options", "steps_dir_option"]

F = TypeVar("F", bound=Callable[..., Any])

#: ``--dir``: shared by every command that loads step files (run, dev, check).
steps_dir_option = click.option(
    "--dir",
    "steps_dir",
    default="steps",
    show_default=True,
    metavar="DIR",
    help="Directory searched (recursively) for *_step.py and *.step.py files.",
)


def run_options(fn: F) -> F:
    """The options shared by ``motia run`` and ``motia dev``."""
    options = [
        steps_dir_option,
        click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on."),
        click.option("--port", default=3111, show_default=True, type=click.IntRange(0, 65535), help="Port."),
        click.option(
            "--state",
            "state_url",
            envvar="MOTIA_STATE_URL",
            metavar="URL",
            help="State store URL (sqlite:///path.db, memory://, redis://host:port/db); also $MOTIA_STATE_URL. "
            "[default: sqlite:///./.motia/state.db]",
        ),
        click.option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            default="text",
            show_default=True,
            help="Log output: readable text, or one JSON object per line.",
        ),
        click.option(
            "--log-level",
            type=click.Choice(["debug", "info", "warning", "error"]),
            default="info",
            show_default=True,
            help="Minimum level logged.",
        ),
        click.option(
            "--shutdown-timeout",
            type=click.FloatRange(0),
            default=10.0,
            show_default=True,
            metavar="SECONDS",
            help="On SIGINT/SIGTERM, how long in-flight work may take to finish.",
        ),
        click.option(
            "--console-token",
            envvar="MOTIA_CONSOLE_TOKEN",
            metavar="TOKEN",
            help="Token every console request must carry (Authorization: Bearer TOKEN, or open "
            "/__motia?token=TOKEN once); required to serve the console on a non-loopback --host. "
            "Also $MOTIA_CONSOLE_TOKEN.",
        ),
        click.option(
            "--console/--no-console",
            default=True,
            show_default=True,
            help="Serve the console (state browser, live events, steps) at /__motia.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _errors_to_click(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MotiaError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


@click.command()
@run_options
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    metavar="N",
    help="Serving processes sharing the port and the store (sqlite or redis, not memory://); "
    "each cron tick still runs once.",
)
@_errors_to_click
def run(**kwargs: Any) -> None:
    """Serve the steps: HTTP triggers and cron schedules, in one process or --workers N.

    Loads every step file under --dir, opens the state store (its absolute location is logged) and
    serves until SIGINT/SIGTERM, then finishes in-flight requests and exits 0. The console, a web
    page to browse and edit state, watch state events and see the steps, is at /__motia. With
    --workers N, N processes accept on the one port and share the store, as instances do.

    \b
    Example:
        motia run --dir examples/sessions/steps --port 3111
        MOTIA_STATE_URL=memory:// motia run --log-format json
        motia run --workers 2 --state sqlite:///.motia/state.db
    """
    from motia.cli.serve import RunOptions, run_app

    run_app(RunOptions(**kwargs))


@click.command()
@run_options
@click.option("--watch", "watch", multiple=True, metavar="PATH", help="Extra path to watch (repeatable).")
@_errors_to_click
def dev(watch: tuple[str, ...], **kwargs: Any) -> None:
    """Like `motia run`, restarting the server whenever a .py file changes.

    Watches the steps directory and the project (current) directory. Always one serving process
    (no --workers).

    \b
    Example:
        motia dev --dir steps
    """
    from motia.cli.serve import RunOptions, run_dev

    run_dev(RunOptions(**kwargs), watch=watch)
