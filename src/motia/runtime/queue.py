"""Queues: ``ctx.enqueue({"topic": ..., "data": ...})`` and ``motia.enqueue`` turn one message into one
durable delivery per step subscribed to the topic (``queue(topic)`` triggers), in the state store.

Everything is checked before anything is written: the topic is declared in the sending step's
``enqueues``, the data is JSON within the store's size limit, and it satisfies every subscriber's
``input`` schema. A message is then one atomic ``backend.enqueue`` of all its deliveries, so it reaches
every subscriber or none.

A message to a topic no step subscribes to is kept, not refused (SPEC 12): it becomes one dead letter
of the step :data:`NO_SUBSCRIBER` (kind ``"queue"``, the payload a delivery would have had), listed by
``motia deliveries list`` and the console, and the first one of each topic in a process logs a
warning. Upstream Motia accepts such messages; keeping them means nothing is silently lost and a step
added later can be fed from them. Strict topics (``MOTIA_STRICT_TOPICS=1`` or ``strict_topics = True``
in ``motia_config.py``) refuse them with :class:`EnqueueError` instead.

FIFO: a message to a topic with a ``type: "fifo"`` subscriber must carry a ``messageGroupId`` (or
``message_group_id``); that subscriber's delivery gets the order key ``fifo:<group>``, so the store
hands out the messages of a group one at a time, in order, to every instance (a failing message holds
its group until it succeeds or is dead-lettered). State and stream deliveries' order keys are JSON
arrays (``["scope","key"]``), so the two never share a key. Standard subscribers ignore the group.

Keyed flow control: a subscriber with a keyed concurrency (``{"key": ..., "limit": n}``) gets the order key
``key:<value>`` with ``n`` order slots (:func:`flow_order`), so the store runs at most ``n`` of a key at
once, oldest first; a message lacking a subscriber's concurrency or rate-limit key is refused. Rate limits
are applied when the worker claims (:mod:`motia.runtime.flow_control`).

Message ids: random for messages sent from HTTP and cron handlers and scripts; *deterministic* inside a
queue or state handler (``f"{delivery_id}/{n}"`` for its ``n``-th message), so a retried handler
re-sends the same ids and the store skips those its failed attempt already enqueued.

A message given an ``"id"`` (``ctx.enqueue({"topic": ..., "data": ..., "id": "order-42"})``) is
deduplicated per topic for the retention (``id_retention``, 24 h by default, the app's idempotency
retention when set): its deliveries' ids derive from it (the store skips a duplicate while the first is
pending), and once sent the id is recorded in the reserved state scope :data:`SEEN_SCOPE` with that TTL,
so a duplicate sent after the first was handled (and its delivery deleted) is dropped too. The record is
written *after* the deliveries: a crash between the two can let one duplicate through later (at least
once), never lose the message; two sends racing within that window are deduplicated by the delivery ids.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import os
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from motia.exceptions import ConfigError, EnqueueError, MotiaError, StateValueError
from motia.runtime import observe
from motia.runtime.context import current_run
from motia.state import values as _values
from motia.state.backends.types import NewDelivery
from motia.state.schema import schema_errors
from motia.steps.queue_options import QueueOptions
from motia.steps.triggers import QueueTrigger

if TYPE_CHECKING:
    from motia.state.manager import StateManager
    from motia.steps.definition import Step

__all__ = [
    "NO_SUBSCRIBER",
    "SEEN_SCOPE",
    "STRICT_TOPICS_ENV",
    "EnqueueError",
    "EnqueueScope",
    "Message",
    "QueueRouter",
    "enqueue",
    "strict_topics_from_env",
]

logger = logging.getLogger("motia.runtime")

#: Longer deterministic ids (deep chains of handlers) are replaced by a hash of the same length each time.
MAX_ID_LENGTH = 160

#: The reserved state scope recording the ``id`` of each message sent with one (its TTL: the retention).
SEEN_SCOPE = f"{_values.INTERNAL_SCOPE_PREFIX}message-ids"
#: The longest ``id`` a message may be given.
MAX_USER_ID_LENGTH = 200

#: The ``step`` of the dead letter a message nobody subscribes to is kept as (no step can have this name).
NO_SUBSCRIBER = "(no subscriber)"
#: The environment variable that makes a message nobody subscribes to an error (``1``) again.
STRICT_TOPICS_ENV = "MOTIA_STRICT_TOPICS"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})

_warned_lock = threading.Lock()
_warned: set[tuple[str | None, ...]] = set()


def strict_topics_from_env(default: bool = False, environ: Mapping[str, str] | None = None) -> bool:
    """``MOTIA_STRICT_TOPICS`` as a bool (``1/true/yes/on``, ``0/false/no/off``); ``default`` when unset or
    empty. Any other value raises :class:`~motia.exceptions.ConfigError`, so a typo fails at start
    instead of silently keeping (or refusing) messages."""
    raw = (os.environ if environ is None else environ).get(STRICT_TOPICS_ENV)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(
        f"{STRICT_TOPICS_ENV}={raw!r} is not a boolean: use 1 (refuse messages nobody subscribes to) or 0"
    )


def _warn_once(what: tuple[str | None, ...], message: str, *args: object) -> None:
    """Log ``message`` the first time ``what`` happens in this process: such messages are sent (or kept)
    anyway, and a warning per message would flood a busy producer's log."""
    with _warned_lock:
        if what in _warned:
            return
        _warned.add(what)
    logger.warning(message, *args)


def _warn_unsubscribed(topic: str, sender: str | None) -> None:
    """Log the first message of ``topic`` that nobody subscribes to, once per process: every message is
    kept anyway, and a warning per message would flood a busy producer's log."""
    _warn_once(
        ("unsubscribed", topic),
        "no step subscribes to topic %r (sent by %s): its messages are kept as dead letters of %r "
        "(`motia deliveries list --topic %s`); logged once per topic",
        topic,
        repr(sender) if sender else "code outside a step",
        NO_SUBSCRIBER,
        topic,
    )


@dataclass(frozen=True, slots=True)
class Message:
    """A message as enqueued: its ``topic`` and JSON ``data``, the sending step (``None`` outside a
    handler), the message ``id``, the steps it was delivered to and its ``message_group_id`` (FIFO)."""

    topic: str
    data: Any
    sender: str | None
    id: str
    steps: tuple[str, ...]
    message_group_id: str | None = None


def _topics(enqueues: Iterable[str | dict[str, Any]]) -> frozenset[str]:
    return frozenset(item if isinstance(item, str) else str(item["topic"]) for item in enqueues)


class QueueRouter:
    """An app's topics: which steps subscribe to each (with which trigger) and what each step declares."""

    def __init__(
        self, steps: Iterable[Step], state: StateManager, *, strict: bool = False, id_retention: float = 86400.0
    ) -> None:
        self.state = state
        #: How long a message's own ``id`` is remembered (a duplicate within it is dropped).
        self.id_retention = id_retention
        #: Refuse a message nobody subscribes to (:class:`EnqueueError`) instead of keeping it as a dead letter.
        self.strict = strict
        self.subscribers: dict[str, list[tuple[Step, QueueTrigger]]] = {}
        self.declared: dict[str, frozenset[str]] = {}
        #: Called with each :class:`Message` once it is enqueued (``motia.testing`` records with these).
        self.observers: list[Callable[[Message], None]] = []
        for step in steps:
            self.declared[step.name] = _topics(step.config.enqueues)
            for trigger in step.triggers:
                if isinstance(trigger, QueueTrigger):
                    self.subscribers.setdefault(trigger.topic, []).append((step, trigger))

    def unsubscribed_topics(self) -> list[tuple[str, str]]:
        """``(step, topic)`` pairs where a step declares a topic no step subscribes to."""
        return sorted(
            (name, topic) for name, topics in self.declared.items() for topic in topics if topic not in self.subscribers
        )

    def check_declared(self, sender: str | None, topic: str) -> None:
        """A step enqueuing to a topic its ``enqueues`` does not list: refused with strict topics, else sent
        with a warning once per (step, topic) (SPEC 12: Motia never enforced ``enqueues``, which only drew
        its flow diagrams, so code written for it may rely on that)."""
        if sender is None or topic in self.declared.get(sender, ()):
            return
        declared = ", ".join(sorted(self.declared.get(sender, ()))) or "none"
        if self.strict:
            raise EnqueueError(
                f"step {sender!r} enqueued to topic {topic!r}, which its config does not declare: add it to "
                f"'enqueues' (declared: {declared}; strict topics refuse undeclared ones)"
            )
        _warn_once(
            ("undeclared", sender, topic),
            "step %r enqueued to topic %r, which its 'enqueues' does not declare (declared: %s): sent anyway; "
            "add it to 'enqueues' (MOTIA_STRICT_TOPICS=1 refuses such messages); logged once per step and topic",
            sender,
            topic,
            declared,
        )

    def prepare(
        self,
        event: Mapping[str, Any],
        *,
        sender: str | None,
        message_id: str,
        trace_id: str | None,
        traceparent: str | None = None,
    ) -> tuple[Message, list[NewDelivery]]:
        """Check ``event`` and build its deliveries; raise :class:`EnqueueError` (nothing sent) if it cannot go.
        ``traceparent`` (tracing on) goes last in the payload, where the delivery worker looks for it."""
        topic, data, group = parse_event(event)
        self.check_declared(sender, topic)
        targets = self.subscribers.get(topic, [])
        if not targets and self.strict:
            known = ", ".join(sorted(self.subscribers)) or "none"
            raise EnqueueError(
                f"no step subscribes to topic {topic!r}, and strict topics ({STRICT_TOPICS_ENV} or strict_topics "
                f"in motia_config.py) refuse such messages (subscribed topics: {known})"
            )
        try:
            json_data = _values.to_json(data)
            encoded = _values.encode(json_data, self.state.max_value_bytes)
        except StateValueError as exc:
            raise EnqueueError(f"message data for topic {topic!r} cannot be enqueued: {exc}") from None
        if group is None:
            fifo = sorted({step.name for step, trigger in targets if trigger.options.fifo})
            if fifo:
                raise EnqueueError(
                    f"topic {topic!r} has a FIFO subscriber ({', '.join(map(repr, fifo))}): the message needs a "
                    "'messageGroupId' (messages of one group are handled in order, one at a time)"
                )
        flow = [flow_order(trigger.options, json_data, step=step.name, topic=topic) for step, trigger in targets]
        for step, trigger in targets:
            if trigger.input is not None:
                problems = schema_errors(trigger.input, json_data)
                if problems:
                    details = "; ".join(f"{p['path'] or '(data)'}: {p['message']}" for p in problems[:10])
                    raise EnqueueError(
                        f"message data for topic {topic!r} does not match the input schema of step "
                        f"{step.name!r}: {details}"
                    )
        fields: dict[str, Any] = {"topic": topic, "data": orjson.Fragment(encoded), "trace_id": trace_id}
        if group is not None:
            fields["message_group_id"] = group
        if traceparent is not None:
            fields["traceparent"] = traceparent
        payload = orjson.dumps(fields)
        deliveries = [
            NewDelivery(
                f"{message_id}>{step.name}",
                step.name,
                "queue",
                payload,
                order_key=f"fifo:{group}" if trigger.options.fifo else order_key,
                delay=trigger.options.delay_seconds,
                order_slots=slots,
            )
            for (step, trigger), (order_key, slots) in zip(targets, flow, strict=True)
        ]
        message = Message(topic, json_data, sender, message_id, tuple(step.name for step, _ in targets), group)
        return message, deliveries

    async def send(
        self, event: Mapping[str, Any], *, sender: str | None, message_id: str, trace_id: str | None
    ) -> None:
        telemetry = observe.active
        if telemetry is None:
            await self._send(event, sender, message_id, trace_id, None)
            return
        topic = event.get("topic") if isinstance(event, Mapping) else None
        with telemetry.enqueue(str(topic)) as traceparent:
            await self._send(event, sender, message_id, trace_id, traceparent)

    async def _send(
        self,
        event: Mapping[str, Any],
        sender: str | None,
        message_id: str,
        trace_id: str | None,
        traceparent: str | None,
    ) -> None:
        own_id = message_id_of(event)
        seen_key = None
        if own_id is not None:
            topic = event["topic"]
            seen_key = orjson.dumps([topic, own_id]).decode()
            message_id = "id:" + hashlib.blake2b(seen_key.encode(), digest_size=16).hexdigest()
        message, deliveries = self.prepare(
            event, sender=sender, message_id=message_id, trace_id=trace_id, traceparent=traceparent
        )
        if seen_key is not None and await self.state.get(SEEN_SCOPE, seen_key) is not None:
            logger.info("message id %r on topic %r was sent before: the duplicate is dropped", own_id, message.topic)
            return
        if deliveries:
            await self.state.backend.enqueue(deliveries)
        else:
            await self._keep_unsubscribed(message, trace_id, traceparent)
        if seen_key is not None:
            # After the deliveries: a crash in between may let a later duplicate through, never lose this one.
            await self.state.set(SEEN_SCOPE, seen_key, {"id": message.id}, ttl=self.id_retention)
        for observer in list(self.observers):
            observer(message)

    async def _keep_unsubscribed(self, message: Message, trace_id: str | None, traceparent: str | None) -> None:
        """Keep a message nobody subscribes to as a dead letter of :data:`NO_SUBSCRIBER` (its id derived
        from the message id, so a retried handler's deterministic ids do not duplicate it)."""
        # Encoded as prepare() encodes a delivery's data (ints beyond 64 bits included, which orjson refuses).
        encoded = _values.encode(message.data, self.state.max_value_bytes)
        fields: dict[str, Any] = {"topic": message.topic, "data": orjson.Fragment(encoded), "trace_id": trace_id}
        if message.message_group_id is not None:
            fields["message_group_id"] = message.message_group_id
        if traceparent is not None:
            fields["traceparent"] = traceparent
        payload = orjson.dumps(fields)
        letter = NewDelivery(f"{message.id}>{NO_SUBSCRIBER}", NO_SUBSCRIBER, "queue", payload)
        error = f"no subscriber: no step subscribes to topic {message.topic!r}"
        await self.state.backend.add_dead_letters([letter], error=error)
        _warn_unsubscribed(message.topic, message.sender)


def flow_order(options: QueueOptions, data: Any, *, step: str, topic: str) -> tuple[str | None, int]:
    """The ``(order key, order slots)`` of a message to a subscriber with keyed flow control: a keyed
    concurrency limit orders the step's messages by ``key:<value>`` with ``limit`` slots (state and
    stream order keys are JSON arrays and FIFO's start ``fifo:``, so none collide); ``(None, 1)`` without
    one. A message whose concurrency or rate-limit key is missing is refused (:class:`EnqueueError`)."""
    try:
        if options.rate_limit is not None and options.rate_limit.key is not None:
            options.rate_limit.key.of(data)
        if options.key_concurrency is None:
            return None, 1
        return f"key:{options.key_concurrency.key.of(data)}", options.key_concurrency.limit
    except EnqueueError as exc:
        raise EnqueueError(f"message to topic {topic!r} for step {step!r}: {exc}") from exc


#: The keys an enqueued event may hold; the group has upstream's spelling and ours.
EVENT_KEYS = ("topic", "data", "messageGroupId", "message_group_id", "id")


def message_id_of(event: Mapping[str, Any]) -> str | None:
    """The ``id`` an event was given (``None`` without one); raise :class:`EnqueueError` if it is not a
    non-empty str of at most :data:`MAX_USER_ID_LENGTH` characters."""
    own = event.get("id")
    if own is None:
        return None
    if not isinstance(own, str) or not own or len(own) > MAX_USER_ID_LENGTH:
        raise EnqueueError(f"enqueue's id must be a non-empty str of at most {MAX_USER_ID_LENGTH} characters: {own!r}")
    return own


def parse_event(event: object) -> tuple[str, Any, str | None]:
    """``(topic, data, message group or None)`` of ``{"topic": ..., "data": ..., "messageGroupId": ...}``;
    raise :class:`EnqueueError` if malformed."""
    if not isinstance(event, Mapping):
        raise EnqueueError(f'enqueue takes {{"topic": ..., "data": ...}}, got {type(event).__name__}')
    topic = event.get("topic")
    if not isinstance(topic, str) or not topic:
        raise EnqueueError(f"enqueue needs a non-empty str 'topic', got {topic!r}")
    unknown = set(event) - set(EVENT_KEYS)
    if unknown:
        raise EnqueueError(
            f"enqueue got unknown key(s) {', '.join(sorted(map(repr, unknown)))}: expected {', '.join(EVENT_KEYS)}"
        )
    if "messageGroupId" in event and "message_group_id" in event:
        raise EnqueueError("enqueue got both 'messageGroupId' and 'message_group_id': give one")
    group = event.get("messageGroupId", event.get("message_group_id"))
    if group is not None and (not isinstance(group, str) or not group):
        raise EnqueueError(f"enqueue's messageGroupId must be a non-empty str, got {group!r}")
    message_id_of(event)
    return topic, event.get("data"), group


class EnqueueScope:
    """``ctx.enqueue`` for one handler run: the sender's checks, its message ids and how to wait.

    ``parent`` is the delivery being handled (``None`` in HTTP and cron handlers): its ``n``-th message
    gets the id ``f"{parent}/{n}"``. ``blocking`` scopes (``def`` handlers, in worker threads) send on
    ``loop`` and wait; the others return a coroutine to await.
    """

    __slots__ = ("router", "sender", "parent", "trace_id", "blocking", "loop", "_numbers")

    def __init__(
        self,
        router: QueueRouter,
        sender: str | None,
        parent: str | None,
        trace_id: str | None,
        blocking: bool,
        loop: asyncio.AbstractEventLoop | None,
        numbers: itertools.count[int] | None = None,
    ) -> None:
        self.router = router
        self.sender = sender
        self.parent = parent
        self.trace_id = trace_id
        self.blocking = blocking
        self.loop = loop
        self._numbers = numbers if numbers is not None else itertools.count()

    def async_view(self) -> EnqueueScope:
        """The same scope (same message numbering) for code that awaits: conditions and middleware."""
        if not self.blocking:
            return self
        return EnqueueScope(
            self.router,
            sender=self.sender,
            parent=self.parent,
            trace_id=self.trace_id,
            blocking=False,
            loop=self.loop,
            numbers=self._numbers,
        )

    def next_id(self) -> str:
        if self.parent is None:
            return f"q:{uuid.uuid4().hex}"
        message_id = f"{self.parent}/{next(self._numbers)}"
        if len(message_id) > MAX_ID_LENGTH:
            message_id = "q:" + hashlib.blake2b(message_id.encode(), digest_size=16).hexdigest()
        return message_id

    def __call__(self, event: Mapping[str, Any]) -> Any:
        """Send ``event``: returns a coroutine to await, or (``blocking``) waits and returns ``None``."""
        # Numbered at the call, not when the coroutine first runs, so gathered sends keep their order.
        message_id = self.next_id()
        coroutine = self.router.send(event, sender=self.sender, message_id=message_id, trace_id=self.trace_id)
        if not self.blocking:
            return coroutine
        return _wait_on(self.loop, coroutine)


def _wait_on(loop: asyncio.AbstractEventLoop | None, coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine`` on ``loop`` from another thread and wait for it."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if loop is None or not loop.is_running() or running is loop:
        coroutine.close()
        raise MotiaError(
            "a blocking enqueue needs the app's event loop running in another thread; in async code use "
            "`await ctx.enqueue(...)`"
        )
    asyncio.run_coroutine_threadsafe(coroutine, loop).result()


# -- motia.enqueue ---------------------------------------------------------------------------------

_apps_lock = threading.Lock()
_apps: list[tuple[object, QueueRouter, asyncio.AbstractEventLoop]] = []


def bind_app(router: QueueRouter, loop: asyncio.AbstractEventLoop) -> object:
    """Make ``motia.enqueue`` outside handlers send through ``router``; returns a token for :func:`unbind_app`."""
    token = object()
    with _apps_lock:
        _apps.append((token, router, loop))
    return token


def unbind_app(token: object) -> None:
    with _apps_lock:
        _apps[:] = [binding for binding in _apps if binding[0] is not token]


def enqueue(event: Mapping[str, Any]) -> Any:
    """Motia's module-level ``enqueue``: ``await motia.enqueue({...})`` in async code, ``motia.enqueue({...})``
    (blocking) in ``def`` handlers and threads.

    Inside a handler it is that handler's ``ctx.enqueue`` (same checks, same message ids); elsewhere it
    sends through the running app (``motia run``, ``app_client``) as if from outside any step. Raises
    :class:`~motia.exceptions.MotiaError` when no app is running: routing needs the app's steps.
    """
    run = current_run.get()  # the running handler's ctx: its scope (made now if it had none yet)
    enqueuer = None if run is None else run.enqueuer
    scope = enqueuer if isinstance(enqueuer, EnqueueScope) else None
    try:
        asyncio.get_running_loop()
        in_async_code = True
    except RuntimeError:
        in_async_code = False
    if scope is None:
        with _apps_lock:
            binding = _apps[-1] if _apps else None
        if binding is None:
            raise MotiaError("motia.enqueue needs a running app (motia run, or motia.testing.app_client in tests)")
        _, router, loop = binding
        scope = EnqueueScope(router, sender=None, parent=None, trace_id=None, blocking=False, loop=loop)
    if in_async_code:
        return scope.async_view()(event)
    message_id = scope.next_id()
    _wait_on(scope.loop, scope.router.send(event, sender=scope.sender, message_id=message_id, trace_id=scope.trace_id))
    return None
