"""OpenTelemetry (issue 17): one trace per flow, on every backend, with the real SDK (in-memory span exporter
and metric reader). Cross-process traces and the import guarantees are in tests/e2e/test_otel_e2e.py."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from motia import cron, http, queue, state, step, stream
from motia.runtime import observe
from motia.runtime.delivery import DeliveryOptions
from motia.runtime.logging import JsonFormatter, TextFormatter
from motia.runtime.telemetry import enable
from motia.runtime.telemetry import metrics as telemetry_metrics
from motia.state import observe as state_observe
from motia.streams import StreamDefinition
from motia.testing import app_client, drain
from tests.polling import eventually

FAST = DeliveryOptions(lease=5.0, poll_interval=0.02, concurrency=8)
_names = itertools.count()


class Otel:
    """The SDK wired to in-memory outputs, installed as pymotia's telemetry."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.telemetry = enable(self.tracer_provider, self.meter_provider)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"{name}: {[s.name for s in self.spans()]}"
        return found[0]

    def metrics(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out


@pytest.fixture
def otel() -> Iterator[Otel]:
    wired = Otel()
    observe.install(wired.telemetry)
    try:
        yield wired
    finally:
        observe.stop(wired.telemetry)
        wired.tracer_provider.shutdown()
        wired.meter_provider.shutdown()
    assert observe.active is None and state_observe.observer is None


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return f"{request.getfixturevalue('redis_server').url}?prefix=otel{next(_names)}&timeout=1"
    if request.param == "postgres":
        return f"{request.getfixturevalue('postgres_server').url}?schema=otel{next(_names)}"
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'state.db'}"


def labels(point: Any) -> tuple[str, str]:
    return point.attributes["motia.step"], point.attributes["motia.trigger"]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def flow_steps(seen: dict[str, Any], *, fail_first: bool = False) -> list[Any]:
    async def create(request, ctx):
        await ctx.state.set("orders", request.body["id"], {"qty": request.body["qty"]})
        ctx.logger.info("order stored", {"id": request.body["id"]})
        return {"status": 201, "body": {"trace": ctx.trace_id}}

    async def on_order(event, ctx):
        await ctx.enqueue({"topic": "order.placed", "data": {"id": event.item_id}})

    attempts = itertools.count(1)

    async def ship(data, ctx):
        seen.setdefault("trace_ids", []).append(ctx.trace_id)
        if fail_first and next(attempts) == 1:
            raise RuntimeError("carrier down")
        ctx.logger.info("shipped")

    return [
        step({"name": "create-order", "triggers": [http("POST", "/orders")]}, create),
        step({"name": "on-order", "triggers": [state(scope="orders")], "enqueues": ["order.placed"]}, on_order),
        step(
            {"name": "ship", "triggers": [queue("order.placed", config={"max_retries": 2, "backoff_delay_ms": 10})]},
            ship,
        ),
    ]


async def test_an_http_request_its_state_trigger_and_queue_step_form_one_trace(
    otel: Otel, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an HTTP step writing state, a state trigger enqueueing, a queue step handling the message
    # (log lines are span events when their level is logged, as in `motia run`)
    caplog.set_level(logging.INFO, logger="motia.step")
    seen: dict[str, Any] = {}
    async with app_client(flow_steps(seen), state=url, delivery=FAST) as client:
        # When one request comes in
        response = await client.post("/orders", json={"id": "o1", "qty": 2})
        await drain(client)
    assert response.status_code == 201
    # Then every span belongs to one trace, the trace ctx.trace_id and the response name
    request = otel.one("step create-order")
    trace_id = request.context.trace_id
    assert {span.context.trace_id for span in otel.spans()} == {trace_id}
    assert response.json()["trace"] == f"{trace_id:032x}" == seen["trace_ids"][0]
    assert response.headers["x-trace-id"] == f"{trace_id:032x}"
    # And the spans nest: request > state.set > state step > enqueue > queue step
    write = otel.one("state.set")
    on_order = otel.one("step on-order")
    enqueue = otel.one("enqueue order.placed")
    ship = otel.one("step ship")
    assert request.parent is None and request.kind is SpanKind.SERVER
    assert parent_of(write) == request.context.span_id
    assert parent_of(on_order) == write.context.span_id
    assert parent_of(enqueue) == on_order.context.span_id
    assert parent_of(ship) == enqueue.context.span_id
    # And each carries what it touched, never a value
    assert request.attributes is not None and write.attributes is not None
    assert request.attributes["http.route"] == "/orders"
    assert request.attributes["http.request.method"] == "POST"
    assert request.attributes["http.response.status_code"] == 201
    assert write.attributes["motia.state.scope"] == "orders" and write.attributes["motia.state.key"] == "o1"
    assert not any("qty" in str(value) for value in write.attributes.values())
    assert on_order.attributes is not None and on_order.attributes["motia.trigger"] == "state"
    assert on_order.attributes["motia.state.key"] == "o1"
    assert ship.attributes is not None and ship.attributes["messaging.destination.name"] == "order.placed"
    assert ship.attributes["motia.delivery.attempt"] == 1
    # And the handler's log line is an event of its span
    assert [(e.name, dict(e.attributes or {})) for e in request.events] == [
        ("log", {"log.severity": "INFO", "log.message": "order stored"})
    ]


async def test_a_stream_change_continues_the_writers_trace(otel: Otel, url: str) -> None:
    # Given a queue step writing a stream item, and a step triggered by that stream
    seen: dict[str, Any] = {}

    async def write(data, ctx):
        await ctx.streams.todo.set("g1", "i1", {"title": "x"})

    async def watch(change, ctx):
        seen["trace"] = ctx.trace_id

    steps = [
        step({"name": "writer", "triggers": [queue("todo.write")]}, write),
        step({"name": "watcher", "triggers": [stream("todo")]}, watch),
    ]
    async with app_client(steps, state=url, delivery=FAST, streams=[StreamDefinition(name="todo")]) as client:
        # When a message makes the writer change the stream
        await client.app.queues.send({"topic": "todo.write", "data": {}}, sender=None, message_id="m1", trace_id=None)
        await drain(client)
    # Then the stream-triggered run is a child of the stream write, in the writer's trace
    writer, change, watcher = otel.one("step writer"), otel.one("stream.set"), otel.one("step watcher")
    assert parent_of(change) == writer.context.span_id
    assert parent_of(watcher) == change.context.span_id
    assert seen["trace"] == f"{writer.context.trace_id:032x}"
    assert change.attributes is not None and change.attributes["motia.stream"] == "todo"
    assert change.attributes["motia.stream.group"] == "g1" and change.attributes["motia.stream.item"] == "i1"
    assert watcher.attributes is not None and watcher.attributes["motia.trigger"] == "stream"


async def test_a_cron_run_is_a_trace_of_its_own(otel: Otel) -> None:
    # Given a step on a per-second schedule that writes state
    ran: list[str] = []

    async def tick(_input, ctx):
        await ctx.state.set("ticks", "last", 1)
        ran.append(ctx.trace_id)

    steps = [step({"name": "ticker", "triggers": [cron("* * * * * *")]}, tick)]
    async with app_client(steps, cron=True, delivery=FAST):
        # When it fires
        await eventually(lambda: ran, what="a cron run")
    # Then the run is a root span with the expression, its state write a child
    run = otel.named("step ticker")[0]
    assert run.parent is None and run.kind is SpanKind.INTERNAL
    assert run.attributes is not None and run.attributes["motia.cron"] == "* * * * * *"
    assert run.attributes["motia.trigger"] == "cron"
    writes = [span for span in otel.named("state.set") if parent_of(span) == run.context.span_id]
    assert len(writes) == 1 and ran[0] == f"{run.context.trace_id:032x}"


async def test_an_incoming_traceparent_is_continued_and_returned(otel: Otel) -> None:
    # Given a caller's trace context
    caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    steps = flow_steps({})
    async with app_client(steps, delivery=FAST) as client:
        # When it calls with a traceparent
        response = await client.post(
            "/orders", json={"id": "o2", "qty": 1}, headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"}
        )
        await drain(client)
    # Then the request's span is a child of the caller's, and the answer names the request's span
    request = otel.one("step create-order")
    assert f"{request.context.trace_id:032x}" == caller_trace
    assert request.parent is not None and f"{request.parent.span_id:016x}" == caller_span
    assert response.headers["traceparent"] == f"00-{caller_trace}-{request.context.span_id:016x}-01"
    # And the whole flow stays in the caller's trace
    assert {f"{span.context.trace_id:032x}" for span in otel.spans()} == {caller_trace}


async def test_a_malformed_traceparent_starts_a_new_trace(otel: Otel) -> None:
    async with app_client(flow_steps({}), delivery=FAST) as client:
        response = await client.post("/orders", json={"id": "o3", "qty": 1}, headers={"traceparent": "00-zz-yy-01"})
        await drain(client)
    assert response.status_code == 201
    request = otel.one("step create-order")
    assert request.parent is None
    assert response.headers["traceparent"].split("-")[1] == f"{request.context.trace_id:032x}"


async def test_a_retried_delivery_keeps_its_trace_and_records_the_error(otel: Otel, tmp_path: Path) -> None:
    # Given a queue step that fails its first attempt
    seen: dict[str, Any] = {}
    url = f"sqlite:///{tmp_path / 's.db'}"
    async with app_client(flow_steps(seen, fail_first=True), state=url, delivery=FAST) as c:
        await c.post("/orders", json={"id": "o4", "qty": 1})
        await drain(c)
    # Then both attempts are spans of the request's trace, children of the same enqueue
    runs = sorted(otel.named("step ship"), key=lambda span: span.start_time or 0)
    assert len(runs) == 2
    enqueue = otel.one("enqueue order.placed")
    trace_id = otel.one("step create-order").context.trace_id
    assert [span.context.trace_id for span in runs] == [trace_id, trace_id]
    assert [parent_of(span) for span in runs] == [enqueue.context.span_id] * 2
    assert [span.attributes["motia.delivery.attempt"] for span in runs if span.attributes] == [1, 2]
    assert seen["trace_ids"] == [f"{trace_id:032x}"] * 2
    # And the failed attempt has status ERROR with the exception recorded; the retry is fine
    failed, retried = runs
    assert failed.status.status_code is StatusCode.ERROR
    exceptions = [e for e in failed.events if e.name == "exception"]
    assert exceptions and (exceptions[0].attributes or {})["exception.message"] == "carrier down"
    assert retried.status.status_code is not StatusCode.ERROR
    # And the error counter and duration histogram read back per step and trigger kind
    points = otel.metrics()
    errors = {labels(p): p.value for p in points["motia.step.errors"]}
    assert errors == {("ship", "queue"): 1}
    durations = {labels(p): p.count for p in points["motia.step.duration"]}
    assert durations == {("create-order", "http"): 1, ("on-order", "state"): 1, ("ship", "queue"): 2}


async def test_metrics_read_back(otel: Otel, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given store gauges read often, and a step that always fails (so its message becomes a dead letter)
    monkeypatch.setattr(telemetry_metrics, "STORE_GAUGE_INTERVAL", 0.02)

    async def broken(data, ctx):
        raise ValueError("no")

    steps = [
        *flow_steps({}),
        step({"name": "broken", "triggers": [queue("bad", config={"max_retries": 0})]}, broken),
    ]
    async with app_client(steps, delivery=FAST) as client:
        await client.post("/orders", json={"id": "o5", "qty": 1})
        await client.app.queues.send({"topic": "bad", "data": {}}, sender=None, message_id="m1", trace_id=None)
        await drain(client)

        def gauges() -> tuple[dict[str, int], dict[str, int]] | None:
            points = otel.metrics()
            dead = {p.attributes["motia.step"]: p.value for p in points.get("motia.dead_letters", [])}
            pending = {p.attributes["motia.step"]: p.value for p in points.get("motia.deliveries.pending", [])}
            return (dead, pending) if dead.get("broken") else None

        # Then the gauges read the store: one dead letter for the broken step, and (drained) nothing pending
        dead, pending = await eventually(gauges, what="the dead-letter gauge")
        assert dead == {"create-order": 0, "on-order": 0, "ship": 0, "broken": 1}
        await eventually(lambda: not any(gauges()[1].values()), what="no pending deliveries")  # type: ignore[index]
        assert set(pending) == {"create-order", "on-order", "ship", "broken"}
    points = otel.metrics()
    # And the state operation latency is per backend and op, the delivery lag per step
    ops = {
        (p.attributes["motia.state.backend"], p.attributes["motia.state.op"]) for p in points["motia.state.duration"]
    }
    assert ("memory", "state.set") in ops
    lags = {p.attributes["motia.step"]: p.count for p in points["motia.delivery.lag"]}
    assert lags == {"on-order": 1, "ship": 1, "broken": 1}


async def test_log_records_carry_trace_and_span_ids(otel: Otel, caplog: pytest.LogCaptureFixture) -> None:
    # Given a step logging inside its run
    async with app_client(flow_steps({}), delivery=FAST) as client:
        with caplog.at_level(logging.INFO, logger="motia.step"):
            await client.post("/orders", json={"id": "o6", "qty": 1})
            await drain(client)
    record = next(r for r in caplog.records if r.getMessage() == "order stored")
    span = otel.one("step create-order")
    trace_id, span_id = f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}"
    # Then both formats print the run's trace and span ids
    import orjson

    line = orjson.loads(JsonFormatter().format(record))
    assert (line["trace_id"], line["span_id"]) == (trace_id, span_id)
    text = TextFormatter().format(record)
    assert f"trace={trace_id}" in text and f"span={span_id}" in text


async def test_without_telemetry_nothing_changes(tmp_path: Path) -> None:
    # Given no telemetry installed
    assert observe.active is None and state_observe.observer is None
    async with app_client(flow_steps({}), delivery=FAST) as client:
        response = await client.post("/orders", json={"id": "o7", "qty": 1})
        await drain(client)
    # Then trace ids are pymotia's own (16 hex) and no traceparent is returned
    assert len(response.json()["trace"]) == 16
    assert "traceparent" not in response.headers


def test_state_operations_outside_a_run_are_timed_not_traced(otel: Otel) -> None:
    from motia.state.sync import SyncStateManager

    with SyncStateManager.from_url("memory://") as sm:
        sm.set("s", "k", 1)
    assert otel.spans() == []
    assert any(p.attributes["motia.state.op"] == "state.set" for p in otel.metrics()["motia.state.duration"])
