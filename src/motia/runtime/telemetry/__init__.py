"""OpenTelemetry for pymotia (extra ``pymotia[otel]``; runtime floor). Imported only when tracing is on
(see :mod:`motia.runtime.observe`, which decides): ``import motia`` and ``motia run`` without the
``OTEL_*`` variables never import OpenTelemetry.

- :mod:`~motia.runtime.telemetry.setup`: the providers from ``OTEL_*`` (or the global ones), and
  :data:`~motia.runtime.telemetry.setup.EXTRA_SPAN_PROCESSORS`, the hook for more span processors;
- :mod:`~motia.runtime.telemetry.spans`: the spans (runs, state and stream operations, enqueues, logs);
- :mod:`~motia.runtime.telemetry.metrics`: the metrics;
- :mod:`~motia.runtime.telemetry.logs`: trace and span ids on log records;
- :mod:`~motia.runtime.telemetry.recent`: the last traces of this process, for the console's Traces view.

:func:`from_env` is what ``MotiaApp`` starts; :func:`enable` takes providers (tests pass in-memory ones).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from motia.runtime.telemetry.logs import tag_log_records
from motia.runtime.telemetry.setup import EXTRA_SPAN_PROCESSORS, add_extra_span_processors, providers_from_env
from motia.runtime.telemetry.spans import OtelTelemetry, context_of, traceparent_of
from motia.state import observe as state_observe

__all__ = [
    "EXTRA_SPAN_PROCESSORS",
    "OtelTelemetry",
    "add_extra_span_processors",
    "context_of",
    "enable",
    "from_env",
    "traceparent_of",
]


def enable(tracer_provider: Any, meter_provider: Any = None, *, on_close: Any = None) -> OtelTelemetry:
    """Build the telemetry over these providers and hook it into state operations and log records; its
    ``close()`` unhooks those (and calls ``on_close``). The caller makes it the runtime's with
    :func:`motia.runtime.observe.install` (``observe.start_from_env`` does, for ``MotiaApp``).

    Metrics are recorded only when ``meter_provider`` records something: ``None``, the API's no-op provider
    and the unset global proxy (no ``OTEL_METRICS_EXPORTER``, no SDK provider installed) mean no histogram
    is touched at all (a ``record`` costs about as much as a span)."""
    restore_records = tag_log_records()
    telemetry: OtelTelemetry

    def close() -> None:
        restore_records()
        if state_observe.observer is telemetry:
            state_observe.set_observer(None)
        if on_close is not None:
            on_close()

    telemetry = OtelTelemetry(tracer_provider, meter_provider, on_close=close)
    state_observe.set_observer(telemetry)
    return telemetry


def from_env(environ: Mapping[str, str] | None = None) -> OtelTelemetry:
    """The telemetry of the ``OTEL_*`` variables (see :mod:`~motia.runtime.telemetry.setup`)."""
    providers = providers_from_env(environ)
    return enable(providers.tracer_provider, providers.meter_provider, on_close=providers.shutdown)
