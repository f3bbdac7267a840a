"""``DeliveryOptions``: how the delivery worker runs (lease, polling, concurrency, retention), from code or
from ``MOTIA_DELIVERY_*`` environment variables. Queue triggers may override the lease and bound their own
concurrency (:mod:`motia.steps.queue_options`); these are the defaults and the process-wide cap."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from motia.exceptions import ConfigError

__all__ = ["DAY", "DeliveryOptions"]

DAY = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    """How the worker runs: ``lease`` (seconds a claimed delivery stays ours without renewal; a crashed
    process's work is picked up after it), ``poll_interval`` (seconds between looks for other processes'
    work), ``concurrency`` (handlers running at once per process) and ``batch_window`` (seconds the
    dispatcher lets a burst of local writes gather before moving their events; a lone write, or 0,
    dispatches at once).

    Retention (seconds; 0 turns a part off): ``dead_letter_retention`` (dead letters are deleted this long
    after they failed; 30 days), ``step_retention`` (a step no running app has served for this long is
    forgotten and its waiting deliveries become dead letters; 7 days; at least twice
    ``retention_interval``, which is how often apps say which steps they serve and one of them applies
    retention: 1 hour), ``stream_retention`` (stream changes are removed from the groups' histories this
    long after they were made, and a group left with no item and no change is forgotten; 7 days) and
    ``dead_letter_limit`` (at most this many dead letters are kept, the newest; a count, 0: no limit).
    See docs/operations.md, "Retention"."""

    lease: float = 30.0
    poll_interval: float = 0.1
    concurrency: int = 16
    batch_window: float = 0.002
    dead_letter_retention: float = 30 * DAY
    step_retention: float = 7 * DAY
    retention_interval: float = 3600.0
    stream_retention: float = 7 * DAY
    dead_letter_limit: int = 0

    #: Environment variables read by :meth:`from_env`, by field.
    ENV = {
        "lease": "MOTIA_DELIVERY_LEASE",
        "poll_interval": "MOTIA_DELIVERY_POLL_INTERVAL",
        "concurrency": "MOTIA_DELIVERY_CONCURRENCY",
        "batch_window": "MOTIA_DELIVERY_BATCH_WINDOW",
        "dead_letter_retention": "MOTIA_DELIVERY_DEAD_LETTER_RETENTION",
        "step_retention": "MOTIA_DELIVERY_STEP_RETENTION",
        "retention_interval": "MOTIA_DELIVERY_RETENTION_INTERVAL",
        "stream_retention": "MOTIA_DELIVERY_STREAM_RETENTION",
        "dead_letter_limit": "MOTIA_DELIVERY_DEAD_LETTER_LIMIT",
    }
    #: The fields ``retention`` of ``motia_config.py`` may set (see :meth:`from_env`).
    RETENTION = (
        "dead_letter_retention",
        "step_retention",
        "stream_retention",
        "retention_interval",
        "dead_letter_limit",
    )

    def __post_init__(self) -> None:
        may_be_zero = ("batch_window", "dead_letter_retention", "step_retention", "stream_retention")
        for name in ("lease", "poll_interval", "retention_interval", *may_be_zero):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
                raise ConfigError(f"delivery {name} must be a number of seconds >= 0, got {value!r}")
            if name not in may_be_zero and value == 0:
                raise ConfigError(f"delivery {name} must be a positive number of seconds, got {value!r}")
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ConfigError(f"delivery concurrency must be an int >= 1, got {self.concurrency!r}")
        limit = self.dead_letter_limit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ConfigError(f"delivery dead_letter_limit must be an int >= 0 (0: no limit), got {limit!r}")
        if 0 < self.step_retention < 2 * self.retention_interval:
            # Running apps touch their steps every retention_interval: a shorter retention would forget them.
            raise ConfigError(
                f"delivery step_retention ({self.step_retention:g} s) must be 0 (off) or at least twice "
                f"retention_interval ({self.retention_interval:g} s)"
            )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, retention: Mapping[str, Any] | None = None
    ) -> DeliveryOptions:
        """The defaults, overridden by ``retention`` (the ``retention`` dict of ``motia_config.py``: any of
        :attr:`RETENTION`, in seconds), overridden in turn by the variables of :attr:`ENV`
        (``MOTIA_DELIVERY_LEASE``, ``MOTIA_DELIVERY_POLL_INTERVAL``, ``MOTIA_DELIVERY_CONCURRENCY``,
        ``MOTIA_DELIVERY_BATCH_WINDOW``, ``MOTIA_DELIVERY_DEAD_LETTER_RETENTION``,
        ``MOTIA_DELIVERY_STEP_RETENTION``, ``MOTIA_DELIVERY_STREAM_RETENTION``,
        ``MOTIA_DELIVERY_RETENTION_INTERVAL``, ``MOTIA_DELIVERY_DEAD_LETTER_LIMIT``). An unknown
        ``retention`` key is a :class:`ConfigError`."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, value in (retention or {}).items():
            if name not in cls.RETENTION:
                raise ConfigError(f"retention: unknown setting {name!r} (known: {', '.join(cls.RETENTION)})")
            values[name] = value  # checked by __post_init__, as a value from code is
        for name, variable in cls.ENV.items():
            text = env.get(variable)
            if text:
                try:
                    values[name] = int(text) if name in ("concurrency", "dead_letter_limit") else float(text)
                except ValueError:
                    raise ConfigError(f"${variable} must be a number, got {text!r}") from None
        return cls(**values)
