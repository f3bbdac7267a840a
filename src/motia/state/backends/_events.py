"""Change events and deliveries: the parts every backend shares."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson

from motia.state.backends._writes import _tuple
from motia.state.backends.types import NewDelivery, StreamChange, StreamTriggerSubscription, Subscription
from motia.state.values import INTERNAL_SCOPE_PREFIX


def state_event_payload(
    seq: int,
    event_type: str,
    scope: str,
    key: str,
    old: bytes | None,
    new: bytes | None,
    version: int,
    timestamp: float,
    trace: str | None = None,
) -> bytes:
    """The JSON payload of a state delivery, embedding the stored values without decoding them.

    ``trace`` is the ``traceparent`` the write was made under (:data:`motia.state.observe.current_trace`),
    kept as ``"traceparent"`` so the delivery continues the writer's trace; absent when there was none.
    """
    fields = {
        "type": "state",
        "event_type": event_type,
        "group_id": scope,
        "item_id": key,
        "old_value": None if old is None else orjson.Fragment(old),
        "new_value": None if new is None else orjson.Fragment(new),
        "version": version,
        "timestamp": timestamp,
        "seq": seq,
    }
    if trace:
        fields["traceparent"] = trace
    return orjson.dumps(fields)


def error_text(error: str) -> str:
    """The error text a delivery keeps (retry, dead letter), storable by every backend.

    A handler's exception message may hold lone surrogates (text decoded with ``surrogateescape``, such
    as a file name), which no store can encode as UTF-8: they are kept as ``\\udcxx`` escapes, so
    recording the failure never fails itself.
    """
    if error.isascii():
        return error
    return error.encode("utf-8", "backslashreplace").decode("utf-8")


def order_key(scope: str, key: str) -> str:
    """Deliveries of one (scope, key) share this, so they are handled in commit order."""
    return orjson.dumps((scope, key)).decode()


def subscribed(subscription: Subscription, scope: str, key: str) -> bool:
    """Whether a change of ``(scope, key)`` is delivered to ``subscription``: the rule every backend and path
    shares. A subscription to any scope skips the runtime's own scopes (``__motia.idempotency``...)."""
    wanted = subscription.scope
    return (wanted == scope or (wanted is None and not scope.startswith(INTERNAL_SCOPE_PREFIX))) and (
        subscription.key is None or subscription.key == key
    )


def state_deliveries(
    subscriptions: Sequence[Subscription],
    seq: int,
    event_type: str,
    scope: str,
    key: str,
    old: bytes | None,
    new: bytes | None,
    version: int,
    timestamp: float,
    trace: str | None = None,
) -> list[NewDelivery]:
    """One delivery per subscription matching the event (ids are deterministic: dispatch is idempotent).

    This runs in the write's transaction, once per changed key: one loop, the payload made on the first match,
    each ``NewDelivery`` built without the named tuple's Python ``__new__`` (issue 15).
    """
    deliveries: list[NewDelivery] = []
    payload = ordering = None
    for subscription in subscriptions:
        if subscribed(subscription, scope, key):
            if payload is None:
                payload = state_event_payload(seq, event_type, scope, key, old, new, version, timestamp, trace)
                ordering = order_key(scope, key)
            step = subscription.step
            # NewDelivery(id, step, "state", payload, ordering) with its defaults (delay 0.0, order_slots 1).
            deliveries.append(_tuple(NewDelivery, (f"state:{seq}:{step}", step, "state", payload, ordering, 0.0, 1)))
    return deliveries


def stream_event_payload(change: StreamChange, trace: str | None = None) -> bytes:
    """The JSON payload of a stream-trigger delivery, embedding the stored values without decoding them.
    ``trace`` (the writer's ``traceparent``) goes last, as ``"traceparent"``, as in a state event's.

    ``data`` is what the change is about: the item after a create or update, the removed item after a
    delete, the event ``{"type", "data"}`` of a ``send``.
    """
    old = None if change.old_data is None else orjson.Fragment(change.old_data)
    new = None if change.new_data is None else orjson.Fragment(change.new_data)
    if change.kind == "event":
        data, new = new, None
    else:
        data = old if change.kind == "delete" else new
    fields = {
        "type": "stream",
        "event_type": change.kind,
        "stream_name": change.stream,
        "group_id": change.group,
        "item_id": change.item,
        "old_value": old,
        "new_value": new,
        "data": data,
        "seq": change.seq,
        "position": change.position,
        "timestamp": change.timestamp,
    }
    if trace:
        fields["traceparent"] = trace
    return orjson.dumps(fields)


def stream_deliveries(
    subscriptions: Iterable[StreamTriggerSubscription], change: StreamChange, trace: str | None = None
) -> list[NewDelivery]:
    """One delivery per stream subscription matching ``change``; deterministic ids, ordered per group."""
    matching = [
        subscription
        for subscription in subscriptions
        if subscription.stream == change.stream
        and (subscription.group is None or subscription.group == change.group)
        and (subscription.item is None or subscription.item == change.item)
    ]
    if not matching:
        return []
    payload = stream_event_payload(change, trace)
    ordering = orjson.dumps(["stream", change.stream, change.group]).decode()
    return [
        NewDelivery(f"stream:{change.position}:{subscription.step}", subscription.step, "stream", payload, ordering)
        for subscription in matching
    ]
