"""Observability, the runtime's side: whether telemetry is on, and the narrow interface the runtime calls.

The runtime never imports OpenTelemetry. It calls :data:`active` (``None`` when tracing is off, which costs
one check at each place below) and OpenTelemetry is only imported, by :mod:`motia.runtime.telemetry`, when
:func:`start_from_env` finds tracing on:

- ``OTEL_SDK_DISABLED=true``: off, whatever else is set;
- ``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER`` or ``OTEL_LOGS_EXPORTER`` set to anything but
  ``none``: on (the extra ``pymotia[otel]`` must be installed; without it a warning says so and it is off);
- ``MOTIA_CONSOLE_TRACES=1``: on with no exporter, the traces kept only for the console's Traces view (for
  a developer's machine: nothing to run beside the app);
- otherwise on only if OpenTelemetry is already imported and a global tracer provider is configured (as
  ``opentelemetry-instrument motia run`` does); else off, and nothing is imported.

The places the runtime reports to: a handler run (HTTP, queue, state, stream, cron), an enqueue, a log
line of ``ctx.logger``, a handler's failure. State and stream operations report through the state
floor's own hook (:mod:`motia.state.observe`), which the telemetry installs.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from motia.runtime.types import TriggerInfo
    from motia.state.backends.base import StateBackend

__all__ = [
    "HttpRun",
    "StoreWatch",
    "Telemetry",
    "active",
    "console_traces_requested",
    "failed",
    "install",
    "start_from_env",
    "stop",
    "tracing_requested",
]

logger = logging.getLogger("motia.runtime")

Send = Callable[[MutableMapping[str, Any]], Any]


class HttpRun(Protocol):
    """The span of one HTTP request: its trace id, and ``send`` wrapped to return ``traceparent`` and
    record the response's status."""

    trace_id: str

    def wrap(self, send: Send) -> Send: ...


class StoreWatch(Protocol):
    """An app's store, read for the gauges (pending deliveries, dead letters) by the app's own loop."""

    async def refresh(self) -> None: ...

    def close(self) -> None: ...


class Telemetry(Protocol):
    """What the runtime asks of the telemetry (:class:`motia.runtime.telemetry.OtelTelemetry`)."""

    def run(
        self, step: str, info: TriggerInfo, parent: str | None, created_at: float | None
    ) -> AbstractContextManager[str]:
        """The span of one handler run (``step <name>``), a child of ``parent`` (a ``traceparent``) when
        given; yields its trace id. ``created_at`` (Unix seconds) is when the delivery was made, for the
        delivery-lag metric."""
        ...

    def http(self, step: str, info: TriggerInfo, headers: list[tuple[bytes, bytes]]) -> AbstractContextManager[HttpRun]:
        """The server span of one HTTP request (also its ``step <name>`` span), continuing an incoming
        ``traceparent`` header."""
        ...

    def enqueue(self, topic: str) -> AbstractContextManager[str | None]:
        """The span of one enqueue (``enqueue <topic>``); yields the ``traceparent`` its message carries."""
        ...

    def failed(self, exc: BaseException) -> None:
        """The running handler failed with ``exc``: record it on the current span (status ERROR)."""
        ...

    def log(self, level: int, message: str) -> None:
        """A line of ``ctx.logger``: an event ``log`` on the current span."""
        ...

    def watch_store(self, backend: StateBackend, steps: Sequence[str]) -> StoreWatch | None:
        """Report the pending deliveries and dead letters of ``steps`` on ``backend`` (until ``close()``);
        ``None`` when metrics are off (nothing to report, no store reads)."""
        ...

    def close(self) -> None:
        """Flush and stop what :func:`start_from_env` made (exporters, readers); detach every hook."""
        ...


#: The installed telemetry, or ``None`` (tracing off).
active: Telemetry | None = None


def install(telemetry: Telemetry | None) -> Telemetry | None:
    """Make ``telemetry`` the active one (``None``: off); return the one it replaces."""
    global active
    old, active = active, telemetry
    return old


def stop(telemetry: Telemetry) -> None:
    """Close ``telemetry`` (flush its exporters, unhook it) and, if it is the active one, turn tracing off."""
    try:
        telemetry.close()
    finally:
        if active is telemetry:
            install(None)


def failed(exc: BaseException) -> None:
    """Record a handler's failure on its span, when tracing is on."""
    if active is not None:
        active.failed(exc)


_EXPORTER_VARIABLES = ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER")


def console_traces_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``MOTIA_CONSOLE_TRACES`` asks for traces kept for the console alone (no exporter)."""
    env = os.environ if environ is None else environ
    return env.get("MOTIA_CONSOLE_TRACES", "").strip().lower() in ("1", "true", "yes", "on")


def tracing_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for telemetry (see the module docstring), without importing it."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if any(env.get(name, "").strip().lower() not in ("", "none") for name in _EXPORTER_VARIABLES):
        return True
    if console_traces_requested(env):
        return True
    if "opentelemetry.trace" not in sys.modules:
        return False  # nobody configured a provider: it cannot be there
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def start_from_env(environ: Mapping[str, str] | None = None) -> Telemetry | None:
    """Start and install the telemetry if the environment asks for it and none is active; return what was
    started (the caller closes it), or ``None``."""
    if active is not None or not tracing_requested(environ):
        return None
    try:
        from motia.runtime.telemetry import from_env
    except ImportError as exc:
        logger.warning(
            "OpenTelemetry is asked for (%s) but not installed (%s): install pymotia[otel]; running without it",
            ", ".join(
                f"{name}={os.environ.get(name)}"
                for name in (*_EXPORTER_VARIABLES, "MOTIA_CONSOLE_TRACES")
                if os.environ.get(name)
            ),
            exc,
        )
        return None
    telemetry = from_env(environ)
    install(telemetry)
    return telemetry
