"""A state delivery's payload and order key: the bytes every backend stores, built by formatting (issue 15).

They must stay what ``orjson.dumps`` made of the event's fields (same keys, same order, the stored values
embedded as they are, ``traceparent`` last, where the worker reads it without decoding).
"""

from __future__ import annotations

import orjson
import pytest

from motia.runtime.delivery_payload import traceparent as _traceparent
from motia.state.backends._events import order_key, state_deliveries, state_event_payload
from motia.state.backends.types import NewDelivery, Subscription

TRACE = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


def reference(seq, event_type, scope, key, old, new, version, timestamp, trace=None) -> bytes:
    """The payload as a dict of fragments dumped by orjson (the encoding before issue 15's)."""
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


CASES = [
    (1, "created", "carts", "c1", None, b'{"n":1}', 1, 1700000000.123456, None),
    (2**40, "updated", 'q"uo\\te', "k\n\t\u2028", b'{"n":1}', b'[1,"\xc3\xa9"]', 7, 0.0, TRACE),
    (3, "deleted", "sc\u00e9pe", "\U0001f600", b'"old"', None, 2, 1e16, ""),
    (4, "expired", "", "k", b"null", None, 0, 1.5e-7, TRACE),
    (5, "created", "s", "k", '{"as":"text"}', "12345678901234567890123", 1, 1700000000.0, None),
    (6, "future-kind", "s", "k", None, b"true", 3, 2.5, None),
]


@pytest.mark.parametrize("case", CASES)
def test_payload_is_the_bytes_orjson_made_of_the_fields(case) -> None:
    payload = state_event_payload(*case)
    assert payload == reference(*case)
    decoded = orjson.loads(payload)
    assert list(decoded)[:9] == ["type", "event_type", "group_id", "item_id", "old_value", "new_value", "version",
                                 "timestamp", "seq"]  # fmt: skip
    assert _traceparent(payload) == (case[-1] or None)


@pytest.mark.parametrize("case", CASES)
def test_deliveries_carry_that_payload_and_the_order_key(case) -> None:
    seq, _, scope, key = case[:4]
    subscriptions = [Subscription("a", None), Subscription("b", scope, key), Subscription("c", "other")]
    deliveries = state_deliveries(subscriptions, *case)
    ordering = order_key(scope, key)
    assert ordering == orjson.dumps([scope, key]).decode()
    assert deliveries == [
        NewDelivery(f"state:{seq}:{step}", step, "state", reference(*case), ordering) for step in ("a", "b")
    ]
