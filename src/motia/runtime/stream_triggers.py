"""Stream triggers: which steps subscribe to which stream changes, and how a stream delivery reaches them.

Unlike state changes, stream changes need no dispatcher: the store makes the deliveries of a change in
the transaction that records it, for the :class:`~motia.state.backends.types.StreamTriggerSubscription`
registered with it (``backend.add_stream_subscriptions``). The delivery worker registers this app's at
start and again at every retention interval (a store whose retention forgot them gets them back), and
hands each ``"stream"`` delivery to :func:`route_stream` to find the triggers and build the input.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from motia.exceptions import StepLoadError, Undeliverable
from motia.runtime.types import StreamTriggerInput, TriggerInfo
from motia.state import values as _values
from motia.state.backends.types import StreamTriggerSubscription
from motia.steps.triggers import Match, StreamTrigger

if TYPE_CHECKING:
    from motia.state.backends.types import Delivery
    from motia.steps.definition import Step

__all__ = [
    "check_stream_triggers",
    "decode_stream_event",
    "matching_stream_triggers",
    "route_stream",
    "stream_subscriptions",
    "stream_triggers",
]


def stream_triggers(step: Step) -> list[StreamTrigger]:
    return [trigger for trigger in step.triggers if isinstance(trigger, StreamTrigger)]


def stream_subscriptions(steps: Iterable[Step]) -> list[StreamTriggerSubscription]:
    """One subscription per distinct (step, stream, group, item) of the steps' stream triggers.

    A change makes one delivery per step however many of its subscriptions match (delivery ids are
    ``stream:<position>:<step>``); the worker then runs the handler once, for the first matching trigger
    whose condition passes.
    """
    found = {
        StreamTriggerSubscription(step.name, trigger.stream_name, trigger.group_id, trigger.item_id): None
        for step in steps
        for trigger in stream_triggers(step)
    }
    return list(found)


def check_stream_triggers(steps: Iterable[Step], declared: Collection[str]) -> None:
    """Raise :class:`StepLoadError` naming each step whose stream trigger names an undeclared stream.

    Checked at start-up: a typo in a stream name would otherwise be a trigger that never fires.
    """
    problems = [
        f"step {step.name!r} has a stream trigger on {trigger.stream_name!r}, which is not a declared stream"
        for step in steps
        for trigger in stream_triggers(step)
        if trigger.stream_name not in declared
    ]
    if problems:
        known = ", ".join(sorted(declared)) or "none"
        raise StepLoadError(f"{'; '.join(problems)} (declared streams: {known})")


def decode_stream_event(payload: bytes) -> StreamTriggerInput:
    """The handler input of a stream delivery's payload (built by ``_events.stream_event_payload``)."""
    data: Any = _values.decode(payload)
    return StreamTriggerInput.model_validate(data)


def matching_stream_triggers(triggers: Sequence[StreamTrigger], event: StreamTriggerInput) -> list[StreamTrigger]:
    """The triggers of one step that match ``event``'s stream, group and item."""
    return [t for t in triggers if t.matches(event.stream_name, event.group_id, event.item_id) is Match.FULL]


def route_stream(step: Step, delivery: Delivery) -> tuple[list[StreamTrigger], StreamTriggerInput, TriggerInfo]:
    """The step's triggers matching a ``"stream"`` delivery, the handler's input and ``ctx.trigger``.

    Raises :class:`Undeliverable` when no trigger of the step matches (the step changed since the
    delivery was made): it could never succeed.
    """
    event = decode_stream_event(delivery.payload)
    found = matching_stream_triggers(stream_triggers(step), event)
    if not found:
        where = f"{event.stream_name!r} {event.group_id!r}/{event.item_id!r}"
        raise Undeliverable(f"step {step.name!r} has no stream trigger matching {where}")
    info = TriggerInfo(
        type="stream",
        stream_name=event.stream_name,
        group_id=event.group_id,
        item_id=event.item_id,
        delivery_id=delivery.id,
        attempt=delivery.attempts,
    )
    return found, event, info
