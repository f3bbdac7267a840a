"""Rows written by multi-row statements in power-of-two chunks, shared by every group write of the SQLite backend
(deliveries, outbox rows, a batch's state rows).

One execution per row (an ``executemany``) pays per row SQLite's statement start and reset, sqlite3's binding loop
and the GIL handed back and forth around each step; a few multi-row statements do the same work in a handful of
steps (issue 15). Chunks are powers of two, largest first (200 rows up to 128: 128 + 64 + 8), so that a statement
kind only ever has a few sizes, each prepared once per connection and kept in its statement cache
(``connection.STATEMENT_CACHE``).
"""

from __future__ import annotations

from collections.abc import Iterator


def sizes(most: int) -> list[int]:
    """Every chunk size up to ``most`` (a power of two): the statements a kind needs, one per size."""
    return [1 << power for power in range(most.bit_length())]


def chunks(count: int, most: int) -> Iterator[tuple[int, int]]:
    """``(start, size)`` of each chunk of ``count`` rows: the largest power of two not above what is left or
    ``most``, in row order."""
    start = 0
    while start < count:
        size = 1 << (min(count - start, most).bit_length() - 1)
        yield start, size
        start += size
