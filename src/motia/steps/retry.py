"""``RetryPolicy``: how often, and after how long, a failed queue message or state event is tried again.

Parsed from a trigger's ``config`` (``queue("t", config={"max_retries": 5, "backoff": 2})``), so a bad
option fails where the step is declared, not when the first message fails.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from motia.exceptions import ConfigError

__all__ = ["RetryPolicy"]

#: The keys a trigger's ``config`` may hold (camelCase spellings are accepted too).
_KEYS = ("max_retries", "backoff", "backoff_max")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """At most ``1 + max_retries`` attempts; retry ``n`` waits ``min(backoff * 2**(n-1), backoff_max)`` s.

    With the defaults a failing message is tried 4 times over about 7 seconds (waits of 1, 2 and 4 s)
    and then dead-lettered.
    """

    max_retries: int = 3
    backoff: float = 1.0
    backoff_max: float = 60.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 for the first)."""
        return float(min(self.backoff * 2 ** max(attempt - 1, 0), self.backoff_max))

    def gives_up_after(self, attempt: int) -> bool:
        """``True`` when attempt number ``attempt`` was the last one allowed."""
        return attempt > self.max_retries

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, what: str) -> RetryPolicy:
        """Read ``max_retries``, ``backoff`` and ``backoff_max`` from ``config``; reject anything else.

        ``what`` names the trigger in error messages (``queue('orders')``).
        """
        values: dict[str, Any] = {}
        for name, value in config.items():
            key = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() if isinstance(name, str) else name
            if key not in _KEYS:
                raise ConfigError(f"{what}: unknown config key {name!r} (expected {', '.join(_KEYS)})")
            values[key] = value
        defaults = cls()
        retries = values.get("max_retries", defaults.max_retries)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"{what}: max_retries must be an int >= 0, got {retries!r}")
        for key in ("backoff", "backoff_max"):
            number = values.get(key, getattr(defaults, key))
            if (
                isinstance(number, bool)
                or not isinstance(number, int | float)
                or not math.isfinite(number)
                or number < 0
            ):
                raise ConfigError(f"{what}: {key} must be a number of seconds >= 0, got {number!r}")
            values[key] = float(number)
        return cls(max_retries=retries, backoff=values["backoff"], backoff_max=values["backoff_max"])
