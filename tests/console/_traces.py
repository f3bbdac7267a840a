"""A flow's spans as the runtime's tracing makes them (the names and attributes of issue 17), made with the
real OpenTelemetry SDK for the console's Traces view tests: an HTTP request whose step writes state, logs
and enqueues, and the queue step that handles the message (continuing the trace), which may fail."""

from __future__ import annotations

import time

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

MS = 1_000_000  # nanoseconds


def record_flow(provider: TracerProvider, *, order: str = "o-1", fail: bool = False, start: int = 0) -> str:
    """Record one flow's spans (``start``: its first span's start, ns since the epoch); its trace id."""
    tracer = provider.get_tracer("motia")
    t0 = start or time.time_ns()
    with tracer.start_as_current_span(
        "POST /orders",
        kind=trace.SpanKind.SERVER,
        start_time=t0,
        attributes={"http.request.method": "POST", "http.route": "/orders", "http.response.status_code": 202},
        end_on_exit=False,
    ) as server:
        with tracer.start_as_current_span(
            "step create-order",
            start_time=t0 + 1 * MS,
            attributes={
                "motia.step": "create-order",
                "motia.trigger": "http",
                "http.route": "/orders",
                "http.request.method": "POST",
                "http.response.status_code": 202,
            },
            end_on_exit=False,
        ) as handler:
            handler.add_event("log", {"log.severity": "info", "log.message": f"order {order} placed"}, t0 + 2 * MS)
            state = {"motia.state.scope": "orders", "motia.state.key": order}
            tracer.start_span("state.set", start_time=t0 + 3 * MS, attributes=state).end(end_time=t0 + 5 * MS)
            enqueue = tracer.start_span(
                "enqueue orders.placed",
                kind=trace.SpanKind.PRODUCER,
                start_time=t0 + 6 * MS,
                attributes={"messaging.destination.name": "orders.placed"},
            )
            enqueue.end(end_time=t0 + 7 * MS)
            handler.end(end_time=t0 + 8 * MS)
        server.end(end_time=t0 + 9 * MS)
    # The queue step's delivery continues the trace from the context stored with the message.
    sent = enqueue.get_span_context()
    stored = SpanContext(sent.trace_id, sent.span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    bill = tracer.start_span(
        "step bill-order",
        context=trace.set_span_in_context(NonRecordingSpan(stored)),
        kind=trace.SpanKind.CONSUMER,
        start_time=t0 + 20 * MS,
        attributes={
            "motia.step": "bill-order",
            "motia.trigger": "queue",
            "messaging.destination.name": "orders.placed",
            "motia.delivery.id": "d-1",
            "motia.delivery.attempt": 1,
        },
    )
    with trace.use_span(bill, end_on_exit=False, record_exception=False, set_status_on_exception=False):
        read = {"motia.state.scope": "orders", "motia.state.key": order}
        tracer.start_span("state.get", start_time=t0 + 21 * MS, attributes=read).end(end_time=t0 + 22 * MS)
        if fail:
            bill.add_event("log", {"log.severity": "error", "log.message": "card declined"}, t0 + 23 * MS)
            try:
                raise ValueError(f"card declined for order {order}")
            except ValueError as exc:
                bill.record_exception(exc, timestamp=t0 + 24 * MS)
                bill.set_status(trace.Status(trace.StatusCode.ERROR, f"ValueError: {exc}"))
    bill.end(end_time=t0 + 30 * MS)
    return format(server.get_span_context().trace_id, "032x")
