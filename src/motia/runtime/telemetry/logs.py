"""Log records tagged with the running span: every record made while a span is current (a handler's
``ctx.logger`` line, the runtime's own, a library's) gets ``motia_otel_trace_id`` and ``motia_span_id``,
which the formatters of :mod:`motia.runtime.logging` print (text and JSON). Done with a log record
factory, so it covers records of every logger without a filter on each handler."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber

__all__ = ["OtelLogHandler", "tag_log_records"]

_SEVERITY = {
    logging.DEBUG: SeverityNumber.DEBUG,
    logging.INFO: SeverityNumber.INFO,
    logging.WARNING: SeverityNumber.WARN,
    logging.ERROR: SeverityNumber.ERROR,
    logging.CRITICAL: SeverityNumber.FATAL,
}


class OtelLogHandler(logging.Handler):
    """Sends the records of the ``motia`` loggers to an OpenTelemetry logger provider (``OTEL_LOGS_EXPORTER``),
    in the trace context they were made in. (The SDK's own ``LoggingHandler`` is deprecated for an
    instrumentation package pymotia does not depend on.)"""

    def __init__(self, logger_provider: Any) -> None:
        super().__init__()
        self._logger = logger_provider.get_logger("motia")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            attributes: dict[str, Any] = {"code.function.name": record.funcName, "logger.name": record.name}
            step = getattr(record, "motia_step", None)
            if step:
                attributes["motia.step"] = step
            self._logger.emit(
                timestamp=int(record.created * 1e9),
                severity_number=_SEVERITY.get(record.levelno, SeverityNumber.UNSPECIFIED),
                severity_text=record.levelname,
                body=record.getMessage(),
                attributes=attributes,
                exception=record.exc_info[1] if record.exc_info else None,
            )
        except Exception:  # a log line must never fail the code that logs it
            self.handleError(record)


def tag_log_records() -> Callable[[], None]:
    """Install the factory; return the function that restores the previous one."""
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        sc = trace.get_current_span().get_span_context()
        if sc.is_valid:
            record.motia_otel_trace_id = f"{sc.trace_id:032x}"
            record.motia_span_id = f"{sc.span_id:016x}"
        return record

    logging.setLogRecordFactory(factory)

    def restore() -> None:
        if logging.getLogRecordFactory() is factory:
            logging.setLogRecordFactory(previous)

    return restore
