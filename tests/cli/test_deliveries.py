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
