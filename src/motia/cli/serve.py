"""Serving an app: ``run_app`` (``motia run``) and ``run_dev`` (``motia dev``, restart on change).

The CLI's job, so it lives here and not in the runtime: it composes the app's ASGI application with
the console's routes and runs uvicorn (or, for ``dev``, a watching parent process).

Signals: SIGINT/SIGTERM stop accepting connections, let in-flight requests and cron runs finish
within the shutdown timeout, close the store, and return normally (exit status 0). uvicorn's own
signal handling re-raises the signal after shutting down, which would turn SIGTERM into exit
status -15; ``_Server`` keeps the graceful part and drops the re-raise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import shlex
import signal
import socket
import sys
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from motia.cli.workers import check_workers, inherited_socket, supervise
from motia.console.auth import TOKEN_ENV, check_console_bind
from motia.console.routes import console_routes
from motia.exceptions import StepLoadError
from motia.runtime.app import MotiaApp
from motia.runtime.delivery_options import DeliveryOptions
from motia.runtime.http import build_asgi
from motia.runtime.logging import LogFormat, configure_logging
from motia.runtime.project_config import (
    dead_letter_hook,
    idempotency_config,
    retention_config,
    strict_topics_setting,
)
from motia.runtime.streams.auth import load_stream_authenticate
from motia.state.urls import default_state_url
from motia.steps.loader import load_steps
from motia.steps.stream_files import load_streams

if TYPE_CHECKING:
    from starlette.types import ASGIApp
    from watchfiles import Change

__all__ = ["RunOptions", "load_app", "run_app", "run_dev", "serve"]

logger = logging.getLogger("motia.runtime")


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Everything ``motia run`` and ``motia dev`` take."""

    steps_dir: str = "steps"
    host: str = "127.0.0.1"
    port: int = 3111
    state_url: str | None = None
    log_format: LogFormat = "text"
    log_level: str = "info"
    shutdown_timeout: float = 10.0
    console: bool = True
    console_token: str | None = None
    workers: int = 1
    #: Development mode (``motia dev``; also ``MOTIA_DEV=1``): responses checked against ``response_schema``.
    dev: bool = False


#: Set by ``motia dev`` for the ``motia run`` child it restarts: the app runs in development mode.
DEV_ENV = "MOTIA_DEV"


def load_app(options: RunOptions) -> MotiaApp:
    """Load the steps and open the store; every problem raises a ``MotiaError`` naming the file or path."""
    project_dir = Path.cwd()
    # Like `python -m`, let step files import helper modules from the project directory.
    if str(project_dir) not in sys.path:
        sys.path.insert(0, str(project_dir))
    steps_dir = Path(options.steps_dir)
    loaded = load_steps(steps_dir)
    streams = load_streams(steps_dir, loaded)
    state_url = options.state_url or default_state_url(project_dir)
    authenticate = load_stream_authenticate(project_dir)  # motia_config.py's, before the store is opened
    strict_topics = strict_topics_setting(project_dir)
    app = MotiaApp(
        [ls.step for ls in loaded],
        state=state_url,
        shutdown_timeout=options.shutdown_timeout,
        streams=streams,
        stream_authenticate=authenticate,
        strict_topics=strict_topics,
        idempotency=idempotency_config(project_dir),
        delivery=DeliveryOptions.from_env(retention=retention_config(project_dir)),
        on_dead_letter=dead_letter_hook(project_dir),
        dev=options.dev or os.environ.get(DEV_ENV) == "1",
    )
    logger.info("state: %s", app.state.url)
    if app.dev:
        logger.info("development mode: HTTP responses are checked against their response_schema")
    logger.info("%d step(s) loaded from %s", len(loaded), steps_dir.resolve())
    for ls in loaded:
        triggers = ", ".join(repr(t) for t in ls.step.triggers) or "no triggers"
        logger.info("  %s: %s (%s)", ls.step.name, triggers, ls.path.name)
    if streams:
        logger.info("%d stream(s): %s", len(streams), ", ".join(definition.name for definition in streams))
    if strict_topics:
        logger.info("strict topics: a message no step subscribes to is refused (not kept as a dead letter)")
    if app.on_dead_letter is not None:
        logger.info("dead letters: each new one is passed to on_dead_letter of motia_config.py")
    if authenticate is not None:
        logger.info("streams: connections authenticated by stream_authenticate of motia_config.py")
    return app


class _Server:
    """A uvicorn server whose signal handling shuts down gracefully and then just returns."""

    def __init__(self, app: MotiaApp, host: str, port: int, shutdown_timeout: float, asgi: ASGIApp) -> None:
        import uvicorn

        config = uvicorn.Config(
            asgi,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=max(1, math.ceil(shutdown_timeout)),
            server_header=False,
        )

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Generator[None, None, None]:
                if threading.current_thread() is not threading.main_thread():
                    yield
                    return
                handled = (signal.SIGINT, signal.SIGTERM)
                original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
                try:
                    yield
                finally:
                    for sig, handler in original.items():
                        signal.signal(sig, handler)

            def handle_exit(self, sig: int, frame: FrameType | None) -> None:
                if not self.should_exit:
                    logger.info("received %s: shutting down gracefully", signal.Signals(sig).name)
                app.state_events.close()  # end open console feeds, or the shutdown would wait on them
                app.stream_hub.close_subscribers()  # and open stream connections (SSE responses)
                super().handle_exit(sig, frame)

        self.server = Server(config)

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        self.server.run(sockets=sockets)


def serve(
    app: MotiaApp,
    *,
    host: str = "127.0.0.1",
    port: int = 3111,
    shutdown_timeout: float = 10.0,
    asgi: ASGIApp | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve ``app`` (or ``asgi``, an application built for it) over HTTP until SIGINT/SIGTERM, then
    shut down gracefully and return. ``sock``: accept on this listening socket (a worker's, from its
    supervisor) instead of binding ``host:port``."""
    _Server(app, host, port, shutdown_timeout, app.asgi if asgi is None else asgi).run(None if sock is None else [sock])
    logger.info("stopped")


def run_app(options: RunOptions) -> None:
    """``motia run``: configure logging, load steps, open the store, serve (with the console unless disabled).

    With ``workers`` > 1, start that many ``motia run`` processes on one socket instead and supervise them
    (:mod:`motia.cli.workers`); a worker finds its socket in its environment.
    """
    state_url = options.state_url or default_state_url(Path.cwd())
    check_workers(options.workers, state_url)
    configure_logging(options.log_format, level=options.log_level.upper())
    if options.console:
        check_console_bind(options.host, options.console_token)
    if options.workers > 1:
        if not Path(options.steps_dir).is_dir():  # one clear error, not one per worker
            raise StepLoadError(
                f"steps directory {options.steps_dir} does not exist (use --dir to point at your steps)"
            )
        # Like `motia dev`: the state URL (it may hold a password) and the token travel in the environment.
        env = {"MOTIA_STATE_URL": state_url}
        if options.console_token is not None:
            env[TOKEN_ENV] = options.console_token
        supervise(
            lambda port: run_command(dataclasses.replace(options, port=port, workers=1)),
            host=options.host,
            port=options.port,
            workers=options.workers,
            shutdown_timeout=options.shutdown_timeout,
            env=env,
        )
        return
    sock = inherited_socket()
    app = load_app(options)
    asgi = app.asgi
    if options.console:
        asgi = build_asgi(app, extra_routes=console_routes(app, token=options.console_token))
        host = f"[{options.host}]" if ":" in options.host else options.host
        hint = " (open it once with ?token=<console token>)" if options.console_token else ""
        logger.info("console: http://%s:%d/__motia%s", host, options.port, hint)
    serve(app, host=options.host, port=options.port, shutdown_timeout=options.shutdown_timeout, asgi=asgi, sock=sock)


def run_command(options: RunOptions) -> list[str]:
    """The ``motia run`` command line equivalent to ``options`` (what ``motia dev`` restarts), minus the
    secrets: the state URL (it may hold a password) and the console token travel in the environment
    (``MOTIA_STATE_URL``, ``MOTIA_CONSOLE_TOKEN``), since any user of the machine can read a command line."""
    cmd = [
        sys.executable,
        "-m",
        "motia",
        "run",
        "--dir",
        options.steps_dir,
        "--host",
        options.host,
        "--port",
        str(options.port),
        "--log-format",
        options.log_format,
        "--log-level",
        options.log_level,
        "--shutdown-timeout",
        str(options.shutdown_timeout),
    ]
    if not options.console:
        cmd.append("--no-console")
    if options.workers != 1:
        cmd += ["--workers", str(options.workers)]
    return cmd


def run_dev(options: RunOptions, *, watch: Sequence[str | os.PathLike[str]] = ()) -> None:
    """``motia dev``: run ``motia run`` in a child process and restart it when a ``.py`` file changes.

    Watches the steps directory, the project directory and ``watch``; SIGINT or SIGTERM stops the child
    gracefully and returns.
    """
    from watchfiles import PythonFilter, run_process

    configure_logging(options.log_format, level=options.log_level.upper())
    if options.console:
        check_console_bind(options.host, options.console_token)
        if options.console_token is not None:
            os.environ[TOKEN_ENV] = options.console_token  # the child reads it: kept off its command line
    if options.state_url:
        os.environ["MOTIA_STATE_URL"] = options.state_url  # the child reads it: kept off its command line
    os.environ[DEV_ENV] = "1"  # the child runs in development mode
    steps_dir = Path(options.steps_dir)
    if not steps_dir.is_dir():
        raise StepLoadError(f"steps directory {steps_dir} does not exist (use --dir to point at your steps)")
    paths = sorted({str(steps_dir.resolve()), str(Path.cwd()), *(str(Path(p).resolve()) for p in watch)})
    logger.info("dev mode: restarting on changes to .py files under %s", ", ".join(paths))

    def stop(sig: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # watchfiles stops the child and returns on KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        run_process(
            *paths,
            target=shlex.join(run_command(options)),
            target_type="command",
            watch_filter=PythonFilter(),
            callback=_log_changes,
            sigint_timeout=int(options.shutdown_timeout) + 5,
        )
    finally:
        signal.signal(signal.SIGTERM, previous)


def _log_changes(changes: set[tuple[Change, str]]) -> None:
    files = sorted({Path(path).name for _, path in changes})
    logger.info("change detected in %s: restarting", ", ".join(files[:5]) + (" ..." if len(files) > 5 else ""))
