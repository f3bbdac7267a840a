"""Multi-key transactions and bulk helpers (SPEC 1.5), over every backend."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

from motia.exceptions import InvalidUpdateError, StateConflictError, StateValueError
from motia.state.backends.base import Subscription
from motia.state.manager import StateManager
from motia.state.sync import SyncStateManager
from tests.state.test_typed import Session

# -- transactions --------------------------------------------------------------------------------------


async def test_a_transaction_commits_every_write_together(state: StateManager) -> None:
    await state.set("accounts", "a", {"balance": 10})
    async with state.transaction() as tx:
        a = await tx.get("accounts", "a")
        await tx.set("accounts", "a", {"balance": a["balance"] - 3})
        await tx.update("accounts", "b", [{"type": "increment", "path": "balance", "value": 3}])
        await tx.set("audit", "t1", {"from": "a", "to": "b", "amount": 3})
        # reads inside see the transaction's own writes; outside sees nothing yet
        assert await tx.get("accounts", "b") == {"balance": 3}
        assert await state.get("accounts", "b") is None
    assert await state.get("accounts", "a") == {"balance": 7}
    assert await state.get("accounts", "b") == {"balance": 3}
    assert await state.get("audit", "t1") == {"from": "a", "to": "b", "amount": 3}
    assert (await state.get_entry("accounts", "a")).version == 2  # type: ignore[union-attr]


async def test_an_exception_inside_rolls_every_write_back(state: StateManager) -> None:
    await state.set("s", "keep", 1)
    with pytest.raises(RuntimeError):
        async with state.transaction() as tx:
            await tx.set("s", "keep", 2)
            await tx.delete("s", "keep")
            await tx.set("other", "new", 1)
            raise RuntimeError("handler failed")
    assert await state.get("s", "keep") == 1
    assert await state.list_groups() == ["s"]


async def test_a_bad_operation_inside_writes_nothing(state: StateManager) -> None:
    await state.set("s", "n", {"v": "text"})
    with pytest.raises(InvalidUpdateError):
        async with state.transaction() as tx:
            await tx.set("s", "other", 1)
            await tx.update("s", "n", [{"type": "increment", "path": "v", "value": 1}])
    assert await state.get("s", "other") is None


async def test_a_concurrent_change_to_a_key_read_is_a_conflict(state: StateManager) -> None:
    # Given a transaction that read a key
    await state.set("s", "k", 1)
    tx = state.transaction()
    value = await tx.get("s", "k")
    await tx.set("s", "copy", value)
    # When another writer changes it before the commit
    await state.set("s", "k", 2)
    # Then the commit raises and writes nothing
    with pytest.raises(StateConflictError):
        await tx.commit()
    assert await state.get("s", "copy") is None


async def test_a_key_read_as_absent_conflicts_when_created_meanwhile(state: StateManager) -> None:
    tx = state.transaction()
    assert await tx.get("locks", "job") is None
    await tx.set("locks", "job", {"owner": "a"})
    await state.set("locks", "job", {"owner": "b"})
    with pytest.raises(StateConflictError):
        await tx.commit()
    assert await state.get("locks", "job") == {"owner": "b"}


async def test_transact_retries_so_concurrent_transfers_keep_the_sum(state: StateManager) -> None:
    await state.set_many("counters", {"a": {"n": 1000}, "b": {"n": 0}})

    async def transfer(tx: Any) -> None:
        a = await tx.get("counters", "a")
        b = await tx.get("counters", "b")
        await asyncio.sleep(0)  # let other transfers interleave: conflicts must be retried
        await tx.set("counters", "a", {"n": a["n"] - 1})
        await tx.set("counters", "b", {"n": b["n"] + 1})

    await asyncio.gather(*(state.transact(transfer, retries=1000) for _ in range(100)))
    assert await state.get("counters", "a") == {"n": 900}
    assert await state.get("counters", "b") == {"n": 100}


async def test_transact_gives_up_after_its_retries(state: StateManager) -> None:
    await state.set("s", "k", 0)
    calls = 0

    async def always_conflicts(tx: Any) -> None:
        nonlocal calls
        calls += 1
        await tx.get("s", "k")
        await state.update("s", "k", [{"type": "increment", "value": 1}])  # a writer outside, every time
        await tx.set("s", "seen", True)

    with pytest.raises(StateConflictError):
        await state.transact(always_conflicts, retries=2)
    assert calls == 3
    assert await state.get("s", "seen") is None


@pytest.mark.delivery
async def test_events_fire_once_per_committed_key_and_never_for_a_rollback(state: StateManager) -> None:
    backend = state.backend
    await backend.enable_events()
    await state.set("s", "a", 1)
    with pytest.raises(RuntimeError):
        async with state.transaction() as tx:
            await tx.set("s", "a", 99)
            raise RuntimeError
    async with state.transaction() as tx:
        await tx.set("s", "a", 2)
        await tx.update("s", "a", [{"type": "set", "value": 3}])  # two writes of one key: one event
        await tx.set("t", "b", 1)
        await tx.delete("s", "missing")  # deletes nothing: no event
    await backend.dispatch_events([Subscription("watch")])
    events = []
    while claimed := await backend.claim(["watch"], owner="t", limit=100, lease=60):  # oldest per key first
        for delivery in claimed:
            events.append(orjson.loads(delivery.payload))
            await backend.complete(delivery.id, owner="t")
    events.sort(key=lambda e: e["seq"])
    assert [(e["event_type"], e["group_id"], e["item_id"], e["new_value"]) for e in events] == [
        ("created", "s", "a", 1),
        ("updated", "s", "a", 3),
        ("created", "t", "b", 1),
    ]


async def test_ttl_inside_a_transaction(state: StateManager, clock: Any) -> None:
    await state.set("s", "session", {"n": 0}, ttl=100)
    async with state.transaction() as tx:
        await tx.update("s", "session", [{"type": "increment", "path": "n", "value": 1}])  # keeps the expiry
        await tx.set("s", "short", 1, ttl=10)
        await tx.set("s", "forever", 1)
    assert (await state.get_entry("s", "session")).expires_at == pytest.approx(clock() + 100)  # type: ignore[union-attr]
    clock.advance(11)
    assert await state.get("s", "short") is None
    assert await state.get("s", "forever") == 1
    assert await state.get("s", "session") == {"n": 1}


# -- bulk helpers --------------------------------------------------------------------------------------


async def test_bulk_helpers(state: StateManager) -> None:
    results = await state.set_many("s", {"a": 1, "b": {"x": [1]}, "c": None})
    assert results["a"].old_value is None and results["b"].new_value == {"x": [1]}
    # a stored null is a value, not a missing key
    assert await state.get_many("s", ["a", "b", "c", "missing"]) == {"a": 1, "b": {"x": [1]}, "c": None}
    assert await state.delete_many("s", ["a", "c", "missing"]) == {"a": 1, "c": None}
    assert await state.keys("s") == ["b"]


async def test_set_many_is_all_or_nothing(state: StateManager) -> None:
    with pytest.raises(StateValueError):
        await state.set_many("s", {"good": 1, "bad": float("nan")})
    assert await state.get("s", "good") is None


# -- the synchronous twin and other processes ----------------------------------------------------------


def test_sync_twin_transactions_and_typed_scopes(sqlite_url: str) -> None:
    with SyncStateManager.from_url(sqlite_url) as state:
        state.set("s", "a", {"n": 5})
        with state.transaction() as tx:
            tx.set("s", "b", {"n": tx.get("s", "a")["n"] * 2})
        assert state.get("s", "b") == {"n": 10}
        with pytest.raises(ZeroDivisionError):
            with state.transaction() as tx:
                tx.set("s", "c", 1)
                _ = 1 / 0
        assert state.get("s", "c") is None
        assert state.transact(lambda tx: tx.get("s", "b")) == {"n": 10}
        sessions = state.scope("user-sessions", Session)
        sessions.set("s1", {"user_id": "1"})
        assert sessions.get("s1") == Session(user_id="1")
        assert state.get_many("s", ["a", "b"]) == {"a": {"n": 5}, "b": {"n": 10}}


TRANSFER_SCRIPT = textwrap.dedent(
    """
    import sys
    from motia.state.sync import SyncStateManager

    state = SyncStateManager.from_url(sys.argv[1])
    sys.stdin.readline()  # start together

    def transfer(tx):
        a = tx.get("bank", "a")
        b = tx.get("bank", "b")
        tx.set("bank", "a", {"n": a["n"] - 1})
        tx.set("bank", "b", {"n": b["n"] + 1})

    for _ in range(int(sys.argv[2])):
        state.transact(transfer, retries=10_000)
    state.close()
    print("done", flush=True)
    """
)


def test_two_processes_transferring_keep_the_sum(sqlite_url: str, tmp_path: Path) -> None:
    # Given two counters and two processes moving 1 from a to b, 200 times each
    with SyncStateManager.from_url(sqlite_url) as state:
        state.set_many("bank", {"a": {"n": 1000}, "b": {"n": 0}})
    script = tmp_path / "transfer.py"
    script.write_text(TRANSFER_SCRIPT)
    src = str(Path(__file__).resolve().parents[2] / "src")
    children = [
        subprocess.Popen(
            [sys.executable, str(script), sqlite_url, "200"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"},
        )
        for _ in range(2)
    ]
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    for child in children:
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0 and out.strip() == "done"
    # Then no transfer was lost or doubled: the sum is invariant and every transfer landed
    with SyncStateManager.from_url(sqlite_url) as state:
        assert state.get("bank", "a") == {"n": 600}
        assert state.get("bank", "b") == {"n": 400}
