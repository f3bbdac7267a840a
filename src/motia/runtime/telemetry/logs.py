"""Log records tagged with the running span: every record made while a span is current (a handler's
``ctx.logger`` line, the runtime's own, a library's) gets ``motia_otel_trace_id`` and ``motia_span_id``,
which the formatters of :mod:`motia.runtime.logging` print (text and JSON). Done with a log record
factory, so it covers records of every logger without a filter on each handler."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from opentelemetry import trace

__all__ = ["tag_log_records"]


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
