"""The event loop a benchmark runs on: by default the one ``motia run`` serves on.

``motia run`` serves through uvicorn with ``loop="auto"``, which takes uvloop when it can import it (and
``uvicorn[standard]``, a pymotia dependency, installs it). Measuring on asyncio's own loop instead would
time a different write path and different loop overheads, so each benchmark takes ``--loop`` with this
default and says in its tables which loop it ran on.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Coroutine
from typing import Any

LOOPS = ("uvloop", "asyncio")


def default_loop() -> str:
    """The loop ``motia run`` uses here: uvloop when it is installed, else asyncio's."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def add_loop_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default=default_loop(),
        help="event loop to run on (default: the one `motia run` uses, %(default)s here)",
    )


def run_on(loop: str, main: Coroutine[Any, Any, Any]) -> Any:
    """Run ``main`` to completion on a new event loop of the named kind."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
