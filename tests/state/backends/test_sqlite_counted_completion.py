"""Completions on SQLite counted, not returned (issue 15): a completion deletes without ``RETURNING`` inside a
savepoint and, when some delivery was no longer held, rolls back to it and deletes again naming the completed ones.
Either way exactly the deliveries the owner held are completed."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from motia import StateManager
from motia.exceptions import MotiaError
from motia.state.backends.sqlite.delivery import _write_complete_many
from motia.state.backends.types import NewDelivery

COUNT = 6


def _statements(held: list[str], others: list[str], ids: list[str]) -> tuple[set[str], list[str], list[str]]:
    """``_write_complete_many`` of ``ids`` by owner ``a`` on a bare table where ``a`` holds ``held`` and ``b``
    ``others``: what it returned, the statements it ran, and the ids left."""
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.execute("CREATE TABLE motia_deliveries (id TEXT PRIMARY KEY, owner TEXT)")
    connection.executemany("INSERT INTO motia_deliveries VALUES (?, ?)", [(i, "a") for i in held])
    connection.executemany("INSERT INTO motia_deliveries VALUES (?, ?)", [(i, "b") for i in others])
    ran: list[str] = []
    connection.set_trace_callback(ran.append)
    connection.execute("BEGIN IMMEDIATE")
    tx: Any = SimpleNamespace(connection=connection, notify=False)
    done = _write_complete_many(tx, ids, "a")
    connection.execute("COMMIT")
    left = [row[0] for row in connection.execute("SELECT id FROM motia_deliveries ORDER BY id")]
    return done, ran, left


def test_a_completion_of_held_deliveries_is_counted_not_returned() -> None:
    ids = [f"m{n}" for n in range(COUNT)]
    done, ran, left = _statements(ids, ["x"], ids)
    assert done == set(ids) and left == ["x"]
    assert not [sql for sql in ran if "RETURNING" in sql]
    assert [sql for sql in ran if "SAVEPOINT" in sql or "RELEASE" in sql]


def test_a_completion_with_a_lost_lease_rolls_back_and_names_the_completed_ones() -> None:
    ids = [f"m{n}" for n in range(COUNT)]
    done, ran, left = _statements(ids[1:], [ids[0]], [*ids, "missing"])
    assert done == set(ids[1:]) and left == [ids[0]]
    assert [sql for sql in ran if sql.startswith("ROLLBACK TO")]
    assert [sql for sql in ran if "RETURNING" in sql]


def test_a_single_completion_is_counted_too() -> None:
    done, ran, left = _statements(["m0", "m1"], [], ["m0"])
    assert done == {"m0"} and left == ["m1"]
    assert not [sql for sql in ran if "RETURNING" in sql]
    done, ran, left = _statements(["m1"], ["m0"], ["m0"])
    assert done == set() and left == ["m0", "m1"]


async def _held(backend: Any, count: int) -> list[str]:
    await backend.enqueue([NewDelivery(f"m{n}", "w", "queue", b"1") for n in range(count)])
    ids = [d.id for d in await backend.claim(["w"], owner="a", limit=count, lease=60)]
    assert len(ids) == count
    return ids


async def test_completions_counted_in_a_batch_of_writes_keep_the_other_writes(tmp_path: Path, clock: Any) -> None:
    # Given deliveries held by "a", one of them lost to "b"
    async with StateManager.from_url(f"sqlite:///{tmp_path / 'state.db'}", clock=clock) as sm:
        backend = sm.backend
        ids = await _held(backend, 2 * COUNT)
        clock.advance(61)
        assert [d.id for d in await backend.claim(["w"], owner="b", limit=1, lease=600)] == [ids[0]]
        await backend.extend(ids[1:], owner="a", lease=600)
        # When both completions (one counted, one rolled back and returned) run beside writes, in one batch
        all_held, one_lost, *_ = await asyncio.gather(
            backend.complete_many(ids[COUNT:], owner="a"),
            backend.complete_many(ids[:COUNT], owner="a"),
            *(sm.set("s", f"k{n}", n) for n in range(5)),
        )
        # Then each names what it completed, the writes all landed, and the lost delivery is still "b"'s
        assert all_held == set(ids[COUNT:]) and one_lost == set(ids[1:COUNT])
        assert [await sm.get("s", f"k{n}") for n in range(5)] == list(range(5))
        assert await backend.pending("w") == 1
        assert await backend.complete_many([ids[0]], owner="b") == {ids[0]}


async def test_a_failed_claim_takes_its_counted_completions_back(tmp_path: Path) -> None:
    async with StateManager.from_url(f"sqlite:///{tmp_path / 'state.db'}") as sm:
        backend = sm.backend
        ids = await _held(backend, COUNT)
        unbindable: Any = object()
        with pytest.raises(MotiaError):
            await backend.complete_and_claim(ids, owner="a", steps=[unbindable], limit=5, lease=60)
        assert await backend.pending("w") == COUNT
        assert await backend.complete_and_claim(ids, owner="a", steps=["w"], limit=5, lease=60) == (set(ids), [])
        assert await backend.pending("w") == 0
