"""Questions about steps and triggers, with motia-py 1.0's names: ``is_api_trigger(t)``,
``is_queue_step(s)``, ``get_cron_triggers(s)`` and the rest.

Each takes a trigger (``is_*_trigger``) or a ``Step`` (``is_*_step``, ``get_*_triggers``); an ``api``
trigger is an ``http`` trigger.
"""

from __future__ import annotations

from motia.steps.definition import Step
from motia.steps.triggers import CronTrigger, HttpTrigger, QueueTrigger, StateTrigger, StreamTrigger

__all__ = [
    "get_api_triggers",
    "get_cron_triggers",
    "get_queue_triggers",
    "get_state_triggers",
    "get_stream_triggers",
    "is_api_step",
    "is_api_trigger",
    "is_cron_step",
    "is_cron_trigger",
    "is_queue_step",
    "is_queue_trigger",
    "is_state_step",
    "is_state_trigger",
    "is_stream_step",
    "is_stream_trigger",
]


def is_api_trigger(trigger: object) -> bool:
    """``True`` for an ``http(...)`` (``api(...)``) trigger."""
    return isinstance(trigger, HttpTrigger)


def is_queue_trigger(trigger: object) -> bool:
    """``True`` for a ``queue(...)`` trigger."""
    return isinstance(trigger, QueueTrigger)


def is_cron_trigger(trigger: object) -> bool:
    """``True`` for a ``cron(...)`` trigger."""
    return isinstance(trigger, CronTrigger)


def is_state_trigger(trigger: object) -> bool:
    """``True`` for a ``state(...)`` trigger."""
    return isinstance(trigger, StateTrigger)


def is_stream_trigger(trigger: object) -> bool:
    """``True`` for a ``stream(...)`` trigger."""
    return isinstance(trigger, StreamTrigger)


def is_api_step(step: Step) -> bool:
    """``True`` when ``step`` has at least one HTTP trigger."""
    return any(is_api_trigger(t) for t in step.triggers)


def is_queue_step(step: Step) -> bool:
    """``True`` when ``step`` has at least one queue trigger."""
    return any(is_queue_trigger(t) for t in step.triggers)


def is_cron_step(step: Step) -> bool:
    """``True`` when ``step`` has at least one cron trigger."""
    return any(is_cron_trigger(t) for t in step.triggers)


def is_state_step(step: Step) -> bool:
    """``True`` when ``step`` has at least one state trigger."""
    return any(is_state_trigger(t) for t in step.triggers)


def is_stream_step(step: Step) -> bool:
    """``True`` when ``step`` has at least one stream trigger."""
    return any(is_stream_trigger(t) for t in step.triggers)


def get_api_triggers(step: Step) -> list[HttpTrigger]:
    """The HTTP triggers of ``step``, in declaration order."""
    return [t for t in step.triggers if isinstance(t, HttpTrigger)]


def get_queue_triggers(step: Step) -> list[QueueTrigger]:
    """The queue triggers of ``step``, in declaration order."""
    return [t for t in step.triggers if isinstance(t, QueueTrigger)]


def get_cron_triggers(step: Step) -> list[CronTrigger]:
    """The cron triggers of ``step``, in declaration order."""
    return [t for t in step.triggers if isinstance(t, CronTrigger)]


def get_state_triggers(step: Step) -> list[StateTrigger]:
    """The state triggers of ``step``, in declaration order."""
    return [t for t in step.triggers if isinstance(t, StateTrigger)]


def get_stream_triggers(step: Step) -> list[StreamTrigger]:
    """The stream triggers of ``step``, in declaration order."""
    return [t for t in step.triggers if isinstance(t, StreamTrigger)]
