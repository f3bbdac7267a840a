"""Listing what did not get handled: dead letters (filtered by step, kind and topic) and the deliveries still
pending per step, as JSON, for ``motia deliveries list`` and the console's Dead letters view.

The store lists dead letters by step only (:meth:`~motia.state.backends.base.DeliveryStore.dead_letters`,
oldest first); the kind and the topic (read from a queue delivery's payload) are filtered here, over at
most :data:`SCAN_LIMIT` of the oldest letters. Issue 18 adds paging, inspection, redrive and purge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from motia.state import values as _values
from motia.state.backends.base import DeliveryStore
from motia.state.backends.types import DeadLetter

__all__ = ["KINDS", "SCAN_LIMIT", "DeadLetterFilter", "dead_letter_json", "list_dead_letters", "topic_of"]

#: Delivery kinds: a queue message, a state change, a stream change.
KINDS = ("queue", "state", "stream")
#: Dead letters read at most when filtering by kind or topic (the store filters by step only).
SCAN_LIMIT = 100_000


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters to list: of one ``step``, ``kind`` and queue ``topic`` (each ``None``: any), at
    most ``limit``."""

    step: str | None = None
    kind: str | None = None
    topic: str | None = None
    limit: int = 100

    def matches(self, letter: DeadLetter) -> bool:
        return (
            (self.step is None or letter.step == self.step)
            and (self.kind is None or letter.kind == self.kind)
            and (self.topic is None or topic_of(letter) == self.topic)
        )


def _payload(letter: DeadLetter) -> Any:
    try:
        return _values.decode(letter.payload)  # ints beyond 64 bits stay exact (orjson would make floats)
    except ValueError:  # every backend stores JSON; a hand-edited store may not
        return letter.payload.decode("utf-8", "replace")


def topic_of(letter: DeadLetter) -> str | None:
    """The topic of a queue delivery (from its payload), ``None`` for other kinds."""
    if letter.kind != "queue":
        return None
    payload = _payload(letter)
    topic = payload.get("topic") if isinstance(payload, dict) else None
    return topic if isinstance(topic, str) else None


async def list_dead_letters(store: DeliveryStore, where: DeadLetterFilter) -> list[DeadLetter]:
    """The dead letters ``where`` selects, oldest first."""
    if where.limit <= 0:
        return []
    if where.kind is None and where.topic is None:
        return await store.dead_letters(where.step, limit=where.limit)
    letters = await store.dead_letters(where.step, limit=SCAN_LIMIT)
    return [letter for letter in letters if where.matches(letter)][: where.limit]


def dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as JSON: its fields, the ``topic`` of a queue message and the decoded ``payload``."""
    return {
        "id": letter.id,
        "step": letter.step,
        "kind": letter.kind,
        "topic": topic_of(letter),
        "error": letter.error,
        "attempts": letter.attempts,
        "created_at": letter.created_at,
        "failed_at": letter.failed_at,
        "payload": _payload(letter),
    }
