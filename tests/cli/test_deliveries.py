"""``motia deliveries list`` through click's CliRunner and a real ``python -m motia`` process, on SQLite and Redis:
dead letters (a failed handler's, a message nobody subscribes to) filtered by step, kind and topic, and the
deliveries pending per step."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import motia
from motia import queue, step
from motia.cli import main
from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions
from motia.state.backends.types import NewDelivery
from tests.redis_server import RedisServer

NO_SUBSCRIBER = "(no subscriber)"


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    server: RedisServer = request.getfixturevalue("redis_server")
    return f"{server.url}?prefix=cli{abs(hash(str(tmp_path)))}&timeout=1"


def seed(url: str) -> None:
    """Through a real app: a failing handler's message becomes a dead letter, a message to a topic nobody
    subscribes to is kept; and one delivery of a step no app runs here waits."""

    async def failing(input: Any, ctx: Any) -> None:
        raise ValueError(f"bad order {input['id']}")

    async def go() -> None:
        trigger = queue("orders", config={"max_retries": 0})
        app = MotiaApp(
            [step({"name": "bill", "triggers": [trigger]}, failing)],
            state=url,
            cron=False,
            delivery=DeliveryOptions(poll_interval=0.02),
        )
        await app.startup()
        try:
            await motia.enqueue({"topic": "orders", "data": {"id": 7}})
            await app.drain()  # dead-lettered before the others are kept: the list is oldest first
            await motia.enqueue({"topic": "audit", "data": {"id": 8, "big": 2**70 + 1}})
            await motia.enqueue({"topic": "mail", "data": {"to": "ann"}})
            await app.drain()
            await app.state.backend.enqueue([NewDelivery("w1", "later", "queue", b'{"topic":"x","data":1}')])
        finally:
            await app.shutdown()

    asyncio.run(go())


def invoke(url: str, *args: str) -> Any:
    result = CliRunner().invoke(main, ["deliveries", "list", *args, "--state", url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_list_shows_dead_letters_and_pending_counts(url: str) -> None:
    # Given a store with a failed message, two messages nobody subscribes to and a waiting delivery
    seed(url)
    # When everything is listed
    listed = json.loads(invoke(url))
    # Then the dead letters come oldest first with their topic, error and decoded payload
    letters = listed["dead_letters"]
    assert [(d["step"], d["kind"], d["topic"], d["attempts"]) for d in letters] == [
        ("bill", "queue", "orders", 1),
        (NO_SUBSCRIBER, "queue", "audit", 0),
        (NO_SUBSCRIBER, "queue", "mail", 0),
    ]
    assert "ValueError: bad order 7" in letters[0]["error"]
    assert letters[1]["error"] == "no subscriber: no step subscribes to topic 'audit'"
    # (the payload decoded exactly: an int beyond 64 bits stays an int)
    assert letters[1]["payload"] == {"topic": "audit", "data": {"id": 8, "big": 2**70 + 1}, "trace_id": None}
    assert letters[0]["failed_at"] >= letters[0]["created_at"] > 0
    # And the pending deliveries are counted per step
    assert listed["pending"] == {"later": 1}


def test_list_filters(url: str) -> None:
    seed(url)
    topics = lambda *args: [d["topic"] for d in json.loads(invoke(url, *args))["dead_letters"]]  # noqa: E731
    assert topics("--step", NO_SUBSCRIBER) == ["audit", "mail"]
    assert topics("--topic", "mail") == ["mail"]
    assert topics("--step", "bill", "--topic", "mail") == []
    assert topics("--kind", "queue", "--limit", "2") == ["orders", "audit"]
    assert topics("--kind", "state") == []
    assert json.loads(invoke(url, "--step", "bill"))["pending"] == {}
    # --jsonl prints one dead letter per line
    lines = invoke(url, "--jsonl", "--step", NO_SUBSCRIBER).splitlines()
    assert [json.loads(line)["topic"] for line in lines] == ["audit", "mail"]


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["deliveries", "list", "--state", f"sqlite:///{tmp_path / 'none.db'}"])
    assert missing.exit_code == 1 and "no state store at" in missing.output
    assert not (tmp_path / "none.db").exists()
    bad_kind = runner.invoke(main, ["deliveries", "list", "--kind", "email", "--state", "memory://"])
    assert bad_kind.exit_code == 2 and "'email' is not one of" in bad_kind.output


def test_real_process_lists(url: str, tmp_path: Path) -> None:
    # Given a seeded store, and the URL given through the environment as in a deployment
    seed(url)
    env = {**os.environ, "MOTIA_STATE_URL": url}
    # When a real `motia deliveries list` runs
    done = subprocess.run(
        [sys.executable, "-m", "motia", "deliveries", "list", "--topic", "audit"],
        capture_output=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    # Then it prints the one matching dead letter and the pending counts
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [(d["step"], d["topic"]) for d in listed["dead_letters"]] == [(NO_SUBSCRIBER, "audit")]
    assert listed["pending"] == {"later": 1}


# -- show, redrive, purge, --pending, pages (issue 18) -----------------------------------------------------------


def run(url: str, *args: str, code: int = 0) -> Any:
    result = CliRunner().invoke(main, ["deliveries", *args, "--state", url], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if code == 0 else result.output


def test_show_prints_one_dead_letter_with_its_errors(url: str) -> None:
    seed(url)
    (billed,) = json.loads(invoke(url, "--step", "bill"))["dead_letters"]
    shown = run(url, "show", billed["id"])
    assert shown == billed
    assert shown["first_error"] == shown["error"] and shown["error_summary"] == "ValueError: bad order 7"
    assert "no dead letter 'nope'" in run(url, "show", "nope", code=1)


def test_pages_continue_with_after(url: str) -> None:
    seed(url)
    first = json.loads(invoke(url, "--limit", "2"))
    assert [d["topic"] for d in first["dead_letters"]] == ["orders", "audit"] and first["next"]
    rest = json.loads(invoke(url, "--limit", "2", "--after", first["next"]))
    assert [d["topic"] for d in rest["dead_letters"]] == ["mail"] and rest["next"] is None


def test_pending_lists_the_deliveries_still_waiting(url: str) -> None:
    seed(url)
    listed = json.loads(invoke(url, "--pending"))
    assert [(p["id"], p["step"], p["attempts"], p["leased_until"]) for p in listed["pending_deliveries"]] == [
        ("w1", "later", 0, None)
    ]
    assert listed["next"] is None


def test_redrive_and_purge_by_ids_or_filter(url: str) -> None:
    seed(url)
    kept = [d["id"] for d in json.loads(invoke(url, "--step", NO_SUBSCRIBER))["dead_letters"]]
    # An unknown id among known ones is an error that changes nothing
    assert "no dead letter 'nope'" in run(url, "purge", kept[0], "nope", code=1)
    assert "no dead letter 'nope'" in run(url, "redrive", "nope", code=1)
    assert len(json.loads(invoke(url))["dead_letters"]) == 3
    # A selection is required, and ids do not mix with a filter
    assert "say which dead letters" in run(url, "purge", code=2)
    assert "not both" in run(url, "redrive", kept[0], "--all", code=2)
    assert "not both" in run(url, "purge", kept[0], "--step", "bill", code=2)
    # By ids (atomically) and by filter
    assert run(url, "purge", kept[0]) == {"purged": 1, "ids": [kept[0]], "skipped": []}
    assert run(url, "redrive", "--step", "bill") == {"redriven": 1}
    listed = json.loads(invoke(url))
    assert [d["topic"] for d in listed["dead_letters"]] == ["mail"]
    assert listed["pending"] == {"bill": 1, "later": 1}  # no app runs here: the redriven message waits
    assert run(url, "purge", "--all") == {"purged": 1}
    assert json.loads(invoke(url))["dead_letters"] == []
