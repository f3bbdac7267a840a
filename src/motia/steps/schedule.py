"""Cron expressions: validation (when a step is declared) and the pure ``next_fire`` function.

Expressions are standard 5-field (``minute hour day month weekday``), 6-field with the seconds first
(``second minute hour day month weekday``) or 7-field, motia-py 1.0's form, with the seconds first and
the year last (``second minute hour day month weekday year``, years 1970 to 2099), always in UTC.
Upstream Motia rejects 5-field expressions; we accept all three (SPEC section 9). ``@hourly``-style
aliases work too. A 7-field expression whose years are over never fires again: ``next_fire`` raises
:class:`ScheduleExhausted`.

The scheduler that runs them is :mod:`motia.runtime.cron`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import CroniterBadDateError, CroniterError, croniter

from motia.exceptions import ConfigError, ScheduleExhausted

__all__ = ["ScheduleExhausted", "next_fire", "validate_expression"]


#: How many years croniter may search for a tick: all of its range (1970-2099), so a 7-field expression
#: decades ahead is found, and one whose years are over is reported rather than searched for ever.
_YEARS = 130

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
    if len(fields) not in (5, 6, 7):
        raise ConfigError(
            f"invalid cron expression {expression!r}: expected 5 fields (minute hour day month weekday), "
            f"6 fields (second minute hour day month weekday) or 7 fields (second minute hour day month "
            f"weekday year), got {len(fields)}"
        )
    try:
        # From 1970, so any valid year (croniter: 1970-2099) has a tick after it.
        croniter(
            expr,
            datetime(1970, 1, 1, tzinfo=UTC),
            second_at_beginning=len(fields) > 5,
            max_years_between_matches=_YEARS,
        ).get_next(datetime)
    except (CroniterError, ValueError, KeyError) as exc:
        raise ConfigError(f"invalid cron expression {expression!r}: {exc}") from None
    return expr


def next_fire(previous: datetime, expression: str) -> datetime:
    """The first time strictly after ``previous`` at which ``expression`` fires, as an aware UTC datetime.

    Pure: no clock, no I/O. A naive ``previous`` is taken to be UTC. Raises :class:`ScheduleExhausted`
    when there is no such time (a 7-field expression whose years are over).
    """
    expr = validate_expression(expression)
    start = previous.replace(tzinfo=UTC) if previous.tzinfo is None else previous.astimezone(UTC)
    seconds_first = not expr.startswith("@") and len(expr.split(" ")) > 5
    try:
        result: datetime = croniter(
            expr, start, second_at_beginning=seconds_first, max_years_between_matches=_YEARS
        ).get_next(datetime)
    except CroniterBadDateError:
        raise ScheduleExhausted(f"cron expression {expression!r} has no tick after {start.isoformat()}") from None
    return result.astimezone(UTC)
