"""The recent-traces buffer with the real OpenTelemetry SDK: a TracerProvider with the buffer as its span
processor, spans made by the SDK's tracer under the names and attributes the runtime gives them (``step
<name>``, ``state.<op>``, ``enqueue <topic>``, ``log`` events), from the event loop's thread and from others."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from motia.exceptions import ConfigError
from motia.runtime import traces as registry
from motia.runtime.telemetry.recent import MAX_VALUE_CHARS, RecentTraces, add_recent_traces, new_recent_traces
from motia.runtime.traces import TraceLimits

MS = 1_000_000  # nanoseconds


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    provider = TracerProvider()
    try:
        yield provider
    finally:
        provider.shutdown()
    assert registry.installed() is None  # shutting the provider down uninstalled its buffer


def buffer_for(provider: TracerProvider, **limits: int) -> RecentTraces:
    return add_recent_traces(provider, TraceLimits(**limits))


def test_a_flow_is_one_trace_whose_spans_form_a_tree(provider: TracerProvider) -> None:
    buffer = buffer_for(provider)
    tracer = provider.get_tracer("test")
    # Given an HTTP request whose step writes state, logs and enqueues, and the queue step that message ran
    with tracer.start_as_current_span(
        "POST /orders", kind=trace.SpanKind.SERVER, start_time=0 * MS, end_on_exit=False
    ) as server:
        server.set_attribute("http.request.method", "POST")
        with tracer.start_as_current_span(
            "step create-order",
            start_time=1 * MS,
            attributes={"motia.step": "create-order", "motia.trigger": "http"},
            end_on_exit=False,
        ) as handler:
            handler.add_event("log", {"log.severity": "info", "log.message": "order o1 placed"}, timestamp=2 * MS)
            attributes = {"motia.state.scope": "orders", "motia.state.key": "o1"}
            tracer.start_span("state.set", start_time=3 * MS, attributes=attributes).end(end_time=4 * MS)
            enqueue = tracer.start_span("enqueue orders.created", start_time=5 * MS)
            enqueue.end(end_time=6 * MS)
            handler.end(end_time=7 * MS)
        server.end(end_time=8 * MS)
    # The queue step continues the trace from the message's stored context (a remote parent), later
    sent = enqueue.get_span_context()
    stored = SpanContext(sent.trace_id, sent.span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    parent = trace.set_span_in_context(NonRecordingSpan(stored))
    consumer = tracer.start_span("step bill", context=parent, start_time=20 * MS)
    with trace.use_span(consumer, end_on_exit=False):
        tracer.start_span("state.get", start_time=21 * MS).end(end_time=22 * MS)
    consumer.end(end_time=30 * MS)

    # Then the buffer holds one trace, rooted at the server span, spanning the whole flow
    (summary,) = buffer.recent()
    trace_id = format(server.get_span_context().trace_id, "032x")
    assert (summary.trace_id, summary.root, summary.span_count, summary.error) == (trace_id, "POST /orders", 6, False)
    assert (summary.start, summary.duration, summary.dropped) == (0, 30 * MS, 0)
    # And its spans come as a tree: each parent before its children, siblings by start time
    detail = buffer.trace(trace_id)
    assert detail is not None and detail.summary == summary
    assert [(node.span.name, node.depth, node.orphan) for node in detail.spans] == [
        ("POST /orders", 0, False),
        ("step create-order", 1, False),
        ("state.set", 2, False),
        ("enqueue orders.created", 2, False),
        ("step bill", 3, False),
        ("state.get", 4, False),
    ]
    step = detail.spans[1].span
    assert step.kind == "internal" and detail.spans[0].span.kind == "server"
    assert step.attributes == {"motia.step": "create-order", "motia.trigger": "http"}
    assert [(e.name, dict(e.attributes), e.time) for e in step.events] == [
        ("log", {"log.severity": "info", "log.message": "order o1 placed"}, 2 * MS)
    ]
    assert detail.spans[2].span.parent_id == step.span_id and step.parent_id == detail.spans[0].span.span_id
    assert buffer.trace("0" * 32) is None


def test_siblings_started_together_put_the_longer_first() -> None:
    provider = TracerProvider()
    buffer = buffer_for(provider)
    tracer = provider.get_tracer("test")
    try:
        with tracer.start_as_current_span("step a", start_time=0, end_on_exit=False) as root:
            tracer.start_span("state.get", start_time=5 * MS).end(end_time=6 * MS)
            tracer.start_span("state.list", start_time=1 * MS).end(end_time=2 * MS)
            tracer.start_span("state.set", start_time=1 * MS).end(end_time=4 * MS)
            root.end(end_time=10 * MS)
        detail = buffer.trace(format(root.get_span_context().trace_id, "032x"))
        assert detail is not None
        assert [node.span.name for node in detail.spans] == ["step a", "state.set", "state.list", "state.get"]
    finally:
        provider.shutdown()


def test_keeps_the_last_traces_and_evicts_the_one_least_recently_added_to(provider: TracerProvider) -> None:
    buffer = buffer_for(provider, max_traces=3)
    tracer = provider.get_tracer("test")
    ids = {}
    # Given traces a, b, c, then a span more in a, then a fourth trace d
    for name in "abc":
        with tracer.start_as_current_span(f"step {name}") as span:
            ids[name] = format(span.get_span_context().trace_id, "032x")
    first = trace.set_span_in_context(
        NonRecordingSpan(SpanContext(int(ids["a"], 16), 0x1234, is_remote=True, trace_flags=TraceFlags(1)))
    )
    tracer.start_span("step a-again", context=first).end()
    with tracer.start_as_current_span("step d") as span:
        ids["d"] = format(span.get_span_context().trace_id, "032x")

    # Then b went (a was added to after it), the rest are kept, newest first by start
    assert buffer.trace(ids["b"]) is None and buffer.evicted == 1 and len(buffer) == 3
    assert [summary.trace_id for summary in buffer.recent()] == [ids["d"], ids["c"], ids["a"]]
    assert [summary.root for summary in buffer.recent(limit=2)] == ["step d", "step c"]
    kept_a = buffer.trace(ids["a"])
    assert kept_a is not None and kept_a.summary.span_count == 2


def test_keeps_at_most_max_spans_per_trace_and_counts_the_rest(provider: TracerProvider) -> None:
    buffer = buffer_for(provider, max_spans=3)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("step busy", start_time=1 * MS) as root:
        for number in range(5):
            tracer.start_span(f"state.get {number}", start_time=(2 + number) * MS).end()
    (summary,) = buffer.recent()
    assert (summary.span_count, summary.dropped) == (3, 3)  # 5 children + the root ended: 6, 3 kept
    detail = buffer.trace(format(root.get_span_context().trace_id, "032x"))
    assert detail is not None
    # The root ended last and was dropped: its children are orphans at the top; the summary still names it
    assert [(node.span.name, node.depth, node.orphan) for node in detail.spans] == [
        ("state.get 0", 0, True),
        ("state.get 1", 0, True),
        ("state.get 2", 0, True),
    ]
    assert summary.root == "step busy" and summary.start == 1 * MS


def test_a_failed_span_marks_its_trace(provider: TracerProvider) -> None:
    buffer = buffer_for(provider)
    tracer = provider.get_tracer("test")
    # Given a step whose handler raised (recorded the OpenTelemetry way) under a server span that did not
    with tracer.start_as_current_span("GET /boom", kind=trace.SpanKind.SERVER) as server:
        with pytest.raises(ValueError), tracer.start_as_current_span("step boom"):
            raise ValueError("card declined")
        with tracer.start_as_current_span("step fine"):
            pass
    detail = buffer.trace(format(server.get_span_context().trace_id, "032x"))
    assert detail is not None and detail.summary.error
    server_node, failed, fine = detail.spans
    assert not server_node.span.error and not fine.span.error
    assert failed.span.error and failed.span.status == "error"
    assert failed.span.status_message == "ValueError: card declined"
    (event,) = failed.span.events
    assert event.name == "exception" and event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "card declined"
    assert "Traceback" in str(event.attributes["exception.stacktrace"])


def test_an_exception_recorded_on_a_span_that_went_on_is_kept_but_no_failure(provider: TracerProvider) -> None:
    buffer = buffer_for(provider)
    with provider.get_tracer("test").start_as_current_span("step careful") as span:
        span.record_exception(RuntimeError("cache miss, read the store"))
        span.set_status(Status(StatusCode.OK))
    (summary,) = buffer.recent()
    assert not summary.error
    detail = buffer.trace(summary.trace_id)
    assert detail is not None and not detail.spans[0].span.error
    assert [event.name for event in detail.spans[0].span.events] == ["exception"]


def test_a_continued_trace_is_rooted_at_its_first_local_span(provider: TracerProvider) -> None:
    buffer = buffer_for(provider)
    tracer = provider.get_tracer("test")
    # Given a request that came in with a traceparent from another service
    incoming = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    with tracer.start_as_current_span(
        "GET /orders", context=trace.set_span_in_context(NonRecordingSpan(incoming))
    ) as server:
        with tracer.start_as_current_span("step list-orders"):
            pass
    assert format(server.get_span_context().trace_id, "032x") == format(0xABC, "032x")
    (summary,) = buffer.recent()
    assert summary.root == "GET /orders"
    detail = buffer.trace(format(0xABC, "032x"))
    assert detail is not None
    assert [(node.span.name, node.depth, node.orphan) for node in detail.spans] == [
        ("GET /orders", 0, True),
        ("step list-orders", 1, False),
    ]
    assert detail.spans[0].span.parent_id == format(0xDEF, "016x")


def test_spans_ended_on_many_threads_are_all_kept(provider: TracerProvider) -> None:
    buffer = buffer_for(provider, max_traces=1000)
    tracer = provider.get_tracer("test")
    start = threading.Barrier(9)
    problems: list[BaseException] = []

    def handler(worker: int) -> None:
        try:
            start.wait()
            for number in range(40):
                with tracer.start_as_current_span(f"step w{worker}-{number}"):
                    with tracer.start_as_current_span("state.set"):
                        pass
                    tracer.start_span("enqueue done").end()
        except BaseException as exc:  # reported by the main thread
            problems.append(exc)

    threads = [threading.Thread(target=handler, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    start.wait()
    while any(thread.is_alive() for thread in threads):  # read while they write
        for summary in buffer.recent(limit=50):
            assert summary.span_count <= 3
    for thread in threads:
        thread.join()
    assert problems == []
    summaries = buffer.recent()
    assert len(summaries) == 320 and all(summary.span_count == 3 for summary in summaries)
    assert {summary.root for summary in summaries} == {f"step w{w}-{n}" for w in range(8) for n in range(40)}


def test_a_deep_flow_needs_no_recursion(provider: TracerProvider) -> None:
    buffer = buffer_for(provider, max_spans=5000)
    tracer = provider.get_tracer("test")
    # Given a step that enqueued itself 3000 times, each run a child of the previous one's span
    context = None
    for _ in range(3000):
        span = tracer.start_span("step again", context=context)
        span.end()
        context = trace.set_span_in_context(span)
    detail = buffer.trace(format(span.get_span_context().trace_id, "032x"))
    assert detail is not None and len(detail.spans) == 3000 and detail.spans[-1].depth == 2999


def test_long_texts_are_cut(provider: TracerProvider) -> None:
    buffer = buffer_for(provider)
    with provider.get_tracer("test").start_as_current_span("step chatty") as span:
        span.add_event("log", {"log.severity": "info", "log.message": "x" * 10_000})
        span.set_attribute("motia.tags", ["a", "b"])
    detail = buffer.trace(format(span.get_span_context().trace_id, "032x"))
    assert detail is not None
    message = detail.spans[0].span.events[0].attributes["log.message"]
    assert isinstance(message, str) and len(message) == MAX_VALUE_CHARS and message.endswith("…")
    assert detail.spans[0].span.attributes["motia.tags"] == ["a", "b"]


def test_unsampled_spans_are_not_kept() -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    provider = TracerProvider(sampler=ALWAYS_OFF)
    buffer = buffer_for(provider)
    try:
        with provider.get_tracer("test").start_as_current_span("step quiet"):
            pass
        assert buffer.recent() == []
    finally:
        provider.shutdown()


def test_installed_for_the_console_until_its_provider_shuts_down() -> None:
    assert registry.installed() is None
    provider = TracerProvider()
    buffer = add_recent_traces(provider)
    try:
        assert registry.installed() is buffer and buffer.limits == TraceLimits()
        other = RecentTraces()
        registry.uninstall(other)  # not the one installed: nothing happens
        assert registry.installed() is buffer
    finally:
        provider.shutdown()
    assert registry.installed() is None


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TraceLimits.from_env({}) == TraceLimits(100, 1000, 10_000)
    assert TraceLimits.from_env({"MOTIA_TRACES_TOTAL_SPANS": "50"}).max_total_spans == 50
    assert TraceLimits.from_env({"MOTIA_TRACES_KEPT": "7", "MOTIA_TRACE_MAX_SPANS": " 20 "}) == TraceLimits(7, 20)
    monkeypatch.setenv("MOTIA_TRACES_KEPT", "3")
    provider = TracerProvider()
    try:
        assert add_recent_traces(provider).limits.max_traces == 3
    finally:
        provider.shutdown()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MOTIA_TRACES_KEPT": "many"}, "MOTIA_TRACES_KEPT must be a positive integer, not 'many'"),
        ({"MOTIA_TRACE_MAX_SPANS": "0"}, "MOTIA_TRACE_MAX_SPANS must be a positive integer, not '0'"),
    ],
)
def test_bad_limits_are_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TraceLimits.from_env(environ)
    with pytest.raises(ConfigError, match="trace limit max_traces must be a positive int, not True"):
        TraceLimits(max_traces=True)


def test_a_span_it_cannot_keep_is_logged_never_raised_into_the_handler(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:  # a span whose status cannot be read
        name = "step odd"
        context = SpanContext(1, 2, is_remote=False)
        parent = None
        start_time = end_time = 1
        events = ()

        @property
        def status(self) -> Status:
            raise RuntimeError("no status")

    buffer = RecentTraces()
    buffer.on_end(Broken())  # type: ignore[arg-type]
    assert buffer.recent() == []
    assert "recent traces: span 'step odd' not kept" in caplog.text and "no status" in caplog.text


def test_the_factory_for_the_tracing_set_up_installs_its_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the set-up's way: a zero-argument factory whose processor it adds to the provider it configures
    monkeypatch.setenv("MOTIA_TRACE_MAX_SPANS", "2")
    provider = TracerProvider()
    buffer = new_recent_traces()
    provider.add_span_processor(buffer)
    try:
        assert registry.installed() is buffer and buffer.limits == TraceLimits(max_spans=2)
        with provider.get_tracer("test").start_as_current_span("step a"):
            pass
        assert [summary.root for summary in buffer.recent()] == ["step a"]
    finally:
        provider.shutdown()
    assert registry.installed() is None


def test_spans_in_all_are_bounded_by_evicting_the_oldest_traces(provider: TracerProvider) -> None:
    buffer = buffer_for(provider, max_traces=100, max_spans=10, max_total_spans=12)
    tracer = provider.get_tracer("test")
    ids = []
    # Given traces of 5 spans each, 12 spans at most in all
    for name in "abcd":
        with tracer.start_as_current_span(f"step {name}") as root:
            for _ in range(4):
                tracer.start_span("state.get").end()
        ids.append(format(root.get_span_context().trace_id, "032x"))
    # Then only the newest two are kept (10 spans; a third would make 15)
    assert [summary.root for summary in buffer.recent()] == ["step d", "step c"]
    assert buffer.trace(ids[0]) is None and buffer.evicted == 2
    # And one trace bigger than the total is kept alone, up to its own limit
    with tracer.start_as_current_span("step big"):
        for _ in range(20):
            tracer.start_span("state.get").end()
    (summary,) = buffer.recent()
    assert (summary.root, summary.span_count, summary.dropped) == ("step big", 10, 11)
