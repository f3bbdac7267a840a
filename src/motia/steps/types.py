"""Type names of step declarations, as motia-py 1.0 spells them, for annotations and for code that
builds configs with them: ``Enqueue(topic="orders")``, ``QueueConfig(max_retries=5)``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, NotRequired, TypeAlias, TypedDict

from motia.steps.triggers import HttpTrigger, Trigger

__all__ = [
    "ApiRouteMethod",
    "ApiTrigger",
    "Enqueue",
    "QueueConfig",
    "TriggerCondition",
    "TriggerConfig",
]

#: The methods an HTTP trigger may serve.
ApiRouteMethod: TypeAlias = Literal["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]

#: motia-py 1.0's name of the HTTP trigger's class.
ApiTrigger = HttpTrigger

#: Any trigger (``http``, ``queue``, ``cron``, ``state``, ``stream``): the base class, so ``isinstance`` works.
TriggerConfig = Trigger

#: A trigger's ``condition(input, ctx)``, sync or async.
TriggerCondition: TypeAlias = Callable[[Any, Any], bool | Awaitable[bool]]


class Enqueue(TypedDict):
    """An entry of ``enqueues`` (a topic the step sends to): ``Enqueue(topic="orders")`` is the dict
    ``{"topic": "orders"}``, as a plain string ``"orders"`` is."""

    topic: str
    label: NotRequired[str]
    conditional: NotRequired[bool]


class QueueConfig(TypedDict, total=False):
    """A queue trigger's ``config``: ``queue("orders", config=QueueConfig(max_retries=5))`` (a dict).

    ``max_retries``, ``backoff`` and ``backoff_max`` (seconds) set the retry policy
    (:class:`~motia.steps.retry.RetryPolicy`).
    """

    max_retries: int
    backoff: float
    backoff_max: float
