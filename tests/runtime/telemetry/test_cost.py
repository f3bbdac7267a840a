"""The cheap paths of the telemetry (issue 17, session 23), with the real SDK: no metrics unless a meter
provider is configured, an unsampled flow records nothing yet keeps its trace, and the ``traceparent``
parser agrees with the SDK's propagator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from motia import queue, step
from motia.runtime import observe
from motia.runtime.telemetry import OtelTelemetry, context_of, enable
from motia.runtime.telemetry.spans import metrics_configured
from motia.state import observe as state_observe
from motia.testing import app_client, drain
from tests.runtime.test_telemetry import FAST, flow_steps

FLOW = ["enqueue order.placed", "state.set", "step create-order", "step on-order", "step ship"]


class Wired:
    def __init__(self, tracer_provider: TracerProvider, meter_provider: Any) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = tracer_provider
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.telemetry: OtelTelemetry = enable(tracer_provider, meter_provider)
        observe.install(self.telemetry)

    def names(self) -> list[str]:
        return sorted(span.name for span in self.exporter.get_finished_spans())


@pytest.fixture
def traces_only() -> Iterator[Wired]:
    # The global meter provider, left unset as `motia run` finds it without OTEL_METRICS_EXPORTER
    wired = Wired(TracerProvider(), otel_metrics.get_meter_provider())
    try:
        yield wired
    finally:
        observe.stop(wired.telemetry)
        wired.tracer_provider.shutdown()
    assert observe.active is None and state_observe.observer is None


@pytest.fixture
def unsampled() -> Iterator[Wired]:
    # Roots are never sampled; a child follows its parent's decision (a caller's traceparent, or a stored one)
    wired = Wired(TracerProvider(sampler=ParentBased(ALWAYS_OFF)), None)
    try:
        yield wired
    finally:
        observe.stop(wired.telemetry)
        wired.tracer_provider.shutdown()


def test_metrics_are_on_only_with_a_meter_provider_that_records() -> None:
    assert not metrics_configured(None)
    assert not metrics_configured(otel_metrics.NoOpMeterProvider())
    assert not metrics_configured(otel_metrics.get_meter_provider())  # the unset global proxy
    assert not metrics_configured(MeterProvider())  # opentelemetry-instrument's for OTEL_METRICS_EXPORTER=none
    provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    try:
        assert metrics_configured(provider)
        assert enable(TracerProvider(), provider).instruments is not None
    finally:
        provider.shutdown()
        state_observe.set_observer(None)


async def test_without_metrics_a_flow_is_traced_and_no_instrument_exists(traces_only: Wired) -> None:
    # Given tracing with no meter provider configured: no instruments, no store gauges to refresh
    assert traces_only.telemetry.instruments is None
    async with app_client(flow_steps({}), delivery=FAST) as client:
        assert client.app._store_watch is None and client.app._gauges is None
        # When a request runs the whole flow
        response = await client.post("/orders", json={"id": "m1", "qty": 1})
        await drain(client)
    # Then every span is there all the same
    assert response.status_code == 201
    assert traces_only.names() == FLOW


async def test_an_unsampled_flow_records_nothing_and_keeps_one_trace_id(unsampled: Wired) -> None:
    # Given a sampler that keeps no new trace
    seen: dict[str, Any] = {}
    async with app_client(flow_steps(seen), delivery=FAST) as client:
        # When a request comes in without a traceparent
        response = await client.post("/orders", json={"id": "u1", "qty": 1})
        await drain(client)
    # Then no span is recorded, not even the deliveries' (they inherit the decision instead of sampling anew)
    assert response.status_code == 201
    assert unsampled.names() == []
    # And the flow still has one trace id, answered with an unsampled traceparent (the sampled bit clear)
    trace_id = response.json()["trace"]
    assert len(trace_id) == 32 and seen["trace_ids"] == [trace_id]
    version, answered, _span, flags = response.headers["traceparent"].split("-")
    assert (version, answered) == ("00", trace_id) and not int(flags, 16) & 1


async def test_a_sampled_caller_is_followed_under_a_parent_based_sampler(unsampled: Wired) -> None:
    # Given a caller whose trace is sampled (flags 01)
    caller = "0af7651916cd43dd8448eb211c80319c"
    async with app_client(flow_steps({}), delivery=FAST) as client:
        response = await client.post(
            "/orders", json={"id": "u2", "qty": 1}, headers={"traceparent": f"00-{caller}-b7ad6b7169203331-01"}
        )
        await drain(client)
    # Then the whole flow is recorded in the caller's trace, the queue step (reached through the store) too
    assert response.status_code == 201
    assert unsampled.names() == FLOW
    assert {f"{span.context.trace_id:032x}" for span in unsampled.exporter.get_finished_spans()} == {caller}


@pytest.mark.parametrize(
    "header",
    [
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        " \t00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 ",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future-fields",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        "00-zz-yy-01",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-" + "x" * 600,
        "",
    ],
)
def test_the_traceparent_parser_agrees_with_the_sdk_propagator(header: str) -> None:
    expected = trace.get_current_span(TraceContextTextMapPropagator().extract({"traceparent": header}))
    ours = context_of(header)
    if not expected.get_span_context().is_valid:
        assert ours is None
    else:
        assert ours is not None
        assert trace.get_current_span(ours).get_span_context() == expected.get_span_context()


async def test_an_unsampled_run_is_still_measured_and_its_failure_counted() -> None:
    # Given metrics on and a sampler that keeps no trace
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    wired = Wired(TracerProvider(sampler=ParentBased(ALWAYS_OFF)), meter_provider)

    async def broken(data: Any, ctx: Any) -> None:
        raise ValueError("no")

    steps = [step({"name": "broken", "triggers": [queue("bad", config={"max_retries": 0})]}, broken)]
    try:
        async with app_client(steps, delivery=FAST) as client:
            # When its one message fails
            await client.app.queues.send({"topic": "bad", "data": {}}, sender=None, message_id="m1", trace_id=None)
            await drain(client)
        # Then no span is recorded, but the run's duration and its error are
        assert wired.names() == []
        data = reader.get_metrics_data()
        points: dict[str, list[Any]] = {
            metric.name: list(metric.data.data_points)
            for resource in (data.resource_metrics if data else [])
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }
        assert [(p.attributes["motia.step"], p.value) for p in points["motia.step.errors"]] == [("broken", 1)]
        assert [p.count for p in points["motia.step.duration"]] == [1]
    finally:
        observe.stop(wired.telemetry)
        wired.tracer_provider.shutdown()
        meter_provider.shutdown()
