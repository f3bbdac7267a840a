"""Log output for ``motia run``: readable text on a terminal, one JSON object per line when asked.

Step records carry ``motia_step``, ``motia_trace_id`` and ``motia_fields`` (see ``StepLogger``);
every other record (uvicorn, the runtime itself) is printed the same way without them. With tracing on,
every record made inside a span also carries ``motia_otel_trace_id`` and ``motia_span_id``
(``motia.runtime.telemetry.logs``): both formats print the trace and span ids.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import orjson

__all__ = ["JsonFormatter", "LogFormat", "TextFormatter", "configure_logging"]

LogFormat = Literal["text", "json"]

_LEVEL_COLORS = {
    "DEBUG": "\x1b[2m",
    "INFO": "\x1b[32m",
    "WARNING": "\x1b[33m",
    "ERROR": "\x1b[31m",
    "CRITICAL": "\x1b[1;31m",
}
_RESET = "\x1b[0m"
_SHORT = {"WARNING": "WARN", "CRITICAL": "CRIT"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "motia_fields", None)
    return fields if isinstance(fields, dict) else {}


def _trace_ids(record: logging.LogRecord) -> tuple[str | None, str | None]:
    """The record's trace id (its step's, else the current span's) and span id (with tracing on)."""
    trace = getattr(record, "motia_trace_id", None) or getattr(record, "motia_otel_trace_id", None)
    return trace, getattr(record, "motia_span_id", None)


def _scalar(value: Any) -> str:
    if isinstance(value, str) and value and not any(c.isspace() or c in '"=' for c in value):
        return value
    return orjson.dumps(value, default=repr).decode()


class TextFormatter(logging.Formatter):
    """``12:00:01.234 INFO  [get-session] Session deleted sessionId=abc trace=9f2c…``."""

    def __init__(self, *, color: bool = False) -> None:
        super().__init__()
        self.color = color

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S.%f")[:-3]
        level = record.levelname
        level_text = f"{_SHORT.get(level, level):<5}"
        if self.color:
            level_text = f"{_LEVEL_COLORS.get(level, '')}{level_text}{_RESET}"
        step = getattr(record, "motia_step", None)
        where = f"[{step}]" if step else f"({record.name})"
        parts = [ts, level_text, where, record.getMessage()]
        parts.extend(f"{k}={_scalar(v)}" for k, v in _fields(record).items())
        trace, span = _trace_ids(record)
        if trace:
            parts.append(f"trace={trace}")
        if span:
            parts.append(f"span={span}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``msg``, ``step``, ``trace_id``, ``span_id``
    (tracing on), ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        step = getattr(record, "motia_step", None)
        trace, span = _trace_ids(record)
        if step:
            out["step"] = step
        if step or trace:
            out["trace_id"] = trace
        if span:
            out["span_id"] = span
        fields = _fields(record)
        if fields:
            out["fields"] = fields
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=repr).decode()


def configure_logging(
    fmt: LogFormat = "text", *, level: int | str = logging.INFO, stream: TextIO | None = None
) -> None:
    """Send ``motia.*`` and ``uvicorn.*`` records to ``stream`` (stderr) in one format.

    Colour only when the stream is a terminal and ``NO_COLOR`` is unset.
    """
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        color = hasattr(out, "isatty") and out.isatty() and "NO_COLOR" not in os.environ
        handler.setFormatter(TextFormatter(color=color))
    for name in ("motia", "uvicorn", "uvicorn.error"):
        log = logging.getLogger(name)
        log.handlers = [handler] if name != "uvicorn.error" else []
        log.setLevel(level)
        log.propagate = name == "uvicorn.error"
    # Access logs cost throughput and repeat what the step logs say; keep them off.
    logging.getLogger("uvicorn.access").handlers = []
    logging.getLogger("uvicorn.access").propagate = False
