"""Cron expressions: validation (when a step is declared) and the pure ``next_fire`` function.

Expressions are standard 5-field (``minute hour day month weekday``) or 6-field with the seconds
first (``second minute hour day month weekday``), always in UTC. Upstream Motia rejects 5-field
expressions; we accept both (SPEC section 9). ``@hourly``-style aliases work too.

The scheduler that runs them is :mod:`motia.runtime.cron`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import CroniterError, croniter

from motia.exceptions import ConfigError

__all__ = ["next_fire", "validate_expression"]

_ALIASES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})


def validate_expression(expression: str) -> str:
    """Return the expression stripped, or raise ``ConfigError`` saying what is wrong with it.

    Checked when a step is declared, so a bad expression stops start-up instead of never firing.
    """
    if not isinstance(expression, str):
        raise ConfigError(f"cron expression must be a string, not {type(expression).__name__}")
    expr = " ".join(expression.split())
    if expr.lower() in _ALIASES:
        return expr.lower()
    fields = expr.split(" ") if expr else []
    if len(fields) not in (5, 6):
        raise ConfigError(
            f"invalid cron expression {expression!r}: expected 5 fields (minute hour day month weekday) "
            f"or 6 fields (second minute hour day month weekday), got {len(fields)}"
        )
    try:
        croniter(expr, datetime(2000, 1, 1, tzinfo=UTC), second_at_beginning=len(fields) == 6).get_next(datetime)
    except (CroniterError, ValueError, KeyError) as exc:
        raise ConfigError(f"invalid cron expression {expression!r}: {exc}") from None
    return expr


def next_fire(previous: datetime, expression: str) -> datetime:
    """The first time strictly after ``previous`` at which ``expression`` fires, as an aware UTC datetime.

    Pure: no clock, no I/O. A naive ``previous`` is taken to be UTC.
    """
    expr = validate_expression(expression)
    start = previous.replace(tzinfo=UTC) if previous.tzinfo is None else previous.astimezone(UTC)
    six_fields = not expr.startswith("@") and len(expr.split(" ")) == 6
    result: datetime = croniter(expr, start, second_at_beginning=six_fields).get_next(datetime)
    return result.astimezone(UTC)
