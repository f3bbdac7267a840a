"""Queues (SPEC 3.1, 3.2): ``ctx.enqueue``/``motia.enqueue`` reach every subscriber durably, checked before
anything is written; failing handlers are retried with backoff, then dead-lettered; a retried handler does
not double the messages its failed attempt sent."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import pytest
from pydantic import BaseModel

import motia
from motia import EnqueueError, MotiaError, http, queue, step
from motia.runtime.app import MotiaApp
from motia.runtime.types import TriggerInfo
from motia.testing import app_client, capture_enqueues, drain
from tests.runtime.delivery_helpers import StartApp


class Order(BaseModel):
    id: str
    total: float


def sender(topic: str, *, name: str = "send", enqueues: list[str] | None = None):
    """An HTTP step that enqueues its JSON body on ``topic``."""

    async def handler(input, ctx):
        await ctx.enqueue({"topic": topic, "data": input.body})
        return {"status": 202, "body": {"trace": ctx.trace_id}}

    return step({"name": name, "triggers": [http("POST", f"/{name}")], "enqueues": enqueues or [topic]}, handler)


async def test_a_message_reaches_every_subscriber_with_its_data() -> None:
    # Given two steps on one topic (one of them on two topics) and an HTTP step sending to it
    got: list[tuple[str, Any, TriggerInfo, str]] = []

    def consumer(name: str):
        async def handler(input, ctx):
            assert ctx.is_queue() and not ctx.is_state()
            got.append((name, input, ctx.trigger, ctx.trace_id))

        return handler

    steps = [
        sender("orders.created"),
        step({"name": "bill", "triggers": [queue("orders.created")]}, consumer("bill")),
        step({"name": "ship", "triggers": [queue("other"), queue("orders.created")]}, consumer("ship")),
    ]
    async with app_client(steps, delivery=True) as client:
        # When a message is sent from a request
        response = await client.post("/send", json={"id": "o1", "total": 9.5})
        await drain(client)
    # Then each subscriber got the data once, with the topic and the request's trace id
    assert response.status_code == 202
    trace = response.json()["trace"]
    assert sorted((name, data, info.topic, info.attempt, t) for name, data, info, t in got) == [
        ("bill", {"id": "o1", "total": 9.5}, "orders.created", 1, trace),
        ("ship", {"id": "o1", "total": 9.5}, "orders.created", 1, trace),
    ]


@pytest.mark.parametrize(
    "schema",
    [
        Order,
        {
            "type": "object",
            "properties": {"id": {"type": "string"}, "total": {"type": "number"}},
            "required": ["id", "total"],
        },
    ],
    ids=["pydantic", "json-schema"],
)
async def test_input_is_validated_when_enqueued(start_app: StartApp, schema: Any) -> None:
    # Given a subscriber declaring its input
    got: list[Any] = []

    async def consume(input, ctx):
        got.append(input)

    app = await start_app([step({"name": "bill", "triggers": [queue("orders", input=schema)]}, consume)])
    # When invalid data is enqueued, it is refused there and nothing is stored
    with pytest.raises(EnqueueError, match=r"does not match the input schema of step 'bill': total"):
        await motia.enqueue({"topic": "orders", "data": {"id": "o1"}})
    assert await app.state.backend.pending() == 0
    # And valid data (a model instance too) goes through as JSON
    await motia.enqueue({"topic": "orders", "data": Order(id="o2", total=3)})
    await app.drain()
    assert got == [{"id": "o2", "total": 3.0}]


@pytest.mark.parametrize("strict", [False, True])
async def test_enqueue_errors_name_the_problem(
    start_app: StartApp, strict: bool, caplog: pytest.LogCaptureFixture
) -> None:
    errors: dict[str, Exception] = {}
    secret: list[Any] = []
    topic = f"secret-{uuid.uuid4().hex[:8]}"  # the undeclared-topic warning is logged once per process

    async def try_send(input, ctx):
        for label, event in [
            ("undeclared", {"topic": topic, "data": 1}),
            ("not-json", {"topic": "jobs", "data": {1, 2}}),
            ("malformed", {"topic": "jobs", "payload": 1}),
            ("no-topic", {"data": 1}),
        ]:
            try:
                await ctx.enqueue(event)
            except EnqueueError as exc:
                errors[label] = exc

    async def worker(input, ctx):
        if ctx.trigger.topic == topic:
            secret.append(input)

    app = await start_app(
        [
            step({"name": "sender", "triggers": [queue("go")], "enqueues": ["jobs"]}, try_send),
            step({"name": "worker", "triggers": [queue("jobs"), queue(topic)]}, worker),
        ],
        strict_topics=strict,
    )
    with caplog.at_level(logging.WARNING, logger="motia.runtime"):
        await motia.enqueue({"topic": "go", "data": None})
        await app.drain()
    assert "cannot be enqueued" in str(errors["not-json"])
    assert "unknown key(s) 'payload'" in str(errors["malformed"])
    assert "non-empty str 'topic'" in str(errors["no-topic"])
    undeclared = f"step 'sender' enqueued to topic '{topic}', which its"
    if strict:
        # Strict topics refuse a topic missing from the sender's `enqueues`, sending nothing
        assert f"{undeclared} config does not declare" in str(errors["undeclared"])
        assert isinstance(errors["undeclared"], MotiaError)
        assert secret == []
    else:
        # By default (SPEC 12) it is sent to its subscribers, with one warning naming the step and topic
        assert "undeclared" not in errors
        assert secret == [1]
        assert [r.getMessage() for r in caplog.records].count(
            f"{undeclared} 'enqueues' does not declare (declared: jobs): sent anyway; add it to 'enqueues' "
            "(MOTIA_STRICT_TOPICS=1 refuses such messages); logged once per step and topic"
        ) == 1
    assert await app.state.backend.pending() == 0


async def test_start_up_warns_about_declared_topics_nobody_subscribes_to(caplog: pytest.LogCaptureFixture) -> None:
    app = MotiaApp([sender("orphan")], state="memory://", cron=False, delivery=False)
    with caplog.at_level(logging.WARNING, logger="motia.runtime"):
        await app.startup()
    await app.shutdown()
    assert (
        "step 'send' declares it enqueues to 'orphan', but no step subscribes to that topic: its messages"
        in caplog.text
    )


async def test_failing_handler_is_retried_with_backoff_then_dead_lettered(start_app: StartApp) -> None:
    # Given a consumer that always fails, with 2 retries and a short backoff
    attempts: list[tuple[int, float]] = []

    async def failing(input, ctx):
        attempts.append((ctx.trigger.attempt, time.monotonic()))
        raise ValueError(f"bad job {input['id']}")

    trigger = queue("jobs", config={"max_retries": 2, "backoff": 0.05, "backoff_max": 0.08})
    app = await start_app([step({"name": "failing", "triggers": [trigger]}, failing)])
    # When a message arrives
    await motia.enqueue({"topic": "jobs", "data": {"id": 7}})
    await app.drain()
    # Then it was tried 3 times, waiting 0.05 then 0.08 s (capped), and kept as a dead letter
    assert [n for n, _ in attempts] == [1, 2, 3]
    gaps = [b - a for (_, a), (_, b) in zip(attempts, attempts[1:], strict=False)]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.072
    (letter,) = await app.state.backend.dead_letters("failing")
    assert letter.kind == "queue" and letter.attempts == 3
    assert "ValueError: bad job 7" in letter.error and b'"data":{"id":7}' in letter.payload


async def test_max_retries_zero_dead_letters_at_once(start_app: StartApp) -> None:
    async def failing(input, ctx):
        raise RuntimeError("no")

    app = await start_app([step({"name": "f", "triggers": [queue("jobs", config={"maxRetries": 0})]}, failing)])
    await motia.enqueue({"topic": "jobs", "data": 1})
    await app.drain()
    assert [letter.attempts for letter in await app.state.backend.dead_letters("f")] == [1]


async def test_a_retried_handler_does_not_double_its_messages(start_app: StartApp) -> None:
    # Given a handler that enqueues two messages and then fails on its first attempt, and a consumer
    # that is held until the producer has finished (its messages stay pending meanwhile)
    release = asyncio.Event()
    produced: list[int] = []
    consumed: list[Any] = []

    async def produce(input, ctx):
        await ctx.enqueue({"topic": "emails", "data": {"n": 1}})
        await ctx.enqueue({"topic": "emails", "data": {"n": 2}})
        produced.append(ctx.trigger.attempt)
        if ctx.trigger.attempt == 1:
            raise RuntimeError("crashed after enqueueing")
        release.set()

    async def consume(input, ctx):
        await release.wait()
        consumed.append((input["n"], ctx.trigger.delivery_id))

    app = await start_app(
        [
            step(
                {"name": "produce", "triggers": [queue("signup", config={"backoff": 0.01})], "enqueues": ["emails"]},
                produce,
            ),
            step({"name": "consume", "triggers": [queue("emails")]}, consume),
        ]
    )
    # When the producer runs twice (fail, then succeed)
    await motia.enqueue({"topic": "signup", "data": {}})
    await app.drain()
    # Then the consumer got each message once, under ids derived from the producer's delivery
    assert produced == [1, 2]
    assert sorted(n for n, _ in consumed) == [1, 2]
    ids = sorted(delivery_id for _, delivery_id in consumed)
    assert ids[0].endswith("/0>consume") and ids[1].endswith("/1>consume")
    assert ids[0].rsplit("/", 1)[0] == ids[1].rsplit("/", 1)[0]


async def test_messages_of_a_handler_that_fails_for_good_are_not_lost(start_app: StartApp) -> None:
    # Given a handler that enqueues and then always fails, with no retry
    consumed: list[Any] = []

    async def produce(input, ctx):
        await ctx.enqueue({"topic": "audit", "data": {"order": input}})
        raise RuntimeError("payment service down")

    async def consume(input, ctx):
        consumed.append(input)

    app = await start_app(
        [
            step(
                {"name": "produce", "triggers": [queue("orders", config={"max_retries": 0})], "enqueues": ["audit"]},
                produce,
            ),
            step({"name": "consume", "triggers": [queue("audit")]}, consume),
        ]
    )
    await motia.enqueue({"topic": "orders", "data": "o1"})
    await app.drain()
    # Then its message was delivered (enqueues are not rolled back) and its own delivery is a dead letter
    assert consumed == [{"order": "o1"}]
    assert [letter.step for letter in await app.state.backend.dead_letters()] == ["produce"]


async def test_enqueue_from_def_handlers_and_module_level(start_app: StartApp) -> None:
    got: list[tuple[str, Any]] = []

    def sync_producer(input, ctx):
        ctx.enqueue({"topic": "out", "data": {"from": "ctx", "n": input["n"]}})  # blocking in def handlers
        motia.enqueue({"topic": "out", "data": {"from": "module", "n": input["n"]}})

    async def async_producer(input, ctx):
        await motia.enqueue({"topic": "out", "data": {"from": "module-async", "n": input["n"]}})

    async def sink(input, ctx):
        got.append((ctx.trigger.delivery_id, input))

    app = await start_app(
        [
            step({"name": "sync", "triggers": [queue("in")], "enqueues": ["out"]}, sync_producer),
            step({"name": "async", "triggers": [queue("in")], "enqueues": ["out"]}, async_producer),
            step({"name": "sink", "triggers": [queue("out")]}, sink),
        ]
    )
    # From a thread outside any handler, motia.enqueue blocks; in async code it is awaited
    await asyncio.to_thread(motia.enqueue, {"topic": "in", "data": {"n": 1}})
    await app.drain()
    assert sorted(data["from"] for _, data in got) == ["ctx", "module", "module-async"]
    # Inside the def handler, ctx.enqueue and motia.enqueue share the handler's numbering
    sync_ids = sorted(delivery_id.rsplit(">", 1)[0][-2:] for delivery_id, data in got if data["from"] != "module-async")
    assert sync_ids == ["/0", "/1"]


async def test_module_level_enqueue_needs_an_app() -> None:
    with pytest.raises(MotiaError, match="needs a running app"):
        motia.enqueue({"topic": "t", "data": 1})


async def test_queue_condition(start_app: StartApp) -> None:
    got: list[int] = []

    async def handler(input, ctx):
        got.append(input)

    app = await start_app([step({"name": "big", "triggers": [queue("n", condition=lambda n: n > 10)]}, handler)])
    for n in (5, 50):
        await motia.enqueue({"topic": "n", "data": n})
    await app.drain()
    assert got == [50] and await app.state.backend.pending() == 0


async def test_shutdown_releases_running_deliveries(state_url: str) -> None:
    # Given a handler that is still running when the app shuts down
    started = asyncio.Event()

    async def slow(input, ctx):
        started.set()
        await asyncio.Event().wait()  # never finishes on its own

    from motia.state.manager import StateManager
    from tests.runtime.delivery_helpers import FAST

    store = StateManager.from_url(state_url)
    app = MotiaApp([step({"name": "slow", "triggers": [queue("t")]}, slow)], state=store, delivery=FAST)
    app.shutdown_timeout = 0.05
    await app.startup()
    try:
        await motia.enqueue({"topic": "t", "data": 1})
        await asyncio.wait_for(started.wait(), 5)
    finally:
        await app.shutdown()
    # Then its delivery is claimable again at once, its attempt counted
    try:
        (delivery,) = await store.backend.claim(["slow"], owner="next", limit=5, lease=5)
        assert delivery.attempts == 2
    finally:
        await store.aclose()


async def test_capture_enqueues_and_record_state_events_on_a_running_app() -> None:
    from motia import state
    from motia.testing import record_state_events

    async def on_order(input, ctx):
        await ctx.enqueue({"topic": "order.created", "data": {"id": input.key}})

    async def noop(input, ctx):
        pass

    steps = [
        step({"name": "on-order", "triggers": [state(scope="orders")], "enqueues": ["order.created"]}, on_order),
        step({"name": "mailer", "triggers": [queue("order.created")]}, noop),
    ]
    async with app_client(steps) as client, record_state_events(client, scope="orders") as events:
        with capture_enqueues(client.app) as sent:
            await client.state.set("orders", "o1", {"total": 1})
            await client.state.set("carts", "c1", {})
            await drain(client)
        await events.collect()
    sent.assert_enqueued("order.created", {"id": "o1"})
    assert sent.messages[0].sender == "on-order" and sent.messages[0].steps == ("mailer",)
    assert events.assert_event("created", key="o1", new_value={"total": 1}).scope == "orders"
    assert [e.scope for e in events.events] == ["orders"]  # the recorder's own filter
    with pytest.raises(AssertionError, match="expected one deleted event"):
        events.assert_event("deleted")
    with pytest.raises(AssertionError, match="expected one message nope"):
        sent.assert_enqueued("nope")
