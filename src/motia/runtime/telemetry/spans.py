"""The spans: one per handler run, per state and stream operation, per enqueue; logs as span events.

Span names are fixed (the console's Traces view and users' dashboards read them): ``step <name>``,
``state.<op>``, ``stream.<op>``, ``enqueue <topic>``; a log line is an event named ``log``. Attributes
name what was touched (scope, key, topic...), never a value.

Each run and each write sets :data:`motia.state.observe.current_trace` to its span's ``traceparent``:
the backends store it with the change events the write records, and queue messages carry it, so the
deliveries they cause continue the trace, in any process, after retries and crashes.

Cost (issue 17): the SDK's own span costs about as much as pymotia's whole request, so this module does as
little as it can around it. Runs and operations are plain context-manager classes (no generators); a state
or stream operation is a leaf span, started under the run without being made current (``transact``, which
runs the caller's function, excepted); reads do not set ``current_trace`` (they record no events); the
histograms are recorded only when a meter provider is configured (:class:`OtelTelemetry`); an unsampled run
(a non-recording span) makes no child spans, events or attributes, while its ``traceparent`` (sampled bit clear)
still travels, so the deliveries it causes are left out of the sample too.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import time
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from motia.runtime.telemetry.metrics import Instruments, StoreGauges
from motia.runtime.types import TriggerInfo
from motia.state import observe as state_observe
from motia.state.backends.base import StateBackend

if TYPE_CHECKING:
    from motia.runtime.observe import Send

__all__ = ["OtelTelemetry", "context_of", "metrics_configured", "traceparent_of"]

_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARN",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "FATAL",
}

# W3C trace context, as the SDK's TraceContextTextMapPropagator reads it (same pattern, same checks), without
# its carrier and getter machinery on every request.
_TRACEPARENT = re.compile(r"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:(-.*)|[ \t]*)")
_TRACEPARENT_MAX = 512

#: The operations that write: they point ``current_trace`` at their span, whose ``traceparent`` the change
#: events they record carry. Reads record no events and leave it alone.
_WRITES = frozenset(
    {
        "state.set",
        "state.update",
        "state.delete",
        "state.clear",
        "state.transact",
        "state.set_many",
        "state.delete_many",
        "stream.set",
        "stream.update",
        "stream.delete",
        "stream.send",
    }
)
#: The operations that run the caller's code inside (whose operations are then their children): made current.
_NESTING = frozenset({"state.transact"})
_UNOBSERVED = contextlib.nullcontext()
#: The run in progress, set only when metrics are on (its failure is counted whether its span records or not).
_current_run: contextvars.ContextVar[_Run | None] = contextvars.ContextVar("motia_otel_run", default=None)


def traceparent_of(span: Span) -> str | None:
    """The W3C ``traceparent`` of ``span`` (``None`` for an invalid span)."""
    sc = span.get_span_context()
    if not sc.is_valid:
        return None
    return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"


def context_of(traceparent: str | None) -> otel_context.Context | None:
    """The context a ``traceparent`` string continues (``None``: none given, or malformed, so a new trace)."""
    if not traceparent or len(traceparent) > _TRACEPARENT_MAX:
        return None
    match = _TRACEPARENT.fullmatch(traceparent)
    if match is None:
        return None
    version, trace_hex, span_hex, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(flags, 16)))
    return trace.set_span_in_context(NonRecordingSpan(parent), otel_context.Context())


def metrics_configured(meter_provider: Any) -> bool:
    """Whether ``meter_provider`` records anything: not ``None``, not the API's no-op one, not the global
    proxy left unset (no ``OTEL_METRICS_EXPORTER`` and no SDK provider installed before the app started), and
    not an SDK provider without a metric reader (what ``opentelemetry-instrument`` installs for
    ``OTEL_METRICS_EXPORTER=none``; the SDK takes its readers at construction only)."""
    if meter_provider is None or isinstance(meter_provider, otel_metrics.NoOpMeterProvider):
        return False
    if type(meter_provider).__name__ == "_ProxyMeterProvider":
        return False
    readers = getattr(meter_provider, "_metric_readers", None)  # the SDK's (private; absent elsewhere)
    return readers is None or len(readers) > 0  # a provider of another kind: assume it records


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
    """One state or stream operation: a child span of the running one (none outside a traced run, or under
    an unsampled one), its latency recorded when metrics are on, and for a write :data:`current_trace`
    pointed at its span while it runs."""

    __slots__ = ("owner", "name", "attributes", "backend", "started", "span", "token", "trace_token")

    def __init__(self, owner: OtelTelemetry, name: str, backend: str, attributes: dict[str, Any] | None) -> None:
        self.owner = owner
        self.name = name
        self.backend = backend
        self.attributes = attributes
        self.span: Span | None = None
        self.token: object | None = None
        self.trace_token: object | None = None
        self.started = 0.0

    def __enter__(self) -> _Operation:
        if self.attributes is not None:
            span = self.owner.tracer.start_span(self.name, attributes=self.attributes)
            self.span = span
            if self.name in _WRITES:
                self.trace_token = state_observe.current_trace.set(traceparent_of(span))
            if self.name in _NESTING:
                self.token = otel_context.attach(trace.set_span_in_context(span))
        if self.owner.instruments is not None:
            self.started = time.perf_counter()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        instruments = self.owner.instruments
        if instruments is not None:
            instruments.state_duration.record(time.perf_counter() - self.started, self.owner.op_labels(self))
        span = self.span
        if span is None:
            return
        if exc is not None:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.end()
        if self.trace_token is not None:
            state_observe.current_trace.reset(self.trace_token)  # type: ignore[arg-type]
        if self.token is not None:
            otel_context.detach(self.token)  # type: ignore[arg-type]


class _Run:
    """The span of one handler run (``step <name>``), made current while it runs; entering it yields the
    trace id. The step duration and error count are recorded when metrics are on."""

    __slots__ = (
        "owner",
        "kind",
        "attributes",
        "parent",
        "step",
        "trigger",
        "span",
        "trace_id",
        "traceparent",
        "token",
        "trace_token",
        "started",
        "failed",
        "run_token",
    )

    def __init__(
        self,
        owner: OtelTelemetry,
        step: str,
        trigger: str,
        kind: SpanKind,
        attributes: dict[str, Any],
        parent: otel_context.Context | None,
    ) -> None:
        self.owner = owner
        self.step = step
        self.trigger = trigger
        self.kind = kind
        self.attributes = attributes
        self.parent = parent
        self.failed = False
        self.started = 0.0

    def _start(self) -> None:
        # Exceptions are recorded by failed(): the runtime catches a handler's error before it gets here.
        span = self.owner.tracer.start_span(
            f"step {self.step}",
            context=self.parent,
            kind=self.kind,
            attributes=self.attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        self.span = span
        sc = span.get_span_context()
        self.trace_id = trace_id = f"{sc.trace_id:032x}"
        self.traceparent = f"00-{trace_id}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"
        self.token = otel_context.attach(trace.set_span_in_context(span))
        # Set for an unsampled run too: what it causes inherits the decision instead of sampling anew.
        self.trace_token = state_observe.current_trace.set(self.traceparent)
        if self.owner.instruments is not None:
            # failed() marks the run through this, so an unsampled run's failure is counted too
            self.run_token = _current_run.set(self)
            self.started = time.perf_counter()

    def __enter__(self) -> str:
        self._start()
        return self.trace_id

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        span = self.span
        try:
            state_observe.current_trace.reset(self.trace_token)
            instruments = self.owner.instruments
            if instruments is not None:
                _current_run.reset(self.run_token)
                labels = self.owner.run_labels(self.step, self.trigger)
                instruments.step_duration.record(time.perf_counter() - self.started, labels)
                status = getattr(span, "status", None)  # an SDK span; a non-recording one has none
                if self.failed or (status is not None and status.status_code is StatusCode.ERROR):
                    instruments.step_errors.add(1, labels)
        finally:
            otel_context.detach(self.token)
            span.end()


class _HttpRun(_Run):
    """The server span of one request: ``send`` wrapped to add ``traceparent`` and record the status."""

    __slots__ = ("status",)

    def __enter__(self) -> _HttpRun:  # type: ignore[override]
        self._start()
        self.status = 0
        return self

    def wrap(self, send: Send) -> Send:
        header = (b"traceparent", self.traceparent.encode())

        async def traced_send(message: MutableMapping[str, Any]) -> Any:
            if message["type"] == "http.response.start":
                self.status = int(message["status"])
                message = {**message, "headers": [*(message.get("headers") or ()), header]}
            return await send(message)

        return traced_send

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        status = self.status
        if status:
            span = self.span
            if span.is_recording():
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            if status >= 500:
                self.failed = True
        super().__exit__(kind, exc, tb)


class OtelTelemetry:
    """The runtime's telemetry over OpenTelemetry (see :class:`motia.runtime.observe.Telemetry`).

    ``meter_provider`` ``None`` (or one that records nothing, see :func:`metrics_configured`): no metrics,
    and no instrument is called at all.
    """

    def __init__(self, tracer_provider: Any, meter_provider: Any, *, on_close: Any = None) -> None:
        self.tracer = tracer_provider.get_tracer("motia")
        self.instruments: Instruments | None = (
            Instruments(meter_provider.get_meter("motia")) if metrics_configured(meter_provider) else None
        )
        self._on_close = on_close
        # Attribute mappings of the histograms, made once per label set (the SDK copies them per record).
        self._run_labels: dict[tuple[str, str], dict[str, str]] = {}
        self._op_labels: dict[tuple[str, str], dict[str, str]] = {}

    def run_labels(self, step: str, trigger: str) -> dict[str, str]:
        labels = self._run_labels.get((step, trigger))
        if labels is None:
            labels = self._run_labels[(step, trigger)] = {"motia.step": step, "motia.trigger": trigger}
        return labels

    def op_labels(self, op: _Operation) -> dict[str, str]:
        key = (op.backend, op.name)
        labels = self._op_labels.get(key)
        if labels is None:
            labels = self._op_labels[key] = {"motia.state.backend": op.backend, "motia.state.op": op.name}
        return labels

    # -- runs -----------------------------------------------------------------------------------------

    def run(self, step: str, info: TriggerInfo, parent: str | None, created_at: float | None) -> _Run:
        kind = SpanKind.INTERNAL if info.type == "cron" else SpanKind.CONSUMER
        if created_at is not None and self.instruments is not None:
            self.instruments.delivery_lag.record(max(0.0, time.time() - created_at), self.run_labels(step, info.type))
        return _Run(self, step, info.type, kind, _run_attributes(step, info), context_of(parent))

    def http(self, step: str, info: TriggerInfo, headers: list[tuple[bytes, bytes]]) -> _HttpRun:
        attributes = _run_attributes(step, info)
        attributes["http.request.method"] = info.method or ""
        attributes["http.route"] = info.path or ""
        incoming = None
        for name, value in headers:
            if name == b"traceparent" or name.lower() == b"traceparent":
                incoming = context_of(value.decode("latin-1"))
                break
        return _HttpRun(self, step, info.type, SpanKind.SERVER, attributes, incoming)

    def failed(self, exc: BaseException) -> None:
        run = _current_run.get()
        if run is not None:
            run.failed = True
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

    def operation(
        self, kind: str, op: str, backend: str, target: str | tuple[str, str], key: str | None
    ) -> _Operation | contextlib.nullcontext[None]:
        # Traced only inside a recording run (not in a script, not under an unsampled request).
        if not trace.get_current_span().is_recording():
            if self.instruments is None:
                return _UNOBSERVED
            return _Operation(self, f"{kind}.{op}", backend, None)
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
        return _Operation(self, f"{kind}.{op}", backend, attributes)

    def watch_store(self, backend: StateBackend, steps: Sequence[str]) -> StoreGauges | None:
        if self.instruments is None:
            return None
        return StoreGauges(self.instruments, backend, steps)

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()
