"""A queue trigger's ``config`` (upstream Motia's queue config): every key, snake_case and camelCase, checked
when the trigger is declared; the queue-only keys refused on state and stream triggers; 0.x
``infrastructure.queue``; how the worker plans its claims from them."""

from __future__ import annotations

from typing import Any

import pytest

from motia import ConfigError, EnqueueError, queue, state, step, stream
from motia.runtime.claim_plan import ClaimPlan
from motia.steps.flow_control import FlowKey, KeyConcurrency, RateLimit
from motia.steps.legacy import translate_v0
from motia.steps.queue_options import QueueOptions
from motia.steps.retry import RetryPolicy
from motia.steps.types import QueueConfig


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, QueueOptions()),
        ({"type": "fifo"}, QueueOptions(type="fifo")),
        ({"type": "standard"}, QueueOptions(type="standard")),
        ({"type": None}, QueueOptions()),
        ({"delay_seconds": 5}, QueueOptions(delay_seconds=5.0)),
        ({"delaySeconds": 0.5}, QueueOptions(delay_seconds=0.5)),
        ({"visibility_timeout": 60}, QueueOptions(visibility_timeout=60.0)),
        ({"visibilityTimeout": 1.5}, QueueOptions(visibility_timeout=1.5)),
        ({"concurrency": 1}, QueueOptions(concurrency=1)),
        ({"concurrency": None}, QueueOptions()),
        ({"max_retries": 0}, QueueOptions(retry=RetryPolicy(max_retries=0))),
        ({"maxRetries": 7}, QueueOptions(retry=RetryPolicy(max_retries=7))),
        ({"backoff": 2}, QueueOptions(retry=RetryPolicy(backoff=2.0))),
        ({"backoff_delay_ms": 250}, QueueOptions(retry=RetryPolicy(backoff=0.25))),
        ({"backoffDelayMs": 1500}, QueueOptions(retry=RetryPolicy(backoff=1.5))),
        ({"backoff_delay": 2.5}, QueueOptions(retry=RetryPolicy(backoff=2.5))),
        ({"backoffDelay": 0}, QueueOptions(retry=RetryPolicy(backoff=0.0))),
        ({"backoff_max": 9}, QueueOptions(retry=RetryPolicy(backoff_max=9.0))),
        ({"backoffMax": 9}, QueueOptions(retry=RetryPolicy(backoff_max=9.0))),
        ({"backoff_type": "fixed"}, QueueOptions(retry=RetryPolicy(backoff_type="fixed"))),
        ({"backoffType": "exponential"}, QueueOptions()),
        ({"backoffType": None}, QueueOptions()),
        (
            QueueConfig(type="fifo", max_retries=5, visibility_timeout=90, delay_seconds=2, concurrency=4),
            QueueOptions(type="fifo", delay_seconds=2.0, visibility_timeout=90.0, concurrency=4, retry=RetryPolicy(5)),
        ),
    ],
)
def test_every_key_is_read(config: dict[str, Any], expected: QueueOptions) -> None:
    trigger = queue("orders", config=config)
    assert trigger.options == expected
    assert trigger.retry == expected.retry
    assert trigger.options.fifo == (expected.type == "fifo")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"type": "priority"}, r"queue\('orders'\): type must be one of standard, fifo, got 'priority'"),
        ({"type": "FIFO"}, "type must be one of"),
        ({"delaySeconds": -1}, r"delay_seconds must be a number of seconds >= 0, got -1"),
        ({"delay_seconds": "5"}, "delay_seconds must be a number"),
        ({"delay_seconds": float("inf")}, "delay_seconds must be a number"),
        ({"visibility_timeout": 0}, r"visibility_timeout must be a number of seconds > 0, got 0"),
        ({"visibilityTimeout": True}, "visibility_timeout must be a number"),
        ({"concurrency": 0}, r"concurrency must be an int >= 1, got 0"),
        ({"concurrency": 2.5}, "concurrency must be an int"),
        ({"concurrency": True}, "concurrency must be an int"),
        ({"maxRetries": -1}, "max_retries must be an int >= 0"),
        ({"backoffType": "linear"}, r"backoff_type must be one of exponential, fixed, got 'linear'"),
        ({"backoffDelayMs": -5}, r"backoff_delay_ms must be a number of milliseconds >= 0"),
        ({"backoff": 1, "backoffDelayMs": 100}, "give one of backoff .*, not backoff and backoff_delay_ms"),
        ({"backoffDelay": 1, "backoffDelayMs": 100}, "not backoff_delay and backoff_delay_ms"),
        ({"backoff_delay": -1}, r"backoff_delay must be a number of seconds >= 0, got -1"),
        ({"max_retries": 1, "maxRetries": 2}, r"'max_retries' is given twice \('max_retries' and 'maxRetries'\)"),
        ({"messageGroupId": "g"}, r"unknown config key 'messageGroupId'"),
        ({"retries": 3}, r"queue\('orders'\): unknown config key 'retries' \(expected type, delay_seconds"),
    ],
)
def test_a_bad_value_fails_at_declaration_naming_the_trigger_and_the_key(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        queue("orders", config=config)


def test_a_bad_value_in_a_step_config_names_the_step() -> None:
    config = {"name": "ship", "triggers": [{"type": "queue", "topic": "t", "config": {"concurrency": 0}}]}
    with pytest.raises(ConfigError, match=r"step 'ship'.*queue\('t'\): concurrency must be an int >= 1"):
        step(config, lambda input: None)


QUEUE_ONLY = ["type", "delay_seconds", "delaySeconds", "visibilityTimeout", "concurrency", "rateLimit"]


@pytest.mark.parametrize("key", QUEUE_ONLY)
def test_queue_only_keys_are_refused_on_state_and_stream_triggers(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"state\(scope='s'\): config key '{key}' applies to queue triggers only"):
        state(scope="s", config={key: 1})
    with pytest.raises(ConfigError, match=rf"stream\('todo'\): config key '{key}' applies to queue triggers only"):
        stream("todo", config={key: 1})


def test_state_and_stream_triggers_take_the_backoff_keys() -> None:
    assert state(config={"backoffType": "fixed", "backoffDelayMs": 500}).retry == RetryPolicy(
        backoff=0.5, backoff_type="fixed"
    )
    assert stream("todo", config={"backoff_type": "fixed"}).retry.backoff_type == "fixed"


def test_backoff_delays() -> None:
    exponential = RetryPolicy(backoff=0.5, backoff_max=3.0)
    assert [exponential.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    fixed = RetryPolicy(backoff=0.5, backoff_max=3.0, backoff_type="fixed")
    assert [fixed.delay(n) for n in range(1, 6)] == [0.5] * 5
    assert RetryPolicy(backoff=9.0, backoff_max=3.0, backoff_type="fixed").delay(1) == 3.0


def test_v0_infrastructure_queue_becomes_the_queue_config() -> None:
    config = translate_v0(
        {
            "type": "event",
            "name": "ship",
            "subscribes": ["order.paid", "order.rush"],
            "infrastructure": {
                "handler": {"timeout": 10},
                "queue": {"type": "fifo", "maxRetries": 4, "visibilityTimeout": 45, "delaySeconds": 3},
            },
        }
    )
    expected = QueueOptions(type="fifo", delay_seconds=3.0, visibility_timeout=45.0, retry=RetryPolicy(4))
    assert [trigger.options for trigger in config["triggers"]] == [expected, expected]
    with pytest.raises(ConfigError, match=r"Motia 0.x event step.*unknown config key 'priority'"):
        translate_v0({"type": "event", "subscribes": ["t"], "infrastructure": {"queue": {"priority": 1}}})
    with pytest.raises(ConfigError, match="infrastructure.queue must be a dict"):
        translate_v0({"type": "event", "subscribes": ["t"], "infrastructure": {"queue": 3}})


def test_the_claim_plan_groups_steps_by_lease_and_claims_limited_steps_alone() -> None:
    steps = [
        step({"name": "plain", "triggers": [queue("a")]}, lambda input: None),
        step({"name": "watcher", "triggers": [state(scope="s")]}, lambda input: None),
        step({"name": "slow", "triggers": [queue("b", config={"visibilityTimeout": 90})]}, lambda input: None),
        step(
            {
                "name": "limited",
                "triggers": [
                    queue("c", config={"concurrency": 3, "visibility_timeout": 5}),
                    queue("d", config={"concurrency": 2, "visibility_timeout": 12}),
                ],
            },
            lambda input: None,
        ),
    ]
    plan = ClaimPlan(steps, default_lease=30.0)
    # The longest visibility timeout and the smallest concurrency of a step's queue triggers hold
    assert plan.leases == {"plain": 30.0, "watcher": 30.0, "slow": 90.0, "limited": 12.0}
    assert plan.limits == {"limited": 2}
    assert plan.renew_period == 4.0
    first = plan.next_units({})
    assert [(unit.steps, unit.lease, room) for unit, room in first] == [
        (("plain", "watcher"), 30.0, None),
        (("slow",), 90.0, None),
        (("limited",), 12.0, 2),
    ]
    # Each call starts one unit later; a full limited step is left out, one with room gets what is left
    assert [unit.steps for unit, _ in plan.next_units({"limited": 2})] == [("slow",), ("plain", "watcher")]
    assert [(unit.steps, room) for unit, room in plan.next_units({"limited": 1})] == [
        (("limited",), 1),
        (("plain", "watcher"), None),
        (("slow",), None),
    ]
    assert plan.group_by_lease({"d1": "plain", "d2": "slow", "d3": "watcher"}) == {30.0: ["d1", "d3"], 90.0: ["d2"]}


# -- keyed flow control (issue 18) ----------------------------------------------------------------------


def by_domain(data: Any) -> str:
    return str(data["email"]).split("@")[1]


@pytest.mark.parametrize(
    ("config", "key_concurrency", "rate_limit"),
    [
        ({"concurrency": {"key": "userId", "limit": 1}}, KeyConcurrency(FlowKey(("userId",)), 1), None),
        ({"concurrency": {"key": "user.id", "limit": 100}}, KeyConcurrency(FlowKey(("user", "id")), 100), None),
        ({"concurrency": {"key": by_domain, "limit": 2}}, KeyConcurrency(FlowKey(function=by_domain), 2), None),
        ({"rate_limit": {"limit": 10, "period": 60}}, None, RateLimit(10, 60.0)),
        ({"rateLimit": {"limit": 1, "period": 0.5, "key": "tenant"}}, None, RateLimit(1, 0.5, FlowKey(("tenant",)))),
        ({"rate_limit": None}, None, None),
        (
            {"concurrency": {"key": "k", "limit": 1}, "rateLimit": {"limit": 3, "period": 1, "key": by_domain}},
            KeyConcurrency(FlowKey(("k",)), 1),
            RateLimit(3, 1.0, FlowKey(function=by_domain)),
        ),
    ],
)
def test_keyed_concurrency_and_rate_limits_are_read(
    config: dict[str, Any], key_concurrency: KeyConcurrency | None, rate_limit: RateLimit | None
) -> None:
    options = queue("orders", config=config).options
    assert (options.key_concurrency, options.rate_limit, options.concurrency) == (key_concurrency, rate_limit, None)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"concurrency": {"key": "userId"}}, r"queue\('orders'\): concurrency as a dict needs both 'key' and 'limit'"),
        ({"concurrency": {"limit": 1}}, "needs both 'key' and 'limit'"),
        ({"concurrency": {"key": "u", "limit": 0}}, r"concurrency.limit must be an int >= 1, got 0"),
        ({"concurrency": {"key": "u", "limit": True}}, r"concurrency.limit must be an int >= 1, got True"),
        ({"concurrency": {"key": "u", "limit": 101}}, r"concurrency.limit is at most 100 per key, got 101"),
        ({"concurrency": {"key": "", "limit": 1}}, r"concurrency.key must be a dotted path .* got ''"),
        ({"concurrency": {"key": "a..b", "limit": 1}}, r"concurrency.key must be a dotted path"),
        ({"concurrency": {"key": 5, "limit": 1}}, r"concurrency.key must be a dotted path .* got 5"),
        (
            {"concurrency": {"key": "u", "limit": 1, "per": "x"}},
            r"unknown concurrency key 'per' \(expected key, limit\)",
        ),
        (
            {"type": "fifo", "concurrency": {"key": "u", "limit": 1}},
            r"a keyed concurrency and type 'fifo' cannot be combined",
        ),
        ({"rate_limit": 10}, r"queue\('orders'\): rate_limit must be a dict \{'limit': n, 'period': seconds\}, got 10"),
        ({"rate_limit": {"limit": 10}}, r"rate_limit needs both 'limit' and 'period'"),
        ({"rateLimit": {"limit": 0, "period": 1}}, r"rate_limit.limit must be an int >= 1, got 0"),
        ({"rateLimit": {"limit": 1, "period": 0}}, r"rate_limit.period must be a number of seconds > 0, got 0"),
        ({"rateLimit": {"limit": 1, "period": float("nan")}}, r"rate_limit.period must be a number of seconds > 0"),
        ({"rateLimit": {"limit": 1, "period": "60"}}, r"rate_limit.period must be a number of seconds > 0, got '60'"),
        ({"rate_limit": {"limit": 1, "period": 1, "key": []}}, r"rate_limit.key must be a dotted path .* got \[\]"),
        ({"rate_limit": {"limit": 1, "period": 1, "window": 1}}, r"unknown rate_limit key 'window'"),
        ({"rate_limit": {"limit": 1, "period": 1}, "rateLimit": None}, r"'rate_limit' is given twice"),
    ],
)
def test_a_bad_flow_control_value_fails_at_declaration(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        queue("orders", config=config)


def test_a_bad_flow_control_value_in_a_step_config_names_the_step() -> None:
    config = {"name": "mail", "triggers": [{"type": "queue", "topic": "t", "config": {"rateLimit": {"limit": 1}}}]}
    with pytest.raises(ConfigError, match=r"step 'mail'.*queue\('t'\): rate_limit needs both 'limit' and 'period'"):
        step(config, lambda input: None)


@pytest.mark.parametrize(
    ("key", "data", "expected"),
    [
        (FlowKey(("userId",)), {"userId": "u1"}, "u1"),
        (FlowKey(("userId",)), {"userId": 42}, "42"),
        (FlowKey(("user", "id")), {"user": {"id": "x"}}, "x"),
        (FlowKey(("items", "1", "sku")), {"items": [{"sku": "a"}, {"sku": "b"}]}, "b"),
        (FlowKey(function=by_domain), {"email": "a@b.example"}, "b.example"),
    ],
)
def test_a_flow_key_reads_the_message_data(key: FlowKey, data: Any, expected: str) -> None:
    assert key.of(data) == expected


@pytest.mark.parametrize(
    "data",
    [{}, {"userId": None}, {"userId": ""}, {"userId": False}, {"userId": 1.5}, {"userId": ["a"]}, None, "u1", [1]],
)
def test_a_missing_or_unusable_flow_key_is_an_enqueue_error(data: Any) -> None:
    with pytest.raises(EnqueueError, match="no usable flow-control key 'userId'"):
        FlowKey(("userId",)).of(data)


def test_a_too_long_flow_key_and_a_failing_key_function_are_enqueue_errors() -> None:
    with pytest.raises(EnqueueError, match="over 200 characters"):
        FlowKey(("k",)).of({"k": "x" * 201})
    with pytest.raises(EnqueueError, match=r"key function by_domain raised KeyError\('email'\)"):
        FlowKey(function=by_domain).of({})


def test_rate_limited_steps_are_claimed_alone_and_can_be_paused() -> None:
    plain = step({"name": "plain", "triggers": [queue("a")]}, lambda input: None)
    limited = step(
        {"name": "limited", "triggers": [queue("b", config={"rateLimit": {"limit": 1, "period": 1}})]}, print
    )
    plan = ClaimPlan([plain, limited], default_lease=30.0)
    assert [unit.steps for unit in plan.units] == [("plain",), ("limited",)]
    assert [unit.steps for unit, _ in plan.next_units({}, lambda name: name == "limited")] == [("plain",)]
    assert sorted(unit.steps for unit, _ in plan.next_units({}, lambda name: False)) == [("limited",), ("plain",)]
