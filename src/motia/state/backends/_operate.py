"""Argument checks shared by the operator methods of every backend (``dead_letter_page``, ``pending_page``,
``redrive_dead_letters``, ``purge_dead_letters``): the runtime and the CLI call the backend directly, so the
backend refuses bad input itself, before it reads or changes anything."""

from __future__ import annotations

import math
from collections.abc import Sequence

from motia.exceptions import StateValueError

__all__ = ["check_ids", "check_page", "parse_dead_cursor", "parse_seq_cursor"]


def check_page(step: object, kind: object, after: object, limit: object) -> None:
    """Raise :class:`StateValueError` unless the filters are ``None`` or ``str`` and ``limit`` is a positive
    ``int`` (the cursor is parsed by the backend, which knows its form)."""
    for name, value in (("step", step), ("kind", kind), ("after", after)):
        if value is not None and not isinstance(value, str):
            raise StateValueError(f"{name} must be a str or None, not {type(value).__name__}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
        raise StateValueError(f"limit must be a positive int, not {limit!r}")


def parse_dead_cursor(after: str | None) -> tuple[float, str] | None:
    """A dead letter's :attr:`~motia.state.backends.types.DeadLetter.cursor` as ``(failed_at, id)``."""
    if after is None:
        return None
    failed_at, colon, delivery_id = after.partition(":")
    try:
        when = float(failed_at)
    except ValueError:
        when = math.nan
    if not colon or not math.isfinite(when):
        raise StateValueError(f"after must be a dead letter's cursor ('<failed_at>:<id>'), not {after!r}")
    return when, delivery_id


def parse_seq_cursor(after: str | None) -> int:
    """A pending delivery's cursor where the store numbers deliveries: the number (0: from the first)."""
    if after is None:
        return 0
    if not after.isdigit() or not after.isascii():
        raise StateValueError(f"after must be a pending delivery's cursor (a number), not {after!r}")
    return int(after)


def check_ids(delivery_ids: object) -> list[str]:
    """The ids of a redrive or purge, checked, duplicates dropped (first kept); a lone ``str`` is refused
    (it would be read as one id per character)."""
    if isinstance(delivery_ids, str | bytes) or not isinstance(delivery_ids, Sequence):
        raise StateValueError(f"delivery ids must be a sequence of str, not {type(delivery_ids).__name__}")
    for delivery_id in delivery_ids:
        if not isinstance(delivery_id, str):
            raise StateValueError(f"a delivery id must be a str, not {type(delivery_id).__name__}")
    return list(dict.fromkeys(delivery_ids))
