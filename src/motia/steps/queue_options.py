"""``QueueOptions``: what a queue trigger's ``config`` says beyond retries (upstream Motia's queue config).

``queue("orders", config={"type": "fifo", "delay_seconds": 5, "visibility_timeout": 60, "concurrency": 2,
"max_retries": 5, "backoff_type": "fixed", "backoff_delay_ms": 500})``; camelCase (``delaySeconds``,
``visibilityTimeout``, ``backoffType``, ``backoffDelayMs``, ``maxRetries``) works too. Everything is
checked when the trigger is declared:

- ``type``: ``"standard"`` (default) or ``"fifo"``: messages are handled in order per ``messageGroupId``,
  one at a time per group across every instance on the store; a message to the topic must carry one.
- ``delay_seconds``: each message becomes claimable that long after it was enqueued.
- ``visibility_timeout``: the lease of the step's deliveries, in seconds (default: the worker's lease):
  how soon a message held by a crashed worker is handled again.
- ``concurrency``: an int: at most that many handlers of the step at once, per process; a dict
  ``{"key": "userId", "limit": 1}``: at most ``limit`` at once per key, across instances
  (:mod:`motia.steps.flow_control`). A keyed limit and ``type: "fifo"`` are refused together: each
  orders the step's messages by a key of its own, and a message has one.
- ``rate_limit`` (``rateLimit``): ``{"limit": 10, "period": 60, "key": ...}``: at most ``limit`` handler
  starts per ``period`` seconds, per key (or per step), across instances.
- the retry keys of :class:`~motia.steps.retry.RetryPolicy`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from motia.exceptions import ConfigError
from motia.steps.flow_control import KeyConcurrency, RateLimit, parse_key_concurrency, parse_rate_limit
from motia.steps.retry import QUEUE_ONLY_KEYS, RETRY_KEYS, RetryPolicy, check_seconds, config_keys

__all__ = ["QUEUE_KEYS", "QUEUE_TYPES", "QueueOptions"]

#: Every key of a queue trigger's ``config``, in snake_case.
QUEUE_KEYS = (*QUEUE_ONLY_KEYS, *RETRY_KEYS)
QUEUE_TYPES = ("standard", "fifo")


@dataclass(frozen=True, slots=True)
class QueueOptions:
    """A queue trigger's checked config: ``type``, ``delay_seconds``, ``visibility_timeout`` (``None``: the
    worker's lease), ``concurrency`` (per process; ``None``: no limit of its own), ``key_concurrency`` (the
    dict form of ``concurrency``), ``rate_limit`` and the ``retry`` policy."""

    type: str = "standard"
    delay_seconds: float = 0.0
    visibility_timeout: float | None = None
    concurrency: int | None = None
    retry: RetryPolicy = RetryPolicy()
    key_concurrency: KeyConcurrency | None = None
    rate_limit: RateLimit | None = None

    @property
    def fifo(self) -> bool:
        return self.type == "fifo"

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, what: str) -> QueueOptions:
        """Read every key of :data:`QUEUE_KEYS` from ``config``; raise :class:`ConfigError` naming ``what``
        (``queue('orders')``) and the key for an unknown key or a bad value."""
        values = config_keys(config, what=what, allowed=QUEUE_KEYS)
        kind = values.get("type")
        if kind is None:
            kind = "standard"
        if kind not in QUEUE_TYPES:
            raise ConfigError(f"{what}: type must be one of {', '.join(QUEUE_TYPES)}, got {kind!r}")
        delay = values.get("delay_seconds")
        visibility = values.get("visibility_timeout")
        concurrency = values.get("concurrency")
        keyed = None
        if isinstance(concurrency, Mapping):
            keyed, concurrency = parse_key_concurrency(concurrency, what=what), None
            if kind == "fifo":
                raise ConfigError(
                    f"{what}: a keyed concurrency and type 'fifo' cannot be combined (each orders the messages "
                    "by a key of its own): for one message at a time per key, use {'key': ..., 'limit': 1} alone"
                )
        elif concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ConfigError(
                f"{what}: concurrency must be an int >= 1, got {concurrency!r} (or a dict {{'key': ..., 'limit': n}}: "
                "a limit per key)"
            )
        return cls(
            type=kind,
            delay_seconds=0.0 if delay is None else check_seconds(what, "delay_seconds", delay),
            visibility_timeout=None
            if visibility is None
            else check_seconds(what, "visibility_timeout", visibility, positive=True),
            concurrency=concurrency,
            retry=RetryPolicy.from_values(values, what=what),
            key_concurrency=keyed,
            rate_limit=parse_rate_limit(values.get("rate_limit"), what=what),
        )
