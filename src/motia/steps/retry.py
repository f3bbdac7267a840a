"""``RetryPolicy``: how often, and after how long, a failed queue message or state event is tried again.

Parsed from a trigger's ``config`` (``queue("t", config={"max_retries": 5, "backoff": 2})``), so a bad
option fails where the step is declared, not when the first message fails. Queue triggers add options of
their own (:mod:`motia.steps.queue_options`); :func:`config_keys` reads the keys of both.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from motia.exceptions import ConfigError

__all__ = ["BACKOFF_TYPES", "QUEUE_ONLY_KEYS", "RETRY_KEYS", "RetryPolicy", "check_seconds", "config_keys"]

#: The retry keys every retried trigger's ``config`` may hold (camelCase spellings are accepted too).
#: ``backoff_delay_ms`` is upstream Motia's name of ``backoff`` (in milliseconds); ``backoff_delay`` (SPEC 12's
#: name) is ``backoff`` too, in seconds like every other duration of pymotia's config.
RETRY_KEYS = ("max_retries", "backoff", "backoff_max", "backoff_type", "backoff_delay", "backoff_delay_ms")
#: The spellings of the base delay: one of them at most.
_BASE_DELAY_KEYS = ("backoff", "backoff_delay", "backoff_delay_ms")
#: Keys that mean something for queue triggers only (see :mod:`motia.steps.queue_options`).
QUEUE_ONLY_KEYS = ("type", "delay_seconds", "visibility_timeout", "concurrency", "rate_limit")
BACKOFF_TYPES = ("exponential", "fixed")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def config_keys(config: Mapping[str, Any], *, what: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    """``config`` with its keys in snake_case (``maxRetries`` → ``max_retries``); a key outside
    ``allowed``, or one given in two spellings, raises :class:`ConfigError` naming ``what`` and the key."""
    values: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for name, value in config.items():
        key = _snake(name) if isinstance(name, str) else name
        if key not in allowed:
            if key in QUEUE_ONLY_KEYS:
                raise ConfigError(f"{what}: config key {name!r} applies to queue triggers only")
            raise ConfigError(f"{what}: unknown config key {name!r} (expected {', '.join(allowed)})")
        if key in values:
            raise ConfigError(f"{what}: config key {key!r} is given twice ({spelled[key]!r} and {name!r})")
        values[key], spelled[key] = value, name
    return values


def check_seconds(what: str, key: str, value: object, *, positive: bool = False) -> float:
    """``value`` as a finite number >= 0 (> 0 when ``positive``), else :class:`ConfigError`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        bound = "> 0" if positive else ">= 0"
        unit = "milliseconds" if key.endswith("_ms") else "seconds"
        raise ConfigError(f"{what}: {key} must be a number of {unit} {bound}, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """At most ``1 + max_retries`` attempts; retry ``n`` waits ``min(backoff * 2**(n-1), backoff_max)`` s
    (``backoff_type="exponential"``, the default) or ``min(backoff, backoff_max)`` s (``"fixed"``).

    With the defaults a failing message is tried 4 times over about 7 seconds (waits of 1, 2 and 4 s)
    and then dead-lettered.
    """

    max_retries: int = 3
    backoff: float = 1.0
    backoff_max: float = 60.0
    backoff_type: str = "exponential"

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first)."""
        if self.backoff_type == "fixed":
            return float(min(self.backoff, self.backoff_max))
        return float(min(self.backoff * 2 ** max(attempt - 1, 0), self.backoff_max))

    def gives_up_after(self, attempt: int) -> bool:
        """``True`` when attempt number ``attempt`` was the last one allowed."""
        return attempt > self.max_retries

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, what: str) -> RetryPolicy:
        """Read the keys of :data:`RETRY_KEYS` from ``config`` (snake_case or camelCase); reject anything
        else. ``what`` names the trigger in error messages (``queue('orders')``)."""
        return cls.from_values(config_keys(config, what=what, allowed=RETRY_KEYS), what=what)

    @classmethod
    def from_values(cls, values: Mapping[str, Any], *, what: str) -> RetryPolicy:
        """The policy of ``values``, keys already in snake_case (see :func:`config_keys`); others are ignored."""
        defaults = cls()
        retries = values.get("max_retries", defaults.max_retries)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"{what}: max_retries must be an int >= 0, got {retries!r}")
        given = [key for key in _BASE_DELAY_KEYS if values.get(key) is not None]
        if len(given) > 1:
            raise ConfigError(
                f"{what}: give one of backoff (seconds), backoff_delay (seconds) or backoff_delay_ms "
                f"(milliseconds), not {' and '.join(given)}: they set the same delay"
            )
        backoff = defaults.backoff
        if given:
            key = given[0]
            backoff = check_seconds(what, key, values[key]) / (1000.0 if key.endswith("_ms") else 1.0)
        backoff_max = check_seconds(what, "backoff_max", values.get("backoff_max", defaults.backoff_max))
        backoff_type = values.get("backoff_type")
        if backoff_type is None:
            backoff_type = defaults.backoff_type
        if backoff_type not in BACKOFF_TYPES:
            raise ConfigError(f"{what}: backoff_type must be one of {', '.join(BACKOFF_TYPES)}, got {backoff_type!r}")
        return cls(max_retries=retries, backoff=backoff, backoff_max=backoff_max, backoff_type=backoff_type)
