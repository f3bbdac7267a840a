"""Calling a handler by hand: a real ``ctx`` (state, enqueue, streams, logger) without a running app."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from motia.runtime.app import MotiaApp
from motia.runtime.context import FlowContext, StepLogger, new_trace_id
from motia.runtime.types import ApiRequest, TriggerInfo
from motia.state.manager import StateManager
from motia.steps.definition import Step
from motia.streams.config import StreamConfig, StreamDefinition, definition_from_config
from motia.streams.manager import StreamManager
from motia.streams.stream import Stream, Streams
from motia.testing.enqueues import EnqueueRecorder, RecordingEnqueuer
from motia.testing.stores import memory_state

__all__ = ["api_request", "call_handler", "make_context", "stream_definition"]


def api_request(
    method: str = "GET",
    path: str = "/",
    *,
    path_params: dict[str, str] | None = None,
    query_params: dict[str, str | list[str]] | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> ApiRequest:
    """The ``input`` an HTTP handler would get for such a request (header names are lower-cased).

    Its ``response`` records what a streaming handler writes (``chunks``, ``status_code``,
    ``headers_sent``, ``closed``) instead of sending it."""
    return ApiRequest(
        method=method.upper(),
        path=path,
        path_params=dict(path_params or {}),
        query_params=dict(query_params or {}),
        headers={k.lower(): v for k, v in (headers or {}).items()},
        body=body,
    )


def make_context(
    *,
    state: Any = None,
    step: str = "test",
    trigger: TriggerInfo | None = None,
    trace_id: str | None = None,
    enqueues: EnqueueRecorder | None = None,
    streams: Iterable[Stream[Any] | StreamConfig | StreamDefinition] = (),
    input_value: Any = None,
) -> FlowContext:
    """A ``ctx`` for calling an ``async def`` handler by hand; ``state`` defaults to a fresh memory store.

    ``input_value`` is the input you will pass the handler: what ``ctx.get_data()`` and ``ctx.match``
    read (an app sets it itself; :func:`call_handler` does too).

    ``await ctx.enqueue(...)`` records into ``enqueues`` (checked as JSON, sent nowhere); without a
    recorder it raises. ``ctx.streams`` holds ``streams`` (``Stream`` objects, configs or definitions),
    stored in the same store as ``state``.
    """
    trace = trace_id or new_trace_id()
    state = state if state is not None else memory_state()
    manager = getattr(state, "manager", state)  # a SyncStateManager drives an async one
    stream_manager = StreamManager(manager.backend, [stream_definition(declared) for declared in streams])
    return FlowContext(
        state=state,
        streams=Streams(stream_manager),
        logger=StepLogger(step, trace),
        trace_id=trace,
        trigger=trigger or TriggerInfo(type="http", method="GET", path="/"),
        step=step,
        enqueuer=None if enqueues is None else RecordingEnqueuer(enqueues, sender=step, declared=None, blocking=False),
        input_value=input_value,
    )


async def call_handler(
    target: Step | Callable[..., Any],
    input: Any = None,  # noqa: A002 - the handler's own name
    *,
    state: StateManager | None = None,
    trigger: TriggerInfo | None = None,
    ctx: FlowContext | None = None,
    enqueues: EnqueueRecorder | None = None,
) -> Any:
    """Call a step's handler as the runtime would: one or two arguments, ``def`` in a worker thread.

    ``def`` handlers get the blocking ``ctx.state`` and a bound ``motia.stateManager``, as under
    ``motia run``. ``state`` defaults to a fresh memory store; pass your own to inspect it afterwards.
    Messages the handler enqueues are recorded into ``enqueues`` (checked against the step's declared
    ``enqueues`` and as JSON, sent nowhere); without a recorder ``ctx.enqueue`` raises.
    """
    step = target if isinstance(target, Step) else Step({"name": "test", "triggers": []}, target)
    app = MotiaApp([step], state=state if state is not None else memory_state(), cron=False, delivery=False)
    await app.startup()
    try:
        info = trigger or TriggerInfo(type="http", method="GET", path="/")
        if ctx is None:
            ctx = app.context(step, info, new_trace_id())
            declared = app.queues.declared[step.name] if isinstance(target, Step) else None
            ctx.enqueuer = (
                None
                if enqueues is None
                else RecordingEnqueuer(enqueues, sender=step.name, declared=declared, blocking=not step.is_async)
            )
        return await app.invoke(step, input, ctx)
    finally:
        await app.shutdown()


def stream_definition(declared: Stream[Any] | StreamConfig | StreamDefinition) -> StreamDefinition:
    if isinstance(declared, StreamDefinition):
        return declared
    if isinstance(declared, StreamConfig):
        return definition_from_config(declared)
    if isinstance(declared, Stream):
        return declared.definition or StreamDefinition(declared.stream_name)
    raise TypeError(f"streams takes Stream objects, StreamConfig or StreamDefinition, not {type(declared).__name__}")
