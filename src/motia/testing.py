"""Test helpers: call a handler directly with a real ``ctx``, or drive an app over in-process HTTP.

::

    from motia.testing import api_request, app_client, call_handler

    async def test_get_session():
        result = await call_handler(get_session, api_request(path_params={"sessionId": "s1"}))
        assert result["status"] == 404

    async def test_over_http():
        async with app_client("steps") as client:
            assert (await client.get("/session/s1")).status_code == 404

    async def test_order_flow():
        async with app_client("steps") as client, record_state_events(client.app) as events:
            with capture_enqueues(client.app) as sent:
                await client.post("/orders", json={"id": "o1"})
                await drain(client.app)                   # every event and message handled
            sent.assert_enqueued("order.created", {"id": "o1"})
            events.assert_event("created", scope="orders", key="o1")

Stores default to ``memory://`` (fresh and private each time). Nothing here touches the network.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

import httpx

from motia.runtime.app import MotiaApp
from motia.runtime.context import FlowContext, StepLogger, new_trace_id
from motia.runtime.delivery import DeliveryOptions
from motia.runtime.queue import EnqueueError, Message, parse_event, strict_topics_from_env
from motia.runtime.state_triggers import decode_state_event, subscriptions
from motia.runtime.types import ApiRequest, StateTriggerInput, TriggerInfo
from motia.state import values as _values
from motia.state.backends.types import Subscription
from motia.state.manager import StateManager
from motia.steps.definition import Step
from motia.streams.config import StreamConfig, StreamDefinition, definition_from_config
from motia.streams.manager import StreamManager
from motia.streams.stream import Stream, Streams

__all__ = [
    "AppClient",
    "EnqueueRecorder",
    "StateEventRecorder",
    "api_request",
    "app_client",
    "call_handler",
    "capture_enqueues",
    "drain",
    "make_context",
    "memory_state",
    "record_state_events",
]

_ANY: Any = object()


def memory_state(**options: Any) -> StateManager:
    """A fresh, private in-memory store (``options`` as for ``StateManager.from_url``)."""
    return StateManager.from_url("memory://", **options)


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
    stream_manager = StreamManager(manager.backend, [_stream_definition(declared) for declared in streams])
    return FlowContext(
        state=state,
        streams=Streams(stream_manager),
        logger=StepLogger(step, trace),
        trace_id=trace,
        trigger=trigger or TriggerInfo(type="http", method="GET", path="/"),
        step=step,
        enqueuer=None if enqueues is None else _RecordingEnqueuer(enqueues, sender=step, declared=None, blocking=False),
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
                else _RecordingEnqueuer(enqueues, sender=step.name, declared=declared, blocking=not step.is_async)
            )
        return await app.invoke(step, input, ctx)
    finally:
        await app.shutdown()


class EnqueueRecorder:
    """Messages enqueued, in order, as :class:`~motia.runtime.queue.Message` (``topic``, ``data``,
    ``sender``, ...).

    Pass one to :func:`call_handler`/:func:`make_context` (messages are recorded instead of sent), or
    watch a running app with :func:`capture_enqueues` (messages are sent and recorded).
    """

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()

    def __call__(self, message: Message) -> None:
        with self._lock:
            self.messages.append(message)

    def topics(self) -> list[str]:
        return [message.topic for message in self.messages]

    def data(self, topic: str) -> list[Any]:
        """The data of every message sent to ``topic``, in order."""
        return [message.data for message in self.messages if message.topic == topic]

    def assert_enqueued(self, topic: str, data: Any = _ANY) -> Message:
        """The one message sent to ``topic`` (with ``data``, if given); ``AssertionError`` listing what was sent."""
        found = [m for m in self.messages if m.topic == topic and (data is _ANY or m.data == data)]
        if len(found) != 1:
            sent = "\n".join(f"  {m.topic}: {m.data!r}" for m in self.messages) or "  (nothing)"
            wanted = topic if data is _ANY else f"{topic}: {data!r}"
            raise AssertionError(f"expected one message {wanted}, found {len(found)}; enqueued:\n{sent}")
        return found[0]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()


class _RecordingEnqueuer:
    """``ctx.enqueue`` for handlers called without an app: checks and records, sends nothing."""

    def __init__(
        self, recorder: EnqueueRecorder, *, sender: str, declared: frozenset[str] | None, blocking: bool
    ) -> None:
        self.recorder = recorder
        self.sender = sender
        self.declared = declared
        self.blocking = blocking
        self._numbers = itertools.count()

    def __call__(self, event: Mapping[str, Any]) -> Any:
        topic, data, group = parse_event(event)
        if self.declared is not None and topic not in self.declared and strict_topics_from_env():
            # As the app does: refused with strict topics, else recorded (the app sends it with a warning).
            raise EnqueueError(
                f"step {self.sender!r} enqueued to topic {topic!r}, which its config does not declare: add it "
                f"to 'enqueues' (declared: {', '.join(sorted(self.declared)) or 'none'}; strict topics refuse "
                "undeclared ones)"
            )
        try:
            json_data = _values.to_json(data)
        except ValueError as exc:
            raise EnqueueError(f"message data for topic {topic!r} cannot be enqueued: {exc}") from None
        self.recorder(Message(topic, json_data, self.sender, f"test/{next(self._numbers)}", (), group))
        if self.blocking:
            return None
        return _done()


async def _done() -> None:
    return None


@contextlib.contextmanager
def capture_enqueues(app: MotiaApp) -> Iterator[EnqueueRecorder]:
    """Record every message ``app`` enqueues inside the block (they are still delivered)."""
    recorder = EnqueueRecorder()
    app.queues.observers.append(recorder)
    try:
        yield recorder
    finally:
        app.queues.observers.remove(recorder)


async def drain(app: MotiaApp | AppClient, timeout: float = 10.0) -> None:
    """Wait until every state event and queued message of the app has been handled or dead-lettered."""
    await (app.app if isinstance(app, AppClient) else app).drain(timeout)


class StateEventRecorder:
    """State change events of a store, as :class:`~motia.StateTriggerInput`, for assertions.

    Made by :func:`record_state_events`. It subscribes like a state trigger (``scope``/``key`` filter),
    so it sees every change committed after it started; :meth:`collect` fetches what is new.
    """

    _ids = itertools.count(1)

    def __init__(
        self, state: StateManager, *, app: MotiaApp | None = None, scope: str | None = None, key: str | None = None
    ) -> None:
        self.state = state
        self.app = app
        self.subscription = Subscription(f"motia.testing:recorder-{next(self._ids)}", scope, key)
        self.events: list[StateTriggerInput] = []

    async def __aenter__(self) -> StateEventRecorder:
        await self.state.backend.enable_events()
        if self.app is not None and self.app.delivery is not None:
            self.app.delivery.subscriptions.append(self.subscription)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.app is not None and self.app.delivery is not None:
            with contextlib.suppress(ValueError):
                self.app.delivery.subscriptions.remove(self.subscription)

    async def collect(self) -> list[StateTriggerInput]:
        """Fetch the events committed so far; returns (and keeps in :attr:`events`) every event seen."""
        backend = self.state.backend
        if self.app is None:
            others = []
        elif self.app.delivery is not None:
            others = self.app.delivery.subscriptions
        else:
            others = subscriptions(self.app.steps)
        wanted = [*(s for s in others if s != self.subscription), self.subscription]
        while await backend.dispatch_events(wanted):
            pass
        name = self.subscription.step
        owner = f"{name}:{id(self)}"
        new: list[StateTriggerInput] = []
        while claimed := await backend.claim([name], owner=owner, limit=1000, lease=60.0):
            for delivery in claimed:
                new.append(decode_state_event(delivery.payload))
                await backend.complete(delivery.id, owner=owner)
        self.events.extend(sorted(new, key=lambda event: event.seq or 0))
        return self.events

    def of(
        self, event_type: str | None = None, *, scope: str | None = None, key: str | None = None
    ) -> list[StateTriggerInput]:
        """The collected events of that type, scope and key (``None``: any)."""
        return [
            event
            for event in self.events
            if event_type in (None, event.event_type)
            and scope in (None, event.group_id)
            and key in (None, event.item_id)
        ]

    def assert_event(
        self, event_type: str, *, scope: str | None = None, key: str | None = None, **fields: Any
    ) -> StateTriggerInput:
        """The one collected event matching; ``fields`` (``new_value=...``) must be equal too.

        Call :meth:`collect` first. Raises ``AssertionError`` listing the events seen.
        """
        found = [
            event
            for event in self.of(event_type, scope=scope, key=key)
            if all(getattr(event, name) == value for name, value in fields.items())
        ]
        if len(found) != 1:
            seen = "\n".join(
                f"  {e.event_type} {e.group_id}/{e.item_id} v{e.version}: {e.old_value!r} -> {e.new_value!r}"
                for e in self.events
            )
            raise AssertionError(
                f"expected one {event_type} event for {scope or '*'}/{key or '*'} {fields or ''}, found "
                f"{len(found)}; seen:\n{seen or '  (nothing)'}"
            )
        return found[0]


def record_state_events(
    target: StateManager | MotiaApp | AppClient, *, scope: str | None = None, key: str | None = None
) -> StateEventRecorder:
    """``async with record_state_events(state_or_app) as events:`` ... ``await events.collect()``.

    With an app (or ``app_client``), its own triggers still get every event: the recorder joins the
    app's dispatcher as one more subscriber.
    """
    app = target.app if isinstance(target, AppClient) else target if isinstance(target, MotiaApp) else None
    state = app.state if app is not None else target
    assert isinstance(state, StateManager)
    return StateEventRecorder(state, app=app, scope=scope, key=key)


class AppClient(httpx.AsyncClient):
    """An httpx client wired to an app in-process; ``app`` is the ``MotiaApp`` and ``state`` its store."""

    app: MotiaApp

    @property
    def state(self) -> StateManager:
        return self.app.state


def _stream_definition(declared: Stream[Any] | StreamConfig | StreamDefinition) -> StreamDefinition:
    if isinstance(declared, StreamDefinition):
        return declared
    if isinstance(declared, StreamConfig):
        return definition_from_config(declared)
    if isinstance(declared, Stream):
        return declared.definition or StreamDefinition(declared.stream_name)
    raise TypeError(f"streams takes Stream objects, StreamConfig or StreamDefinition, not {type(declared).__name__}")


@contextlib.asynccontextmanager
async def app_client(
    steps: str | os.PathLike[str] | Iterable[Step],
    *,
    state: StateManager | str = "memory://",
    cron: bool = False,
    delivery: bool | DeliveryOptions = True,
    base_url: str = "http://testserver",
    streams: Iterable[Stream[Any] | StreamConfig | StreamDefinition] = (),
    dev: bool = False,
) -> AsyncIterator[AppClient]:
    """Start an app over ``steps`` (a steps directory, or ``Step`` objects) and yield a client for it.

    Startup and shutdown run around the block; cron schedules are off unless ``cron=True``; queue and
    state triggers run (``await drain(client)`` waits for them) unless ``delivery=False``; pass
    ``DeliveryOptions`` to tune them. A steps directory brings its streams (stream files, ``Stream``
    objects of its step files); ``streams`` declares more (``Stream`` objects, configs or definitions).
    ``dev=True`` runs the app in development mode (responses checked against ``response_schema``).
    """
    definitions = [_stream_definition(declared) for declared in streams]
    if isinstance(steps, str | os.PathLike):
        from motia.steps.loader import load_steps
        from motia.steps.stream_files import load_streams

        loaded = load_steps(steps)
        step_list = [ls.step for ls in loaded]
        definitions = [*load_streams(steps, loaded), *definitions]
    else:
        step_list = list(steps)
    app = MotiaApp(step_list, state=state, cron=cron, delivery=delivery, streams=definitions, dev=dev)
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app.asgi)
        async with AppClient(transport=transport, base_url=base_url) as client:
            client.app = app
            yield client
    finally:
        await app.shutdown()
