"""The spans: one per handler run, per state and stream operation, per enqueue; logs as span events.

Span names are fixed (the console's Traces view and users' dashboards read them): ``step <name>``,
``state.<op>``, ``stream.<op>``, ``enqueue <topic>``; a log line is an event named ``log``. Attributes
name what was touched (scope, key, topic...), never a value.

Each run and each write sets :data:`motia.state.observe.current_trace` to its span's ``traceparent``:
the backends store it with the change events the write records, and queue messages carry it, so the
deliveries they cause continue the trace, in any process, after retries and crashes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from motia.runtime.telemetry.metrics import Instruments, StoreGauges
from motia.runtime.types import TriggerInfo
from motia.state import observe as state_observe
from motia.state.backends.base import StateBackend

if TYPE_CHECKING:
    from motia.runtime.observe import Send

__all__ = ["OtelTelemetry"]

_propagator = TraceContextTextMapPropagator()
_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARN",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "FATAL",
}


def traceparent_of(span: Span) -> str | None:
    """The W3C ``traceparent`` of ``span`` (``None`` for an invalid span)."""
    sc = span.get_span_context()
    if not sc.is_valid:
        return None
    return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"


def context_of(traceparent: str | None) -> otel_context.Context | None:
    """The context a ``traceparent`` string continues (``None``: none given, or malformed, so a new trace)."""
    if not traceparent:
        return None
    ctx = _propagator.extract({"traceparent": traceparent})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def _run_attributes(step: str, info: TriggerInfo) -> dict[str, Any]:
    attributes: dict[str, Any] = {"motia.step": step, "motia.trigger": info.type}
    if info.type == "queue" and info.topic is not None:
        attributes["messaging.destination.name"] = info.topic
    elif info.type == "cron" and info.expression is not None:
        attributes["motia.cron"] = info.expression
    elif info.type == "state":
        attributes["motia.state.scope"] = info.scope or ""
        attributes["motia.state.key"] = info.key or ""
    elif info.type == "stream":
        attributes["motia.stream"] = info.stream_name or ""
        attributes["motia.stream.group"] = info.group_id or ""
    if info.delivery_id is not None:
        attributes["motia.delivery.id"] = info.delivery_id
    if info.attempt is not None:
        attributes["motia.delivery.attempt"] = info.attempt
    return attributes


class _Operation:
    """One state or stream operation: a child span of the running one (none outside a traced run), its
    latency recorded either way, and :data:`current_trace` pointed at it while it runs."""

    __slots__ = ("owner", "name", "attributes", "started", "span", "token", "trace_token")

    def __init__(self, owner: OtelTelemetry, name: str, attributes: dict[str, Any]) -> None:
        self.owner = owner
        self.name = name
        self.attributes = attributes
        self.span: Span | None = None
        self.token: object | None = None
        self.trace_token: object | None = None
        self.started = 0.0

    def __enter__(self) -> _Operation:
        parent = trace.get_current_span()
        if parent.is_recording():
            span = self.owner.tracer.start_span(self.name, attributes=self.attributes)
            self.span = span
            self.token = otel_context.attach(trace.set_span_in_context(span))
            self.trace_token = state_observe.current_trace.set(traceparent_of(span))
        self.started = time.perf_counter()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        elapsed = time.perf_counter() - self.started
        self.owner.instruments.state_duration.record(
            elapsed, {"motia.state.backend": self.attributes["motia.state.backend"], "motia.state.op": self.name}
        )
        span = self.span
        if span is None:
            return
        if exc is not None:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.end()
        state_observe.current_trace.reset(self.trace_token)  # type: ignore[arg-type]
        otel_context.detach(self.token)  # type: ignore[arg-type]


class _HttpRun:
    """The server span of one request: ``send`` wrapped to add ``traceparent`` and record the status."""

    __slots__ = ("span", "trace_id", "traceparent", "status")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.trace_id = f"{span.get_span_context().trace_id:032x}"
        self.traceparent = (traceparent_of(span) or "").encode()
        self.status = 0

    def wrap(self, send: Send) -> Send:
        async def traced_send(message: MutableMapping[str, Any]) -> Any:
            if message["type"] == "http.response.start":
                self.status = int(message["status"])
                headers = list(message.get("headers") or [])
                headers.append((b"traceparent", self.traceparent))
                message = {**message, "headers": headers}
            return await send(message)

        return traced_send


class OtelTelemetry:
    """The runtime's telemetry over OpenTelemetry (see :class:`motia.runtime.observe.Telemetry`)."""

    def __init__(self, tracer_provider: Any, meter_provider: Any, *, on_close: Any = None) -> None:
        self.tracer = tracer_provider.get_tracer("motia")
        self.instruments = Instruments(meter_provider.get_meter("motia"))
        self._on_close = on_close

    # -- runs -----------------------------------------------------------------------------------------

    @contextmanager
    def run(self, step: str, info: TriggerInfo, parent: str | None, created_at: float | None) -> Iterator[str]:
        attributes = _run_attributes(step, info)
        kind = SpanKind.INTERNAL if info.type == "cron" else SpanKind.CONSUMER
        if created_at is not None:
            self.instruments.delivery_lag.record(
                max(0.0, time.time() - created_at), {"motia.step": step, "motia.trigger": info.type}
            )
        with self._run_span(step, info, attributes, kind, context_of(parent)) as span:
            yield f"{span.get_span_context().trace_id:032x}"

    @contextmanager
    def http(self, step: str, info: TriggerInfo, headers: list[tuple[bytes, bytes]]) -> Iterator[_HttpRun]:
        attributes = _run_attributes(step, info)
        attributes["http.request.method"] = info.method or ""
        attributes["http.route"] = info.path or ""
        incoming = None
        for name, value in headers:
            if name.lower() == b"traceparent":
                incoming = context_of(value.decode("latin-1"))
                break
        with self._run_span(step, info, attributes, SpanKind.SERVER, incoming) as span:
            run = _HttpRun(span)
            try:
                yield run
            finally:
                if run.status:
                    span.set_attribute("http.response.status_code", run.status)
                    if run.status >= 500:
                        span.set_status(Status(StatusCode.ERROR))

    @contextmanager
    def _run_span(
        self,
        step: str,
        info: TriggerInfo,
        attributes: dict[str, Any],
        kind: SpanKind,
        parent: otel_context.Context | None,
    ) -> Iterator[Span]:
        labels = {"motia.step": step, "motia.trigger": info.type}
        started = time.perf_counter()
        # Exceptions are recorded by failed(): the runtime catches a handler's error before it gets here.
        with self.tracer.start_as_current_span(
            f"step {step}",
            context=parent,
            kind=kind,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            token = state_observe.current_trace.set(traceparent_of(span))
            try:
                yield span
            finally:
                state_observe.current_trace.reset(token)
                self.instruments.step_duration.record(time.perf_counter() - started, labels)
                if getattr(span, "status", None) is not None and span.status.status_code is StatusCode.ERROR:
                    self.instruments.step_errors.add(1, labels)

    def failed(self, exc: BaseException) -> None:
        span = trace.get_current_span()
        if span.is_recording():
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))

    # -- enqueue, logs, state and stream operations ------------------------------------------------------

    @contextmanager
    def enqueue(self, topic: str) -> Iterator[str | None]:
        # Outside any run (``motia.enqueue`` from a script) the message starts a trace of its own.
        with self.tracer.start_as_current_span(
            f"enqueue {topic}", kind=SpanKind.PRODUCER, attributes={"messaging.destination.name": topic}
        ) as span:
            parent = traceparent_of(span)
            token = state_observe.current_trace.set(parent)
            try:
                yield parent
            finally:
                state_observe.current_trace.reset(token)

    def log(self, level: int, message: str) -> None:
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                "log", {"log.severity": _SEVERITY.get(level, logging.getLevelName(level)), "log.message": message}
            )

    def operation(self, kind: str, op: str, backend: str, target: str | tuple[str, str], key: str | None) -> _Operation:
        attributes: dict[str, Any] = {"motia.state.backend": backend}
        if kind == "stream":
            stream, group = target if isinstance(target, tuple) else (target, "")
            attributes["motia.stream"] = stream
            attributes["motia.stream.group"] = group
            if key is not None:
                attributes["motia.stream.item"] = key
        else:
            if target:
                attributes["motia.state.scope"] = target
            if key is not None:
                attributes["motia.state.key"] = key
        return _Operation(self, f"{kind}.{op}", attributes)

    def watch_store(self, backend: StateBackend, steps: Sequence[str]) -> StoreGauges:
        return StoreGauges(self.instruments, backend, steps)

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()
