"""The steps as the console lists them: each trigger with what it listens to and, for the triggers that
deliver through the store (queue, state, stream), how: the queue's type, delay, lease, concurrency, keyed
concurrency and rate limit, and the retry policy. An operator looking at a backlog or a dead letter needs
those without opening the step's source.

A flow-control key given as a function is shown by its name; nothing here calls user code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from motia.steps.triggers import QueueTrigger, StateTrigger, StreamTrigger

if TYPE_CHECKING:
    from motia.steps.definition import Step
    from motia.steps.flow_control import FlowKey
    from motia.steps.retry import RetryPolicy
    from motia.steps.triggers import Trigger

__all__ = ["step_json", "trigger_json"]

_FIELDS = {
    "http": ("method", "path"),
    "cron": ("expression",),
    "queue": ("topic",),
    "state": ("scope", "key"),
    "stream": ("stream_name", "group_id", "item_id"),
}


def _retry_json(retry: RetryPolicy) -> dict[str, Any]:
    return {
        "max_retries": retry.max_retries,
        "backoff": retry.backoff,
        "backoff_max": retry.backoff_max,
        "backoff_type": retry.backoff_type,
    }


def _key_name(key: FlowKey | None) -> str | None:
    return None if key is None else key.name


def trigger_json(trigger: Trigger) -> dict[str, Any]:
    """A trigger as the console shows it: its type, what it listens to and, where it delivers through the
    store, its delivery settings."""
    described: dict[str, Any] = {"type": trigger.type}
    described.update({name: getattr(trigger, name, None) for name in _FIELDS.get(trigger.type, ())})
    described["condition"] = trigger.condition is not None
    if isinstance(trigger, QueueTrigger):
        options = trigger.options
        keyed, rate = options.key_concurrency, options.rate_limit
        described["queue"] = {
            "type": options.type,
            "delay_seconds": options.delay_seconds,
            "visibility_timeout": options.visibility_timeout,
            "concurrency": options.concurrency,
            "key_concurrency": None if keyed is None else {"key": _key_name(keyed.key), "limit": keyed.limit},
            "rate_limit": None
            if rate is None
            else {"limit": rate.limit, "period": rate.period, "key": _key_name(rate.key)},
        }
    if isinstance(trigger, QueueTrigger | StateTrigger | StreamTrigger):
        described["retry"] = _retry_json(trigger.retry)
    return described


def step_json(step: Step) -> dict[str, Any]:
    """A step as the console lists it."""
    config = step.config
    return {
        "name": step.name,
        "description": config.description,
        "flows": list(config.flows),
        "enqueues": [topic if isinstance(topic, str) else topic.get("topic") for topic in config.enqueues],
        "triggers": [trigger_json(trigger) for trigger in step.triggers],
    }
