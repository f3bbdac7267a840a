"""Operating what did not get handled: dead letters listed (by page, filtered by step, kind and topic),
inspected, redriven and purged, and the deliveries still pending, as records and as JSON. Shared by
``motia deliveries ...``, the console's Dead letters view and the Python API (:class:`DeadLetters`,
``app.dead_letters``).

The store filters by step and kind (:meth:`~motia.state.backends.base.DeliveryStore.dead_letter_page`); the
topic of a queue message is in its payload, so it is filtered here, reading the store's pages until a page
of matches is full or :data:`SCAN_LIMIT` letters were read (the page's ``next`` cursor then continues the
scan). Bulk redrive and purge work through the same pages, :data:`BATCH` ids per store call (each call
atomic): a letter added meanwhile may or may not be included, none is acted on twice.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from motia.exceptions import DeadLetterNotFoundError, StateValueError
from motia.state import values as _values
from motia.state.backends.base import DeliveryStore
from motia.state.backends.types import DeadLetter, PendingDelivery

__all__ = [
    "BATCH",
    "KINDS",
    "SCAN_LIMIT",
    "DeadLetterFilter",
    "DeadLetters",
    "Page",
    "dead_letter_json",
    "dead_letter_page",
    "error_summary",
    "list_dead_letters",
    "pending_json",
    "pending_page",
    "purge_ids",
    "purge_matching",
    "redrive_ids",
    "redrive_matching",
    "topic_of",
    "trace_id_of",
]

#: Delivery kinds: a queue message, a state change, a stream change.
KINDS = ("queue", "state", "stream")
#: Dead letters read at most for one page filtered by topic (the store filters by step and kind).
SCAN_LIMIT = 100_000
#: Ids redriven or purged per store call by the bulk operations.
BATCH = 500

T = TypeVar("T")


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters (or pending deliveries): of one ``step``, ``kind`` and queue ``topic`` (each
    ``None``: any), at most ``limit`` per page, after the cursor ``after`` (``None``: from the first)."""

    step: str | None = None
    kind: str | None = None
    topic: str | None = None
    limit: int = 100
    after: str | None = None

    def matches(self, letter: DeadLetter | PendingDelivery) -> bool:
        return (
            (self.step is None or letter.step == self.step)
            and (self.kind is None or letter.kind == self.kind)
            and (self.topic is None or topic_of(letter) == self.topic)
        )

    @property
    def is_everything(self) -> bool:
        """No filter at all: bulk operations refuse it unless told ``everything=True``."""
        return self.step is None and self.kind is None and self.topic is None


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page: its ``items`` and the cursor of the next page (``None``: nothing follows; a page filtered by
    topic may also stop after reading :data:`SCAN_LIMIT` letters, with a ``next`` that continues the scan)."""

    items: list[T]
    next: str | None


def _payload(letter: DeadLetter | PendingDelivery) -> Any:
    try:
        return _values.decode(letter.payload)  # ints beyond 64 bits stay exact (orjson would make floats)
    except ValueError:  # every backend stores JSON; a hand-edited store may not
        return letter.payload.decode("utf-8", "replace")


def topic_of(letter: DeadLetter | PendingDelivery) -> str | None:
    """The topic of a queue delivery (from its payload), ``None`` for other kinds."""
    if letter.kind != "queue":
        return None
    payload = _payload(letter)
    topic = payload.get("topic") if isinstance(payload, dict) else None
    return topic if isinstance(topic, str) else None


def trace_id_of(letter: DeadLetter | PendingDelivery) -> str | None:
    """The trace id a queue message carries (a redrive keeps it: the payload is delivered unchanged)."""
    if letter.kind != "queue":
        return None
    payload = _payload(letter)
    trace_id = payload.get("trace_id") if isinstance(payload, dict) else None
    return trace_id if isinstance(trace_id, str) else None


def error_summary(error: str | None) -> str | None:
    """The last non-empty line of an error text (a traceback ends with ``Type: message``)."""
    if error is None:
        return None
    lines = [line for line in error.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _check(where: DeadLetterFilter) -> None:
    if where.kind is not None and where.kind not in KINDS:
        raise StateValueError(f"kind must be one of {', '.join(KINDS)}, not {where.kind!r}")
    if isinstance(where.limit, bool) or not isinstance(where.limit, int) or where.limit <= 0:
        raise StateValueError(f"limit must be a positive int, not {where.limit!r}")


async def _scan(read: Callable[..., Any], where: DeadLetterFilter, cursor_of: Callable[[T], str]) -> Page[T]:
    """A page of what ``read`` (a store page method) lists, the topic filtered here."""
    _check(where)
    if where.topic is None:  # one more than asked: ``next`` is None exactly when nothing follows
        items: list[T] = await read(step=where.step, kind=where.kind, after=where.after, limit=where.limit + 1)
        more = len(items) > where.limit
        return Page(items[: where.limit], cursor_of(items[where.limit - 1]) if more else None)
    found: list[T] = []
    after, scanned = where.after, 0
    chunk = max(where.limit, 100)
    while scanned < SCAN_LIMIT:
        batch: list[T] = await read(step=where.step, kind=where.kind or "queue", after=after, limit=chunk)
        scanned += len(batch)
        for item in batch:
            after = cursor_of(item)
            if where.matches(item):  # type: ignore[arg-type]
                found.append(item)
                if len(found) == where.limit:
                    return Page(found, after)
        if len(batch) < chunk:
            return Page(found, None)
    return Page(found, after)  # read SCAN_LIMIT letters: the caller continues from here


async def dead_letter_page(store: DeliveryStore, where: DeadLetterFilter) -> Page[DeadLetter]:
    """A page of the dead letters ``where`` selects, oldest failure first."""
    return await _scan(store.dead_letter_page, where, lambda letter: letter.cursor)


async def list_dead_letters(store: DeliveryStore, where: DeadLetterFilter) -> list[DeadLetter]:
    """The first page of dead letters ``where`` selects (kept for callers of the read-only view)."""
    return (await dead_letter_page(store, where)).items


async def pending_page(store: DeliveryStore, where: DeadLetterFilter) -> Page[PendingDelivery]:
    """A page of the deliveries not yet settled that ``where`` selects, in the order they were added."""
    return await _scan(store.pending_page, where, lambda pending: pending.cursor)


async def _matching_ids(store: DeliveryStore, where: DeadLetterFilter) -> list[list[str]]:
    """The ids of every dead letter ``where`` selects, in batches of :data:`BATCH`, read before acting (so a
    redriven letter that fails again meanwhile is not acted on twice)."""
    batches: list[list[str]] = []
    cursor = where.after
    ids: list[str] = []
    while True:
        page = await dead_letter_page(store, replace(where, limit=BATCH, after=cursor))
        ids += [letter.id for letter in page.items]
        if page.next is None:
            break
        cursor = page.next
    for start in range(0, len(ids), BATCH):
        batches.append(ids[start : start + BATCH])
    return batches


async def _require(store: DeliveryStore, delivery_ids: Sequence[str]) -> list[str]:
    """``delivery_ids`` without duplicates, once each is known to be a dead letter (else
    :class:`~motia.exceptions.DeadLetterNotFoundError` for the first that is not, before anything changes)."""
    if isinstance(delivery_ids, str):
        raise StateValueError("delivery ids must be a sequence of str, not one str")
    ids = list(dict.fromkeys(delivery_ids))
    for delivery_id in ids:
        if await store.get_dead_letter(delivery_id) is None:
            raise DeadLetterNotFoundError(delivery_id)
    return ids


async def redrive_ids(store: DeliveryStore, delivery_ids: Sequence[str]) -> list[str]:
    """Redrive the dead letters ``delivery_ids`` in one atomic store call and return those redriven. An id
    that is not a dead letter raises :class:`~motia.exceptions.DeadLetterNotFoundError` and nothing is
    redriven; one whose delivery is pending again (or that went meanwhile) is left out of the answer."""
    return await store.redrive_dead_letters(await _require(store, delivery_ids))


async def purge_ids(store: DeliveryStore, delivery_ids: Sequence[str]) -> list[str]:
    """Delete the dead letters ``delivery_ids`` in one atomic store call, as :func:`redrive_ids` redrives."""
    return await store.purge_dead_letters(await _require(store, delivery_ids))


def _refuse_everything(where: DeadLetterFilter, everything: bool) -> None:
    if where.is_everything and not everything:
        raise StateValueError("a bulk redrive or purge needs a filter (step, kind, topic) or everything=True")


async def redrive_matching(store: DeliveryStore, where: DeadLetterFilter, *, everything: bool = False) -> int:
    """Redrive every dead letter ``where`` selects; returns how many were. An empty filter is refused
    (:class:`~motia.exceptions.StateValueError`) unless ``everything``."""
    _refuse_everything(where, everything)
    return sum([len(await store.redrive_dead_letters(ids)) for ids in await _matching_ids(store, where)])


async def purge_matching(store: DeliveryStore, where: DeadLetterFilter, *, everything: bool = False) -> int:
    """Delete every dead letter ``where`` selects; returns how many were. Refuses an empty filter as
    :func:`redrive_matching` does."""
    _refuse_everything(where, everything)
    return sum([len(await store.purge_dead_letters(ids)) for ids in await _matching_ids(store, where)])


def dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as JSON: its fields (times in Unix seconds), the ``topic`` and ``trace_id`` of a queue
    message, the last line of its error (``error_summary``), its ``cursor`` and the decoded ``payload``."""
    return {
        "id": letter.id,
        "step": letter.step,
        "kind": letter.kind,
        "topic": topic_of(letter),
        "trace_id": trace_id_of(letter),
        "attempts": letter.attempts,
        "error_summary": error_summary(letter.error),
        "error": letter.error,
        "first_error": letter.first_error,
        "created_at": letter.created_at,
        "failed_at": letter.failed_at,
        "cursor": letter.cursor,
        "payload": _payload(letter),
    }


def pending_json(pending: PendingDelivery) -> dict[str, Any]:
    """A pending delivery as JSON, like :func:`dead_letter_json`, with ``available_at`` (its next attempt)
    and ``leased_until`` (``null``: not running)."""
    return {
        "id": pending.id,
        "step": pending.step,
        "kind": pending.kind,
        "topic": topic_of(pending),
        "trace_id": trace_id_of(pending),
        "attempts": pending.attempts,
        "available_at": pending.available_at,
        "leased_until": pending.leased_until,
        "error_summary": error_summary(pending.last_error),
        "last_error": pending.last_error,
        "first_error": pending.first_error,
        "created_at": pending.created_at,
        "cursor": pending.cursor,
        "payload": _payload(pending),
    }


class DeadLetters:
    """Dead letters and pending deliveries of one store, for Python code: ``app.dead_letters`` (a running
    or stopped :class:`~motia.runtime.app.MotiaApp`), or ``DeadLetters(state_manager.backend)``.

    Example::

        page = await app.dead_letters.list(step="charge")
        await app.dead_letters.redrive(page.items[0].id)
        await app.dead_letters.purge_all(step="charge")
    """

    def __init__(self, store: DeliveryStore) -> None:
        self.store = store

    async def list(
        self,
        *,
        step: str | None = None,
        kind: str | None = None,
        topic: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> Page[DeadLetter]:
        """A page of dead letters, oldest failure first; ``Page.next`` continues it."""
        return await dead_letter_page(self.store, DeadLetterFilter(step, kind, topic, limit, after))

    async def pending(
        self,
        *,
        step: str | None = None,
        kind: str | None = None,
        topic: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> Page[PendingDelivery]:
        """A page of the deliveries not yet settled, in the order they were added."""
        return await pending_page(self.store, DeadLetterFilter(step, kind, topic, limit, after))

    async def get(self, delivery_id: str) -> DeadLetter:
        """The dead letter ``delivery_id``; raises :class:`~motia.exceptions.DeadLetterNotFoundError`."""
        letter = await self.store.get_dead_letter(delivery_id)
        if letter is None:
            raise DeadLetterNotFoundError(delivery_id)
        return letter

    async def redrive(self, *delivery_ids: str) -> builtins.list[str]:
        """Deliver these dead letters again, atomically (attempts reset; each dead letter is removed), and
        return the ids redriven. An id that is not a dead letter raises
        :class:`~motia.exceptions.DeadLetterNotFoundError` and changes nothing; one whose delivery is
        pending again is left as it is (and out of the answer)."""
        return await redrive_ids(self.store, delivery_ids)

    async def purge(self, *delivery_ids: str) -> builtins.list[str]:
        """Delete these dead letters for good, atomically; unknown ids as for :meth:`redrive`."""
        return await purge_ids(self.store, delivery_ids)

    async def redrive_all(
        self, *, step: str | None = None, kind: str | None = None, topic: str | None = None, everything: bool = False
    ) -> int:
        """Redrive every dead letter matching the filter (none given: only with ``everything=True``)."""
        return await redrive_matching(self.store, DeadLetterFilter(step, kind, topic), everything=everything)

    async def purge_all(
        self, *, step: str | None = None, kind: str | None = None, topic: str | None = None, everything: bool = False
    ) -> int:
        """Delete every dead letter matching the filter (none given: only with ``everything=True``)."""
        return await purge_matching(self.store, DeadLetterFilter(step, kind, topic), everything=everything)
