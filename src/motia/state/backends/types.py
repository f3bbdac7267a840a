"""The records state backends exchange with the layers above: stored keys, subscriptions, deliveries.

The runtime and the testing kit import these (never a backend module); the contract that produces them is
:mod:`motia.state.backends.base`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Record(NamedTuple):
    """A stored key as the backend returns it: the value still encoded."""

    key: str
    data: bytes
    version: int
    expires_at: float | None


class Subscription(NamedTuple):
    """A state trigger: deliver events of ``scope``/``key`` (``None``: any) to ``step``."""

    step: str
    scope: str | None = None
    key: str | None = None


class NewDelivery(NamedTuple):
    """A delivery to add: ``payload`` is encoded JSON; ``order_key`` serialises deliveries that share it,
    ``order_slots`` of them leased at a time (1: one at a time); ``delay`` (seconds) makes it claimable
    only that long after it is added."""

    id: str
    step: str
    kind: str
    payload: bytes
    order_key: str | None = None
    delay: float = 0.0
    order_slots: int = 1


#: The most deliveries of one order key leased at once (``NewDelivery.order_slots``): SQL backends count
#: the older deliveries of a key up to this bound, so a claim's cost per candidate stays bounded.
MAX_ORDER_SLOTS = 100


class Delivery(NamedTuple):
    """A leased delivery. ``attempts`` counts this attempt (1 on the first)."""

    id: str
    step: str
    kind: str
    payload: bytes
    attempts: int
    created_at: float


class DeadLetter(NamedTuple):
    """A delivery that failed every attempt, kept for inspection.

    ``error`` is the last attempt's error (with its traceback), ``first_error`` the first attempt's: they
    differ when a handler failed one way and then another. ``first_error`` is ``None`` where the store did
    not record it (a letter written by an older pymotia)."""

    id: str
    step: str
    kind: str
    payload: bytes
    attempts: int
    error: str
    created_at: float
    failed_at: float
    first_error: str | None = None

    @property
    def cursor(self) -> str:
        """Where a page of dead letters that ends with this one continues (``after=``): dead letters are
        listed by failure time, then id, on every backend."""
        return f"{self.failed_at!r}:{self.id}"


class PendingDelivery(NamedTuple):
    """A delivery not yet settled, as an operator lists it.

    ``attempts`` counts the attempts begun; ``available_at`` is when it becomes (or became) claimable,
    ``leased_until`` when its current lease ends (``None``: not leased, or the lease expired);
    ``last_error``/``first_error`` are the errors of its failed attempts (``None``: none failed yet).
    ``cursor`` is where a page that ends with it continues: an opaque string, valid for the same store.
    """

    id: str
    step: str
    kind: str
    payload: bytes
    attempts: int
    created_at: float
    available_at: float
    leased_until: float | None
    last_error: str | None
    first_error: str | None
    cursor: str


class PruneResult(NamedTuple):
    """What one :meth:`StateBackend.prune` removed or moved."""

    dead_letters: int  #: dead letters deleted (failed before the cut-off)
    steps: int  #: stale steps forgotten (with their subscriptions)
    orphaned: int  #: waiting deliveries of those steps moved to the dead letters
    stream_changes: int = 0  #: stream changes removed from the groups' histories (older than the age)
    stream_groups: int = 0  #: empty stream groups forgotten (their changes all removed)


class ScopeStats(NamedTuple):
    """One scope in :class:`StoreStats`: its stored keys (expired ones not yet swept included) and the
    bytes their keys and values take (``None`` where the backend cannot tell cheaply)."""

    keys: int
    bytes: int | None


@dataclass(frozen=True, slots=True)
class StoreStats:
    """What a store holds, from :meth:`StateBackend.stats`: every count is of stored rows or entries,
    which is what takes space (so expired keys not yet swept count, in their scope and in ``expired``).

    ``size`` holds the backend's own byte figures, ``size["total"]`` always (the SQLite file with its WAL,
    the memory the Redis server reports for the store's keys, the PostgreSQL schema's relations; the
    memory backend's encoded bytes), with parts the backend can name: ``free`` (SQLite's free pages, kept
    by the file until a ``VACUUM``), ``table:<name>`` (SQLite's ``dbstat``, PostgreSQL), ``keys``,
    ``outbox``, ``deliveries``... (Redis, memory).
    """

    scopes: dict[str, ScopeStats]  #: every scope holding a stored key, the runtime's ``__motia.`` ones too
    expired: int  #: keys past their expiry that no sweep has removed yet
    outbox: int  #: change events recorded and not yet dispatched
    pending: int  #: deliveries not yet settled
    dead_letters: int
    subscriptions: int  #: state- and stream-trigger subscriptions registered
    steps: int  #: steps whose last-seen time the store keeps (``touch_steps``)
    stream_groups: int  #: stream groups the store keeps a ``seq`` for (empty ones too)
    stream_items: int
    stream_changes: int  #: the stream change log's length (history and tail)
    size: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``motia state stats`` prints it); ``size``'s ``table:<name>`` parts are
        nested under ``size["tables"]``."""
        size: dict[str, Any] = {name: n for name, n in self.size.items() if not name.startswith("table:")}
        tables = {name.removeprefix("table:"): n for name, n in self.size.items() if name.startswith("table:")}
        if tables:
            size["tables"] = tables
        return {
            "scopes": {name: {"keys": s.keys, "bytes": s.bytes} for name, s in sorted(self.scopes.items())},
            "keys": sum(s.keys for s in self.scopes.values()),
            "expired": self.expired,
            "outbox": self.outbox,
            "pending": self.pending,
            "dead_letters": self.dead_letters,
            "subscriptions": self.subscriptions,
            "steps": self.steps,
            "streams": {"groups": self.stream_groups, "items": self.stream_items, "changes": self.stream_changes},
            "size": size,
        }


#: The error text a delivery gets when it is dead-lettered because its step no longer runs anywhere.
ORPHANED_ERROR = "no running app has served step {step!r} since {since}: retention moved it here"


class TransactionWrite(NamedTuple):
    """One write of a committed transaction: ``data=None`` deletes. ``ttl=None`` with ``keep_expiry``
    keeps the key's expiry (an ``update``), without it makes the key permanent (a ``set``)."""

    scope: str
    key: str
    data: bytes | None
    ttl: float | None = None
    keep_expiry: bool = False


class WriteResult(NamedTuple):
    """The outcome of ``set``/``update``: encoded values before (``None`` if absent) and after."""

    old_data: bytes | None
    new_data: bytes | None
    version: int


class StreamChange(NamedTuple):
    """One change of a stream, as the store recorded it (see :class:`~motia.state.backends.base.StreamStore`).

    ``position`` orders every change of the store in commit order (the log every instance tails); ``seq``
    numbers the changes of one ``(stream, group)`` from 1, with no gaps. ``kind`` is ``"create"``,
    ``"update"``, ``"delete"`` or ``"event"``. Values stay encoded: ``old_data``/``new_data`` are the item
    before and after (``None`` when absent); for an ``"event"`` (``send``), ``new_data`` is the encoded
    event ``{"type", "data"}`` and ``old_data`` is ``None``. ``timestamp`` is the commit time (Unix seconds).
    """

    position: int
    stream: str
    group: str
    item: str | None
    seq: int
    kind: str
    old_data: bytes | None
    new_data: bytes | None
    timestamp: float


class StreamTriggerSubscription(NamedTuple):
    """A stream trigger: deliver the changes of ``stream`` (of one ``group``/``item`` when given) to ``step``."""

    step: str
    stream: str
    group: str | None = None
    item: str | None = None


def tick_millis(tick: float) -> int:
    """A tick's time as whole milliseconds: the exact form backends store, so processes agree on it
    however their floats were computed."""
    return round(tick * 1000)
