"""The recent-traces buffer: a span processor that keeps the last traces of this process for the console.

Runtime floor, and the only module of the console's Traces view that imports OpenTelemetry: it is loaded
by the tracing set-up, so only when tracing is on. :func:`new_recent_traces` (the set-up's factory of an
extra span processor) and :func:`add_recent_traces` (given a provider) install the buffer where the
console finds it (:func:`motia.runtime.traces.installed`); shutting the provider down uninstalls it.

Bounded by traces and by spans in all (the trace least recently added to is evicted first), and by
spans per trace (spans past that limit are counted, not kept). Spans end on handler threads as well as
on the event loop, so every access holds one lock.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.trace import StatusCode, format_span_id, format_trace_id
from opentelemetry.util.types import Attributes

from motia.runtime.traces import (
    AttributeValue,
    SpanEvent,
    SpanRecord,
    TraceDetail,
    TraceLimits,
    TraceSummary,
    build_tree,
    install,
    uninstall,
)

__all__ = ["MAX_VALUE_CHARS", "RecentTraces", "add_recent_traces", "new_recent_traces"]

logger = logging.getLogger("motia.telemetry")

#: The longest attribute text kept (a log message, a stack trace); longer ones are cut with an ellipsis.
MAX_VALUE_CHARS = 4096


class _Kept:
    """One trace's ended spans (the SDK's own objects: read-only once ended) and its summary so far."""

    __slots__ = ("dropped", "end", "error", "root", "root_rank", "spans", "start")

    def __init__(self, start: int) -> None:
        self.spans: list[ReadableSpan] = []
        self.dropped = 0
        self.start = start
        self.end = start
        self.error = False
        self.root = ""
        #: How root-like ``root`` is: 0 no parent, 1 a parent in another process (or a stored context), 2 a
        #: local parent; then the earlier start wins. Dropped spans count too: the summary names the root
        #: even when the per-trace limit dropped it (a root ends last).
        self.root_rank: tuple[int, int] = (3, 0)


class RecentTraces(SpanProcessor):
    """Keeps the last ``limits.max_traces`` traces ended in this process, ``limits.max_spans`` spans each and
    ``limits.max_total_spans`` in all.

    Ending a span costs a lookup, an append and a few comparisons under the lock (the runtime's tracing
    budget is per request); spans are copied into records only when the console reads them.
    """

    def __init__(self, limits: TraceLimits | None = None) -> None:
        self._limits = limits if limits is not None else TraceLimits()
        self._lock = threading.Lock()
        self._traces: OrderedDict[int, _Kept] = OrderedDict()
        self._spans = 0  # kept in all traces
        #: Traces evicted to make room since the start.
        self.evicted = 0

    @property
    def limits(self) -> TraceLimits:
        return self._limits

    # -- SpanProcessor -----------------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing to do: a span is kept once it ended."""

    def on_end(self, span: ReadableSpan) -> None:
        # Called inside span.end() of whatever code ended the span (a handler): never raise into it.
        try:
            self._keep(span)
        except Exception:
            logger.exception("recent traces: span %r not kept; it is not shown in the console", span.name)

    def _keep(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None:  # pragma: no cover - an SDK span always has one
            return
        parent = span.parent
        start = span.start_time or 0
        end = span.end_time or start
        rank = (0 if parent is None else 1 if parent.is_remote else 2, start)
        # Failed is status ERROR (the runtime sets it with the exception it records). Not the events: an
        # exception recorded on a span that went on is shown, not counted, and reading `events` copies them.
        failed = span.status.status_code is StatusCode.ERROR
        limits = self._limits
        with self._lock:
            kept = self._traces.get(context.trace_id)
            if kept is None:
                kept = self._traces[context.trace_id] = _Kept(start)
            else:
                self._traces.move_to_end(context.trace_id)
            if len(kept.spans) < limits.max_spans:
                kept.spans.append(span)
                self._spans += 1
            else:
                kept.dropped += 1
            while len(self._traces) > limits.max_traces or (
                self._spans > limits.max_total_spans and len(self._traces) > 1
            ):
                _, evicted = self._traces.popitem(last=False)  # never this trace: it was moved to the end
                self._spans -= len(evicted.spans)
                self.evicted += 1
            kept.start = min(kept.start, start)
            kept.end = max(kept.end, end)
            kept.error = kept.error or failed
            if rank < kept.root_rank:
                kept.root, kept.root_rank = span.name, rank

    def shutdown(self) -> None:
        uninstall(self)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # nothing is exported: every span is in the buffer as soon as it ended

    # -- what the console reads (motia.runtime.traces.TraceSource) ---------------------------------

    def recent(self, limit: int | None = None) -> list[TraceSummary]:
        with self._lock:
            summaries = [_summary(trace_id, kept) for trace_id, kept in self._traces.items()]
        summaries.sort(key=lambda summary: summary.start, reverse=True)
        return summaries if limit is None else summaries[:limit]

    def trace(self, trace_id: str) -> TraceDetail | None:
        try:
            key = int(trace_id, 16)
        except ValueError:
            return None
        with self._lock:
            kept = self._traces.get(key)
            if kept is None:
                return None
            summary, spans = _summary(key, kept), list(kept.spans)
        return TraceDetail(summary, build_tree(_record(span) for span in spans))

    def __len__(self) -> int:
        with self._lock:
            return len(self._traces)


def _summary(trace_id: int, kept: _Kept) -> TraceSummary:
    return TraceSummary(
        trace_id=format_trace_id(trace_id),
        root=kept.root,
        start=kept.start,
        duration=kept.end - kept.start,
        span_count=len(kept.spans),
        dropped=kept.dropped,
        error=kept.error,
    )


def new_recent_traces() -> RecentTraces:
    """A buffer with the limits of the environment (``MOTIA_TRACES_KEPT``, ``MOTIA_TRACE_MAX_SPANS``),
    installed for the console of this process: the factory for the tracing set-up's list of extra span
    processors, which adds it to each provider it configures. ``provider.shutdown()`` uninstalls it."""
    buffer = RecentTraces(TraceLimits.from_env())
    install(buffer)
    return buffer


def add_recent_traces(provider: TracerProvider, limits: TraceLimits | None = None) -> RecentTraces:
    """Add a recent-traces buffer to ``provider`` and install it for the console of this process.

    ``limits`` defaults to :meth:`TraceLimits.from_env`; ``provider.shutdown()`` uninstalls the buffer.
    """
    buffer = RecentTraces(limits if limits is not None else TraceLimits.from_env())
    provider.add_span_processor(buffer)
    install(buffer)
    return buffer


def _value(value: object) -> AttributeValue:
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE_CHARS else value[: MAX_VALUE_CHARS - 1] + "…"
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, tuple | list):
        return [_value(item) for item in value]  # type: ignore[return-value]  # homogeneous by OTel's rules
    return str(value)


def _attributes(attributes: Attributes | Mapping[str, object]) -> dict[str, AttributeValue]:
    return {} if not attributes else {str(name): _value(value) for name, value in attributes.items()}


def _record(span: ReadableSpan) -> SpanRecord:
    context = span.context
    assert context is not None  # an SDK span always has one
    parent = span.parent
    return SpanRecord(
        trace_id=format_trace_id(context.trace_id),
        span_id=format_span_id(context.span_id),
        parent_id=format_span_id(parent.span_id) if parent is not None and parent.is_valid else None,
        name=span.name,
        kind=span.kind.name.lower(),
        start=span.start_time or 0,
        end=span.end_time or span.start_time or 0,
        status=span.status.status_code.name.lower(),
        status_message=span.status.description,
        attributes=_attributes(span.attributes),
        events=tuple(SpanEvent(event.name, event.timestamp, _attributes(event.attributes)) for event in span.events),
    )
