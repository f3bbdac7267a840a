"""Dead letters from the app's side (issue 18): the warning and the ``on_dead_letter`` hook when a delivery
becomes one (sync, async, raising), and the Python API (``app.dead_letters``): list, get, redrive after a
fix runs the handler once, redrive and purge by filter, unknown ids change nothing."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

import motia
from motia import DeadLetterNotFoundError, queue, step
from motia.exceptions import ConfigError, StateValueError
from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions
from tests.runtime.delivery_helpers import StartApp

_projects = itertools.count()


class Billing:
    """A queue step on ``orders`` that fails until ``fixed`` is set; ``runs`` holds (order, attempt, delivery)."""

    def __init__(self) -> None:
        self.fixed = False
        self.runs: list[tuple[Any, int, str]] = []
        self.succeeded = asyncio.Event()

    def step(self, max_retries: int = 1) -> Any:
        async def bill(input: Any, ctx: Any) -> None:
            self.runs.append((input["id"], ctx.trigger.attempt, ctx.trigger.delivery_id))
            if not self.fixed:
                raise ValueError(f"card declined for {input['id']} (attempt {ctx.trigger.attempt})")
            self.succeeded.set()

        trigger = queue("orders", config={"max_retries": max_retries, "backoff": 0.01})
        return step({"name": "bill", "triggers": [trigger]}, bill)


async def test_a_dead_letter_is_logged_and_given_to_the_hook(
    start_app: StartApp, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an async hook and a handler that always fails (2 attempts)
    records: list[dict[str, Any]] = []

    async def hook(record: dict[str, Any]) -> None:
        records.append(record)

    billing = Billing()
    app = await start_app([billing.step()], on_dead_letter=hook)
    # When a message fails for good
    with caplog.at_level(logging.WARNING, logger="motia.runtime"):
        await motia.enqueue({"topic": "orders", "data": {"id": 1}})
        await app.drain()
    # Then the hook got its record once
    (record,) = records
    assert (record["step"], record["kind"], record["topic"], record["attempts"]) == ("bill", "queue", "orders", 2)
    assert record["error_summary"] == "ValueError: card declined for 1 (attempt 2)"
    assert "Traceback" in record["error"] and record["payload"]["data"] == {"id": 1}
    assert record["trace_id"] and record["id"] == billing.runs[0][2]
    # And a warning names the step, delivery, attempts, error and trace id
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dead letter:")]
    assert f"step 'bill', delivery {record['id']}, after 2 attempt(s)" in line
    assert "ValueError: card declined for 1 (attempt 2)" in line and f"trace {record['trace_id']}" in line
    # And the stored letter has both errors
    letter = await app.dead_letters.get(record["id"])
    assert "attempt 1" in (letter.first_error or "") and "attempt 2" in letter.error


async def test_a_sync_hook_runs_off_the_loop_and_a_raising_one_breaks_nothing(
    start_app: StartApp, caplog: pytest.LogCaptureFixture
) -> None:
    threads: list[str] = []

    def hook(record: dict[str, Any]) -> None:
        threads.append(threading.current_thread().name)
        raise RuntimeError("pager down")

    billing = Billing()
    app = await start_app([billing.step(max_retries=0)], on_dead_letter=hook)
    with caplog.at_level(logging.ERROR, logger="motia.runtime"):
        await motia.enqueue({"topic": "orders", "data": {"id": 1}})
        await app.drain()
        # The worker goes on: the next message is handled (and fails) as usual
        await motia.enqueue({"topic": "orders", "data": {"id": 2}})
        await app.drain()
    assert len(threads) == 2 and threading.main_thread().name not in threads
    failures = [r for r in caplog.records if r.getMessage().startswith("on_dead_letter hook failed")]
    assert len(failures) == 2 and failures[0].exc_info is not None
    assert len((await app.dead_letters.list(step="bill")).items) == 2


def test_the_hook_must_be_callable(tmp_path: Path) -> None:
    from motia.runtime.project_config import dead_letter_hook

    with pytest.raises(ConfigError, match="on_dead_letter must be callable"):
        MotiaApp([], state="memory://", on_dead_letter="notify")  # type: ignore[arg-type]
    project = tmp_path / f"project{next(_projects)}"  # a new path: motia_config is cached by its file
    project.mkdir()
    (project / "motia_config.py").write_text("on_dead_letter = 3\n")
    with pytest.raises(ConfigError, match=r"on_dead_letter in .*motia_config.py must be a function, not int"):
        dead_letter_hook(project)
    other = tmp_path / f"project{next(_projects)}"
    other.mkdir()
    (other / "motia_config.py").write_text("def on_dead_letter(record):\n    pass\n")
    hook = dead_letter_hook(other)
    assert callable(hook) and getattr(hook, "__name__", "") == "on_dead_letter"
    assert dead_letter_hook(tmp_path / "nowhere") is None


async def test_redrive_after_a_fix_runs_the_handler_once_more(start_app: StartApp) -> None:
    # Given a dead letter
    billing = Billing()
    app = await start_app([billing.step(max_retries=0)])
    await motia.enqueue({"topic": "orders", "data": {"id": 1}})
    await app.drain()
    (letter,) = (await app.dead_letters.list()).items
    # When the handler is fixed and the letter redriven
    billing.fixed = True
    assert await app.dead_letters.redrive(letter.id) == [letter.id]
    await app.drain()
    # Then it ran once more, as the same delivery, and nothing is left
    assert billing.runs == [(1, 1, letter.id), (1, 1, letter.id)]
    assert (await app.dead_letters.list()).items == []
    assert (await app.dead_letters.pending()).items == []
    # And redriving it again is a clear error
    with pytest.raises(DeadLetterNotFoundError, match="no dead letter"):
        await app.dead_letters.redrive(letter.id)


async def test_bulk_operations_need_a_filter_and_unknown_ids_change_nothing(start_app: StartApp) -> None:
    billing = Billing()
    app = await start_app([billing.step(max_retries=0)])
    for order in range(3):
        await motia.enqueue({"topic": "orders", "data": {"id": order}})
    await motia.enqueue({"topic": "nobody", "data": {}})
    await app.drain()
    page = await app.dead_letters.list(limit=2)
    assert len(page.items) == 2 and page.next is not None
    rest = await app.dead_letters.list(after=page.next)
    assert len(rest.items) == 2 and rest.next is None
    # Unknown ids: an error, nothing redriven or purged
    known = page.items[0].id
    with pytest.raises(DeadLetterNotFoundError) as caught:
        await app.dead_letters.redrive(known, "nope")
    assert caught.value.delivery_id == "nope"
    with pytest.raises(DeadLetterNotFoundError):
        await app.dead_letters.purge("nope", known)
    assert len((await app.dead_letters.list()).items) == 4
    # No filter: refused unless everything=True
    with pytest.raises(StateValueError, match="needs a filter"):
        await app.dead_letters.purge_all()
    # By filter
    assert await app.dead_letters.purge_all(topic="nobody") == 1
    billing.fixed = True
    assert await app.dead_letters.redrive_all(step="bill") == 3
    await app.drain()
    assert sorted(order for order, _, _ in billing.runs[3:]) == [0, 1, 2]
    assert await app.dead_letters.purge_all(everything=True) == 0


async def test_redriven_letters_wake_the_worker_at_once(start_app: StartApp) -> None:
    # A redrive is a commit that adds deliveries: the worker is woken, not left to its next poll (30 s here)
    billing = Billing()
    slow_polls = DeliveryOptions(lease=5.0, poll_interval=30.0, concurrency=8)
    app = await start_app([billing.step(max_retries=0)], delivery=slow_polls)
    await motia.enqueue({"topic": "orders", "data": {"id": 1}})
    await app.drain()
    (letter,) = (await app.dead_letters.list()).items
    billing.fixed = True
    await app.dead_letters.redrive(letter.id)
    await asyncio.wait_for(billing.succeeded.wait(), timeout=10)  # not drain(): it wakes the worker itself
    assert len(billing.runs) == 2
