"""The console's Traces view API: the recent traces of this process and one trace as a tree of spans.

The buffer is the runtime's (:mod:`motia.runtime.traces`), found per request, so a console built before
tracing was set up still shows it; with tracing off there is none, and the answers say how to turn it on.
Nothing here imports OpenTelemetry.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from motia.console._api import ApiError, query_int
from motia.runtime.http import JSONResponse
from motia.runtime.traces import SpanEvent, TraceDetail, TraceSource, TraceSummary, TreeSpan, installed

__all__ = ["DEFAULT_LIMIT", "TRACING_OFF", "TracesAPI", "span_category", "summary_json", "trace_json"]

#: Traces listed when the client does not say (the buffer holds at most its own limit anyway).
DEFAULT_LIMIT = 100
#: What the view says when this process keeps no traces.
TRACING_OFF = (
    "Tracing is off in this process, so no traces are kept. Install the extra (pip install 'pymotia[otel]') "
    "and turn tracing on with the standard OpenTelemetry variables, for example OTEL_TRACES_EXPORTER=otlp "
    "(or console), or MOTIA_CONSOLE_TRACES=1 to keep traces for this view alone, or run under "
    "opentelemetry-instrument; see docs/observability.md."
)
#: A trace id as logs and responses show it: OpenTelemetry's 32 hex digits (16 for a run without tracing).
_TRACE_ID = re.compile(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{16}")


def span_category(span: TreeSpan) -> str:
    """What the view draws a span as: ``step``, ``state``, ``stream``, ``enqueue``, ``http`` or ``other``."""
    name = span.span.name
    if name.startswith("step "):
        return "step"
    if name.startswith("state."):
        return "state"
    if name.startswith("stream."):
        return "stream"
    if name.startswith("enqueue "):
        return "enqueue"
    if span.span.kind == "server" or "http.request.method" in span.span.attributes:
        return "http"
    return "other"


def _ms(nanoseconds: int) -> float:
    return round(nanoseconds / 1e6, 3)


def summary_json(summary: TraceSummary) -> dict[str, Any]:
    return {
        "trace_id": summary.trace_id,
        "root": summary.root,
        "start": summary.start / 1e9,
        "duration_ms": _ms(summary.duration),
        "span_count": summary.span_count,
        "dropped": summary.dropped,
        "error": summary.error,
    }


def _event_json(event: SpanEvent, origin: int) -> dict[str, Any]:
    return {"name": event.name, "offset_ms": _ms(event.time - origin), "attributes": dict(event.attributes)}


def trace_json(detail: TraceDetail) -> dict[str, Any]:
    """The trace with its spans flat in tree order, each with its ``depth``; times relative to its start."""
    origin = detail.summary.start
    spans = []
    for node in detail.spans:
        span = node.span
        spans.append(
            {
                "span_id": span.span_id,
                "parent_id": span.parent_id,
                "name": span.name,
                "category": span_category(node),
                "kind": span.kind,
                "depth": node.depth,
                "orphan": node.orphan,
                "offset_ms": _ms(span.start - origin),
                "duration_ms": _ms(span.end - span.start),
                "status": span.status,
                "status_message": span.status_message,
                "error": span.error,
                "attributes": dict(span.attributes),
                "events": [_event_json(event, origin) for event in span.events],
            }
        )
    return {**summary_json(detail.summary), "spans": spans}


class TracesAPI:
    """``GET /__motia/api/traces?limit=``, ``GET /__motia/api/traces/{trace_id}`` and the page address
    ``/__motia/traces/{trace_id}`` that a trace id in a log line or an error response leads to."""

    def __init__(self, source: TraceSource | None = None) -> None:
        #: ``None``: the buffer installed in this process, looked up on every request.
        self.source = source

    def buffer(self) -> TraceSource | None:
        return self.source if self.source is not None else installed()

    async def list(self, request: Request) -> Response:
        limit = query_int(request, "limit", low=1, high=10_000) or DEFAULT_LIMIT
        buffer = self.buffer()
        if buffer is None:
            return JSONResponse({"enabled": False, "traces": [], "limit": limit, "hint": TRACING_OFF})
        summaries = buffer.recent(limit)
        limits = buffer.limits
        return JSONResponse(
            {
                "enabled": True,
                "traces": [summary_json(summary) for summary in summaries],
                "limit": limit,
                "kept": {
                    "max_traces": limits.max_traces,
                    "max_spans": limits.max_spans,
                    "max_total_spans": limits.max_total_spans,
                },
            }
        )

    def find(self, raw: str) -> TraceDetail:
        """The trace ``raw`` names, or the client error that says why there is none."""
        if not _TRACE_ID.fullmatch(raw):
            raise ApiError(400, f"a trace id is 32 hexadecimal digits (16 without tracing), not {raw!r}")
        trace_id = raw.lower()
        buffer = self.buffer()
        if buffer is None:
            raise ApiError(404, f"no trace {trace_id}: {TRACING_OFF}", trace_id=trace_id, enabled=False)
        detail = buffer.trace(trace_id)
        if detail is None:
            raise ApiError(
                404,
                f"no trace {trace_id} among the last {buffer.limits.max_traces} traces this process keeps: "
                "it was evicted by newer ones, ran in another process or instance, or was not sampled",
                trace_id=trace_id,
                enabled=True,
            )
        return detail

    async def trace(self, request: Request) -> Response:
        return JSONResponse(trace_json(self.find(request.path_params["trace_id"])))

    async def page(self, request: Request) -> Response:
        """A link to a trace: redirect to the console showing it, or a 404 page saying why it is not here."""
        try:
            detail = self.find(request.path_params["trace_id"])
        except ApiError as exc:
            body = _MISSING_PAGE.format(message=escape(exc.message)).encode()
            return Response(body, status_code=exc.status, media_type="text/html; charset=utf-8")
        return Response(status_code=303, headers={"location": f"/__motia/#trace={detail.summary.trace_id}"})


_MISSING_PAGE = """<!doctype html><meta charset="utf-8"><title>pymotia console: no such trace</title>
<body style="font-family: system-ui, sans-serif; margin: 3rem">
<h1>No such trace</h1>
<p data-testid="trace-missing">{message}</p>
<p><a href="/__motia/#traces">The recent traces</a></p>
</body>
"""
