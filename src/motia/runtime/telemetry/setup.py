"""The providers motia makes from the standard ``OTEL_*`` variables, or finds already configured.

Only the choice of exporter by name is done here (``OTEL_TRACES_EXPORTER`` and friends: ``otlp``,
``console``, ``none``, or any name an installed package registers under the SDK's entry-point groups);
everything else is the SDK's own handling of its variables: ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` (``Resource.create``), ``OTEL_TRACES_SAMPLER``/``_ARG`` (``TracerProvider``),
``OTEL_BSP_*`` (``BatchSpanProcessor``), ``OTEL_METRIC_EXPORT_INTERVAL`` (the periodic reader),
``OTEL_EXPORTER_OTLP_*`` (the OTLP exporters).

A tracer provider already set globally (``opentelemetry-instrument motia run``) is used as it is, and
``OTEL_TRACES_EXPORTER`` is then left to whoever set it up; likewise the meter provider.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from motia.exceptions import ConfigError
from motia.runtime.telemetry.recent import new_recent_traces

__all__ = ["EXTRA_SPAN_PROCESSORS", "Providers", "add_extra_span_processors", "providers_from_env"]

logger = logging.getLogger("motia.runtime")

# ----------------------------------------------------------------------------------------------------
# THE HOOK FOR EXTRA SPAN PROCESSORS.
#
# Each factory here is called once per tracer provider motia sets up (the one it creates from OTEL_*, or
# an SDK provider it finds configured globally) and its processor added to that provider. The console's
# recent-traces buffer is the first entry. Append a zero-argument callable returning a SpanProcessor.
EXTRA_SPAN_PROCESSORS: list[Callable[[], SpanProcessor]] = [new_recent_traces]
# ----------------------------------------------------------------------------------------------------


#: The providers the hook has been applied to (once each: an app restarted in the same process, as tests and
#: embedding code do, reuses the global provider and must not get the processors twice).
_extended: set[int] = set()


def add_extra_span_processors(provider: object) -> list[SpanProcessor]:
    """Add a processor from each factory of :data:`EXTRA_SPAN_PROCESSORS` to ``provider`` (an SDK
    ``TracerProvider``; another kind of provider cannot take processors and is left alone), once."""
    added: list[SpanProcessor] = []
    if not isinstance(provider, TracerProvider) or id(provider) in _extended:
        return added
    _extended.add(id(provider))
    for factory in EXTRA_SPAN_PROCESSORS:
        processor = factory()
        provider.add_span_processor(processor)
        added.append(processor)
    return added


@dataclass
class Providers:
    """The providers telemetry uses, and what motia made itself (to flush and shut down at the end)."""

    tracer_provider: Any
    meter_provider: Any
    owned: list[Any] = field(default_factory=list)
    log_handler: logging.Handler | None = None

    def shutdown(self) -> None:
        """Shut down what is this app's own; flush the global providers (they live as long as the process,
        which the SDK shuts down at exit, so an app started again in this process keeps exporting)."""
        for provider in (self.tracer_provider, self.meter_provider):
            flush = getattr(provider, "force_flush", None)
            if flush is not None:
                try:
                    flush()
                except Exception:
                    logger.exception("flushing %r failed", provider)
        for thing in self.owned:
            try:
                thing.shutdown()
            except Exception:  # an exporter failing to flush must not stop the others
                logger.exception("shutting down %r failed", thing)
        if self.log_handler is not None:
            logging.getLogger("motia").removeHandler(self.log_handler)


def _exporter(kind: str, name: str, env: Mapping[str, str]) -> Any:
    """The exporter registered as ``name`` for ``kind`` (``traces``, ``metrics``, ``logs``); ``otlp`` picks
    the transport of ``OTEL_EXPORTER_OTLP_<KIND>_PROTOCOL`` or ``OTEL_EXPORTER_OTLP_PROTOCOL``."""
    if name == "otlp":
        protocol = env.get(f"OTEL_EXPORTER_OTLP_{kind.upper()}_PROTOCOL") or env.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        name = "otlp_proto_grpc" if protocol.strip() == "grpc" else "otlp_proto_http"
    found = entry_points(group=f"opentelemetry_{kind}_exporter", name=name)
    if not found:
        raise ConfigError(
            f"OTEL_{kind.upper()}_EXPORTER={name!r}: no such exporter is installed "
            "(pymotia[otel] brings 'otlp' over HTTP and 'console'; 'none' exports nothing)"
        )
    return next(iter(found)).load()()


def _names(env: Mapping[str, str], variable: str) -> list[str]:
    return [
        name.strip().lower() for name in env.get(variable, "").split(",") if name.strip().lower() not in ("", "none")
    ]


def _resource() -> Resource:
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; "motia" only when neither names it.
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "motia"}))
    return resource


def providers_from_env(environ: Mapping[str, str] | None = None) -> Providers:
    """The tracer and meter providers for ``OTEL_*`` (see the module docstring); a bad exporter name raises
    :class:`~motia.exceptions.ConfigError`. ``environ`` chooses the exporters; the SDK reads its own
    variables (service name, sampler, endpoints...) from ``os.environ``."""
    env = os.environ if environ is None else environ
    owned: list[Any] = []
    resource: Resource | None = None
    tracer_provider: Any = trace.get_tracer_provider()
    trace_exporters = _names(env, "OTEL_TRACES_EXPORTER")
    # MOTIA_CONSOLE_TRACES (read as motia.runtime.observe does; importing it here would make a cycle):
    # a provider with no exporter, for the console's recent-traces buffer alone.
    console_only = env.get("MOTIA_CONSOLE_TRACES", "").strip().lower() in ("1", "true", "yes", "on")
    if isinstance(tracer_provider, trace.ProxyTracerProvider) and (trace_exporters or console_only):
        resource = _resource()
        tracer_provider = TracerProvider(resource=resource)
        for name in trace_exporters:
            tracer_provider.add_span_processor(BatchSpanProcessor(_exporter("traces", name, env)))
        trace.set_tracer_provider(tracer_provider)  # so handlers' own instrumentation joins the same traces
    add_extra_span_processors(tracer_provider)
    meter_provider: Any = metrics.get_meter_provider()
    metric_exporters = _names(env, "OTEL_METRICS_EXPORTER")
    if metric_exporters and type(meter_provider).__name__ == "_ProxyMeterProvider":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        resource = resource or _resource()
        readers = [PeriodicExportingMetricReader(_exporter("metrics", name, env)) for name in metric_exporters]
        meter_provider = MeterProvider(metric_readers=readers, resource=resource)
        metrics.set_meter_provider(meter_provider)
    log_handler = None
    log_exporters = _names(env, "OTEL_LOGS_EXPORTER")
    if log_exporters:
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        from motia.runtime.telemetry.logs import OtelLogHandler

        logger_provider = LoggerProvider(resource=resource or _resource())
        for name in log_exporters:
            logger_provider.add_log_record_processor(BatchLogRecordProcessor(_exporter("logs", name, env)))
        owned.append(logger_provider)
        log_handler = OtelLogHandler(logger_provider)
        logging.getLogger("motia").addHandler(log_handler)
    return Providers(tracer_provider, meter_provider, owned, log_handler)
