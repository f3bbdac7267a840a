"""A message nobody subscribes to is kept, not refused (SPEC 12): ``enqueue`` succeeds, the message becomes a
dead letter of ``(no subscriber)`` (deterministic ids never duplicate it), a warning is logged once per topic;
strict topics (``MOTIA_STRICT_TOPICS`` / ``strict_topics``) refuse it as before."""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

import motia
from motia import EnqueueError, queue, step
from motia.exceptions import ConfigError
from motia.runtime.app import MotiaApp
from motia.runtime.queue import NO_SUBSCRIBER, strict_topics_from_env
from motia.testing import capture_enqueues
from tests.redis_server import RedisServer
from tests.runtime.delivery_helpers import StartApp

_topics = itertools.count()


def fresh_topic() -> str:
    """A topic no earlier test used: the warning is logged once per topic per process."""
    return f"nobody.{next(_topics)}"


def producer(topic: str, *, fail_first: bool = False):
    """A queue step on ``go`` that enqueues two messages on ``topic`` (and fails its first attempt if asked)."""

    async def produce(input, ctx):
        await ctx.enqueue({"topic": topic, "data": {"n": 1, "order": input}})
        await ctx.enqueue({"topic": topic, "data": {"n": 2, "order": input}})
        if fail_first and ctx.trigger.attempt == 1:
            raise RuntimeError("crashed after enqueueing")

    trigger = queue("go", config={"backoff": 0.01})
    return step({"name": "produce", "triggers": [trigger], "enqueues": [topic]}, produce)


async def kept(app: MotiaApp) -> list[Any]:
    return await app.state.backend.dead_letters(NO_SUBSCRIBER)


async def test_a_message_nobody_subscribes_to_is_kept_as_a_dead_letter(
    start_app: StartApp, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a step that enqueues to a topic no step subscribes to, and the producer's delivery failing once
    topic = fresh_topic()
    app = await start_app([producer(topic, fail_first=True)])
    # When it runs (twice: the retry re-sends the same deterministic message ids)
    with caplog.at_level(logging.WARNING, logger="motia.runtime"):
        await motia.enqueue({"topic": "go", "data": "o1"})
        await app.drain()
    # Then both messages are kept once each, as dead letters marked "no subscriber"
    letters = await kept(app)
    assert [(d.step, d.kind, d.attempts) for d in letters] == [(NO_SUBSCRIBER, "queue", 0)] * 2
    assert {d.error for d in letters} == {f"no subscriber: no step subscribes to topic {topic!r}"}
    payloads = [orjson.loads(d.payload) for d in letters]
    assert [(p["topic"], p["data"]) for p in payloads] == [
        (topic, {"n": 1, "order": "o1"}),
        (topic, {"n": 2, "order": "o1"}),
    ]
    assert all(isinstance(p["trace_id"], str) for p in payloads)
    assert letters[0].id.endswith(f"/0>{NO_SUBSCRIBER}") and letters[1].id.endswith(f"/1>{NO_SUBSCRIBER}")
    # And the warning was logged once for the topic, not once per message
    warnings = [
        r.getMessage() for r in caplog.records if topic in r.getMessage() and "logged once per topic" in r.getMessage()
    ]
    assert len(warnings) == 1 and "'produce'" in warnings[0]
    assert await app.state.backend.pending() == 0


async def test_outside_a_step_any_topic_is_kept_and_recorded(start_app: StartApp) -> None:
    # Given an app with no subscriber at all, watched by the testing kit's recorder
    topic = fresh_topic()
    app = await start_app([])
    with capture_enqueues(app) as recorder:
        # When code outside a step enqueues (a topic declared nowhere)
        await motia.enqueue({"topic": topic, "data": [1, "a", 2**70 + 1]})
    # Then the test sees the message (delivered to no step) and the store keeps it
    message = recorder.assert_enqueued(topic, [1, "a", 2**70 + 1])
    assert message.steps == () and message.sender is None
    (letter,) = await kept(app)
    # (an int beyond 64 bits is kept exactly, as in a delivery)
    assert json.loads(letter.payload) == {"topic": topic, "data": [1, "a", 2**70 + 1], "trace_id": None}


async def test_with_no_subscriber_the_data_is_still_checked_but_not_the_declaration(start_app: StartApp) -> None:
    topic = fresh_topic()
    errors: dict[str, Exception] = {}

    async def send(input, ctx):
        for label, event in [("not-json", {"topic": topic, "data": {1, 2}}), ("undeclared", {"topic": "other"})]:
            try:
                await ctx.enqueue(event)
            except EnqueueError as exc:
                errors[label] = exc

    app = await start_app([step({"name": "send", "triggers": [queue("go")], "enqueues": [topic]}, send)])
    await motia.enqueue({"topic": "go", "data": None})
    await app.drain()
    # Then data that is not JSON is refused, keeping nothing
    assert "cannot be enqueued" in str(errors["not-json"])
    # And a topic missing from `enqueues` (SPEC 12) is sent anyway: nobody subscribes, so it is kept
    assert "undeclared" not in errors
    assert [orjson.loads(letter.payload)["topic"] for letter in await kept(app)] == ["other"]
    # And data over the store's size limit is refused as well, keeping nothing more
    with pytest.raises(EnqueueError, match="cannot be enqueued"):
        await motia.enqueue({"topic": topic, "data": "x" * (app.state.max_value_bytes + 1)})
    assert len(await kept(app)) == 1


@pytest.mark.parametrize("how", ["argument", "environment"])
async def test_strict_topics_refuse_the_message(start_app: StartApp, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    topic = fresh_topic()
    if how == "environment":
        monkeypatch.setenv("MOTIA_STRICT_TOPICS", "1")
        app = await start_app([])
    else:
        monkeypatch.setenv("MOTIA_STRICT_TOPICS", "0")  # the argument wins over the environment
        app = await start_app([], strict_topics=True)
    assert app.strict_topics
    with pytest.raises(EnqueueError, match=rf"no step subscribes to topic '{topic}', and strict topics"):
        await motia.enqueue({"topic": topic, "data": 1})
    assert await kept(app) == [] and await app.state.backend.pending() == 0


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("TRUE", True), (" on ", True), ("0", False), ("no", False), ("", False)]
)
def test_strict_topics_values(raw: str, expected: bool) -> None:
    assert strict_topics_from_env(environ={"MOTIA_STRICT_TOPICS": raw}) is expected
    assert strict_topics_from_env(environ={}) is False


def test_a_bad_strict_topics_value_fails_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MOTIA_STRICT_TOPICS", "maybe")
    db = tmp_path / "state.db"
    with pytest.raises(ConfigError, match=r"MOTIA_STRICT_TOPICS='maybe' is not a boolean"):
        MotiaApp([], state=f"sqlite:///{db}")
    assert not db.exists()  # refused before the store was opened


async def test_start_up_warning_says_what_happens_to_the_messages(caplog: pytest.LogCaptureFixture) -> None:
    topic = fresh_topic()
    for strict, fate in [(False, "kept as dead letters"), (True, "refused (strict topics)")]:
        app = MotiaApp([producer(topic)], state="memory://", cron=False, delivery=False, strict_topics=strict)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="motia.runtime"):
            await app.startup()
        try:
            expected = f"step 'produce' declares it enqueues to '{topic}', but no step subscribes to that topic"
            assert f"{expected}: its messages will be {fate}" in caplog.text
        finally:
            await app.shutdown()


async def test_kept_on_redis_without_duplicates(redis_server: RedisServer) -> None:
    # Given an app on Redis whose producer fails once after enqueueing to a topic nobody subscribes to
    topic = fresh_topic()
    url = f"{redis_server.url}?prefix=unsub-{uuid.uuid4().hex[:8]}&timeout=1"
    app = MotiaApp([producer(topic, fail_first=True)], state=url, cron=False)
    await app.startup()
    try:
        await motia.enqueue({"topic": "go", "data": "o1"})
        await app.drain()
        # Then each message is kept once
        letters = await kept(app)
        assert [orjson.loads(d.payload)["data"]["n"] for d in letters] == [1, 2]
    finally:
        await app.shutdown()


@pytest.mark.parametrize(
    ("config", "env", "expected"),
    [
        (None, None, False),
        ("strict_topics = True\n", None, True),
        ("strict_topics = False\n", None, False),
        ("strict_topics = True\n", "0", False),  # the environment wins when set
        ("x = 1\n", "1", True),
    ],
)
def test_strict_topics_from_motia_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: str | None, env: str | None, expected: bool
) -> None:
    from motia.runtime.project_config import strict_topics_setting

    project = tmp_path / f"project{next(_topics)}"  # a new path: motia_config is cached by its file
    project.mkdir()
    if config is not None:
        (project / "motia_config.py").write_text(config)
    if env is None:
        monkeypatch.delenv("MOTIA_STRICT_TOPICS", raising=False)
    else:
        monkeypatch.setenv("MOTIA_STRICT_TOPICS", env)
    assert strict_topics_setting(project) is expected


def test_a_strict_topics_that_is_not_a_bool_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from motia.runtime.project_config import strict_topics_setting

    monkeypatch.delenv("MOTIA_STRICT_TOPICS", raising=False)
    (tmp_path / "motia_config.py").write_text("strict_topics = 'yes'\n")
    with pytest.raises(ConfigError, match=r"strict_topics in .*motia_config.py must be True or False, not str"):
        strict_topics_setting(tmp_path)
