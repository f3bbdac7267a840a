"""Telemetry from the ``OTEL_*`` variables (issue 17): when tracing is on, exporters chosen by name, OTel logs."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

from motia.exceptions import ConfigError
from motia.runtime import observe
from motia.runtime.telemetry.setup import providers_from_env


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_METRICS_EXPORTER": "console"}, True),
        ({"OTEL_LOGS_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_SERVICE_NAME": "shop"}, False),  # naming the service alone exports nothing
    ],
)
def test_when_tracing_is_on(environ: dict[str, str], on: bool) -> None:
    assert observe.tracing_requested(environ) is on


def test_an_unknown_exporter_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="OTEL_LOGS_EXPORTER='zipkinish'"):
        providers_from_env({"OTEL_LOGS_EXPORTER": "zipkinish"})


def test_otel_logs_export_the_motia_records(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given OTEL_LOGS_EXPORTER=console (and no trace or metric exporter: nothing global is set), and the
    # records also kept in memory to read them back
    monkeypatch.setenv("OTEL_SERVICE_NAME", "shop")  # read by the SDK's Resource.create, from the environment
    providers = providers_from_env({"OTEL_LOGS_EXPORTER": "console"})
    assert providers.log_handler in logging.getLogger("motia").handlers
    (logger_provider,) = [owned for owned in providers.owned if isinstance(owned, LoggerProvider)]
    kept = InMemoryLogRecordExporter()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(kept))
    try:
        # When a motia logger writes a record
        logging.getLogger("motia.step").warning("stock is low")
    finally:
        providers.shutdown()
    # Then it was exported as an OpenTelemetry log record of the service, and the handler is gone again
    (exported,) = kept.get_finished_logs()
    assert exported.log_record.body == "stock is low" and exported.log_record.severity_text == "WARNING"
    assert exported.resource.attributes["service.name"] == "shop"
    assert providers.log_handler not in logging.getLogger("motia").handlers
