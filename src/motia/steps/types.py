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
    """A queue trigger's ``config``: ``queue("orders", config=QueueConfig(type="fifo", max_retries=5))`` (a
    dict). Every key is optional; the camelCase spellings (``maxRetries``, ``visibilityTimeout``,
    ``delaySeconds``, ``backoffType``, ``backoffDelayMs``, ``backoffMax``) are accepted in the dict too.

    ``type`` (``"standard"`` or ``"fifo"``: in order per ``messageGroupId``), ``delay_seconds``,
    ``visibility_timeout`` (the lease, seconds), ``concurrency`` (handlers at once per process, or
    ``{"key": ..., "limit": n}``: per key across instances), ``rate_limit`` (``{"limit", "period", "key"}``),
    and the
    retry policy: ``max_retries``, ``backoff`` or ``backoff_delay`` (seconds) or ``backoff_delay_ms``, ``backoff_max``,
    ``backoff_type`` (``"exponential"`` or ``"fixed"``). See :mod:`motia.steps.queue_options`.
    """

    type: Literal["standard", "fifo"]
    delay_seconds: float
    visibility_timeout: float
    concurrency: int | dict[str, Any]
    rate_limit: dict[str, Any]
    max_retries: int
    backoff: float
    backoff_delay: float
    backoff_delay_ms: float
    backoff_max: float
    backoff_type: Literal["exponential", "fixed"]
