"""The stream contract (:class:`StreamStore`), one of the three every backend implements; the others and
:class:`~motia.state.backends.base.StateBackend`, which joins them, are in :mod:`motia.state.backends.base`
(which re-exports this class). Its docstrings refer to ``DeliveryStore``: that contract's ``prune`` removes
stream history, and stream-trigger deliveries are settled like every delivery there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from motia.state.backends.types import Record, StreamChange, StreamTriggerSubscription

__all__ = ["StreamStore"]


class StreamStore:
    """The stream contract: items clients subscribe to, and the log of their changes.

    A stream item lives at ``(stream, group, item)`` in a namespace of its own (never among the state
    scopes of :meth:`StateStore.scopes`). The :class:`~motia.streams.manager.StreamManager` validates
    names and values and encodes them before a backend sees them: ``stream``, ``group`` and ``item`` are
    valid ``str`` (as state keys are), values encoded JSON ``bytes`` within the size limit, ``history`` a
    positive ``int``. Backends store and return encoded ``bytes`` and never decode them.

    Guarantees every backend gives:

    - Every change (``stream_write``, ``stream_send``) is atomic and durable like a state write, and
      records in the same transaction one :class:`StreamChange`: the next ``seq`` of its
      ``(stream, group)`` (1 for the group's first change, unless retention has forgotten groups, see
      :meth:`DeliveryStore.prune`; a group keeps counting after its last item is deleted, so ``seq`` never
      repeats) and the next ``position`` of the store's change log.
    - ``position`` increases in commit order across every process using the store, so that every
      instance that tails the log (:meth:`stream_tail`) sees the changes of a group in ``seq`` order.
    - The changes of each ``(stream, group)`` are kept for :meth:`stream_history`: at least the last
      ``history`` (the argument of the write that recorded the newest one) unless older than the
      ``stream_age`` of a :meth:`DeliveryStore.prune`; older ones may be removed.
      The log :meth:`stream_tail` reads keeps every change at least a minute (and at least the newest
      10,000 younger than a prune's ``stream_age``), so an instance that tails it promptly misses nothing.
    - In the same transaction, a change makes one delivery per registered :class:`StreamTriggerSubscription`
      matching it (``stream`` equal; ``group``/``item`` equal or ``None``), as
      :func:`~motia.state.backends._events.stream_deliveries` builds them; they are claimed and settled
      like every delivery of :class:`DeliveryStore` (stream triggers are durable, at least once).
    - After each commit of a change, the callbacks of :meth:`add_stream_listener` run (a local waiter of
      :meth:`stream_tail` wakes at once; other processes' commits are found by polling, blocking reads or
      notifications).
    - Items of a group are ordered by ``item`` in code point order, as state keys are. Items have versions
      like state keys (1 on creation, +1 per write) and never expire.
    """

    async def stream_get(self, stream: str, group: str, item: str) -> Record | None:
        """The item's record (``key`` is the item id), or ``None`` when absent."""
        raise NotImplementedError  # pragma: no cover

    async def stream_snapshot(self, stream: str, group: str, item: str | None) -> tuple[int, list[Record]]:
        """The group's current ``seq`` (before its first change: 0, or the floor of :meth:`DeliveryStore.prune`)
        and, read in the same atomic step, its
        items in id order, or only ``item``'s record (``[]`` when absent) when ``item`` is given.

        A subscriber's initial sync carries this ``seq``, so that resuming from it misses no change and
        repeats none."""
        raise NotImplementedError  # pragma: no cover

    async def stream_groups(self, stream: str) -> list[str]:
        """Sorted ids of the groups of ``stream`` that hold at least one item."""
        raise NotImplementedError  # pragma: no cover

    async def stream_names(self) -> list[str]:
        """Sorted names of the streams that hold at least one item (the console lists them)."""
        raise NotImplementedError  # pragma: no cover

    async def stream_write(
        self, stream: str, group: str, item: str, data: bytes | None, *, if_version: int | None, history: int
    ) -> StreamChange | None:
        """Store ``data`` as the item (``None``: delete it) and record the change: ``"create"`` when the
        item was absent, ``"update"`` when present (even if ``data`` is unchanged), ``"delete"``.

        Deleting an absent item changes and records nothing and returns ``None``. Raises
        :class:`~motia.exceptions.StateConflictError` (writing nothing) when ``if_version`` is given and
        differs from the item's version (0 when absent): the manager applies update operations and
        validates the result outside the store, then writes it with the version it read.
        """
        raise NotImplementedError  # pragma: no cover

    async def stream_send(
        self, stream: str, group: str, item: str | None, event: bytes, *, history: int
    ) -> StreamChange:
        """Record an ``"event"`` change carrying ``event`` (no item is stored or changed)."""
        raise NotImplementedError  # pragma: no cover

    async def stream_history(self, stream: str, group: str, *, after: int, limit: int) -> list[StreamChange] | None:
        """The group's changes with ``seq > after``, oldest first, at most ``limit``.

        ``None`` when they can no longer all be given: a change after ``after`` has been removed from
        the history, or ``after`` is beyond the group's current ``seq`` (a cursor from another store). The
        caller then sends a full sync instead. ``[]`` when ``after`` is the current ``seq``.
        """
        raise NotImplementedError  # pragma: no cover

    async def stream_position(self) -> int:
        """The ``position`` of the newest change recorded (0 when none): where a new tail starts."""
        raise NotImplementedError  # pragma: no cover

    async def stream_tail(self, after: int, *, limit: int, wait: float) -> list[StreamChange]:
        """Changes of every stream with ``position > after``, in position order, at most ``limit``.

        When there is none yet, waits up to ``wait`` seconds for one (returning as soon as one commits,
        in this process at once, in others within a few tens of milliseconds) and then returns what there
        is, possibly ``[]``. The runtime's stream hub calls it in a loop on every instance and fans the
        changes out to its subscribers. A cancelled wait leaves the store usable.
        """
        raise NotImplementedError  # pragma: no cover

    async def add_stream_subscriptions(self, subscriptions: Sequence[StreamTriggerSubscription]) -> None:
        """Register stream triggers: changes committed from now on make deliveries for them (in every
        process using the store). Registering one again is harmless. :meth:`DeliveryStore.prune` removes
        the subscriptions of forgotten steps as it removes their state-trigger subscriptions."""
        raise NotImplementedError  # pragma: no cover

    def add_stream_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from any thread; keep it cheap and thread-safe) after each commit of a change."""
        listeners: list[Callable[[], None]] = self.__dict__.setdefault("_stream_listeners", [])
        listeners.append(callback)

    def remove_stream_listener(self, callback: Callable[[], None]) -> None:
        listeners: list[Callable[[], None]] = self.__dict__.get("_stream_listeners", [])
        if callback in listeners:
            listeners.remove(callback)

    def _notify_stream_listeners(self) -> None:
        for callback in list(self.__dict__.get("_stream_listeners", ())):
            callback()
