"""SQLite ``clear`` of a large scope does not hold the scope's values in memory (issue 11): with events off it
reads none of them; with events on it streams them into the outbox, or into deliveries, in bounded chunks."""

from __future__ import annotations

import tracemalloc

from motia.state.backends.base import Subscription
from motia.state.backends.sqlite import SQLiteBackend

KEYS = 200
VALUE = b'"' + b"x" * 50_000 + b'"'  # 200 values of 50 kB: a 10 MB scope


async def fill(backend: SQLiteBackend) -> None:
    for i in range(0, KEYS, 20):
        for j in range(i, i + 20):
            await backend.set("big", f"k{j:04d}", VALUE, ttl=None, if_version=None)


async def peak_python_memory_of_clear(backend: SQLiteBackend) -> tuple[int, int]:
    tracemalloc.start()
    try:
        removed = await backend.clear("big")
        return removed, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_clear_without_events_reads_no_values(tmp_path):
    backend = SQLiteBackend(tmp_path / "s.db")
    try:
        await fill(backend)
        removed, peak = await peak_python_memory_of_clear(backend)
        assert removed == KEYS
        assert peak < 1_000_000, f"clear held {peak:,} bytes of Python memory for a 10 MB scope"
        assert await backend.count("big") == 0
    finally:
        await backend.aclose()


async def test_clear_with_events_streams_the_values_into_the_outbox_in_chunks(tmp_path):
    # Given events on and no subscription registered yet: events wait in the outbox
    backend = SQLiteBackend(tmp_path / "s.db")
    try:
        await backend.enable_events()
        await fill(backend)
        removed, peak = await peak_python_memory_of_clear(backend)
        assert removed == KEYS
        assert peak < 4_000_000, f"clear held {peak:,} bytes of Python memory for a 10 MB scope"
        # every key still got its event, in key order, carrying its old value (the creations first)
        assert await backend.dispatch_events([Subscription("watcher", "big")], limit=10_000) == 2 * KEYS
        await expect_deletions(backend)
    finally:
        await backend.aclose()


async def test_clear_with_events_streams_the_values_into_deliveries_in_chunks(tmp_path):
    # Given a subscription registered: writes make their deliveries themselves
    backend = SQLiteBackend(tmp_path / "s.db")
    try:
        await backend.enable_events()
        await fill(backend)  # (one write at a time: through the outbox)
        await backend.dispatch_events([Subscription("watcher", "big")])
        removed, peak = await peak_python_memory_of_clear(backend)
        assert removed == KEYS
        assert peak < 4_000_000, f"clear held {peak:,} bytes of Python memory for a 10 MB scope"
        assert await backend.dispatch_events([Subscription("watcher", "big")]) == 0  # nothing in the outbox
        await expect_deletions(backend)
    finally:
        await backend.aclose()


async def expect_deletions(backend: SQLiteBackend) -> None:
    """Every key's creation, then its deletion carrying the old value, in key order."""
    created = await backend.claim(["watcher"], owner="t", limit=KEYS, lease=60)
    assert len(created) == KEYS
    assert all(b'"event_type":"created"' in delivery.payload for delivery in created)
    assert await backend.complete_many([d.id for d in created], owner="t") == {d.id for d in created}
    claimed = await backend.claim(["watcher"], owner="t", limit=KEYS, lease=60)
    assert len(claimed) == KEYS
    assert all(b'"event_type":"deleted"' in delivery.payload for delivery in claimed)
    assert all(VALUE in delivery.payload for delivery in claimed)
