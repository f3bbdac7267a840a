"""Write planning shared by the backends that apply writes in Python (memory, SQLite).

Given the current live record (already filtered for expiry), each function decides the new record and
the result, or raises before anything is written. Keeping this in one place makes every backend agree
on versions, TTL and conflicts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from motia.exceptions import StateConflictError, StateValueError
from motia.state.backends.types import ORPHANED_ERROR, Record, TransactionWrite, WriteResult
from motia.state.ops import Operation, apply_operations
from motia.state.values import MAX_KEY_LENGTH, check_name, check_ttl, decode, encode

#: Builds a named tuple of :mod:`~motia.state.backends.types` without its ``__new__`` frame
#: (``_tuple(Record, (...))``, fields by position): every write makes one or two (issue 15). The one alias the
#: backends' hot paths share.
_tuple = tuple.__new__


def check_version(scope: str, key: str, current: Record | None, if_version: int | None) -> None:
    if if_version is None:
        return
    actual = current.version if current is not None else 0
    if actual != if_version:
        state = f"at version {actual}" if actual else "absent"
        raise StateConflictError(
            f"({scope!r}, {key!r}) is {state}, not at version {if_version}; nothing was written",
            expected=if_version,
            actual=actual,
        )


def plan_set(
    scope: str, key: str, current: Record | None, data: bytes, ttl: float | None, if_version: int | None, now: float
) -> tuple[Record, WriteResult]:
    check_version(scope, key, current, if_version)
    version = current.version + 1 if current is not None else 1
    record = _tuple(Record, (key, data, version, now + ttl if ttl is not None else None))
    return record, _tuple(WriteResult, (current.data if current is not None else None, data, version))


def plan_update(
    scope: str,
    key: str,
    current: Record | None,
    operations: Sequence[Operation],
    ttl: float | None,
    if_version: int | None,
    max_value_bytes: int,
    now: float,
) -> tuple[Record | None, WriteResult]:
    """The new record (``None`` when nothing is to be written) and the result.

    :func:`~motia.state.backends.sqlite.plain.run_plain` spells out the common case (no ``if_version``, some
    operations) inline for its batches: a change here is a change there too."""
    if if_version is not None:  # the common update has none: no call
        check_version(scope, key, current, if_version)
    if not operations:
        if current is None:
            return None, WriteResult(None, None, 0)
        return None, WriteResult(current.data, current.data, current.version)
    document = decode(current.data) if current is not None else {}
    data = encode(apply_operations(document, operations), max_value_bytes)
    if ttl is not None:
        expires_at: float | None = now + ttl
    else:
        expires_at = current.expires_at if current is not None else None
    version = current.version + 1 if current is not None else 1
    record = _tuple(Record, (key, data, version, expires_at))
    return record, _tuple(WriteResult, (current.data if current is not None else None, data, version))


def is_live(expires_at: float | None, now: float) -> bool:
    return expires_at is None or expires_at > now


def plan_transaction_write(current: Record | None, write: TransactionWrite, now: float) -> Record | None:
    """The record a transaction's write leaves (``None``: the key is deleted)."""
    if write.data is None:
        return None
    if write.ttl is not None:
        expires_at: float | None = now + write.ttl
    else:
        expires_at = current.expires_at if write.keep_expiry and current is not None else None
    version = current.version + 1 if current is not None else 1
    return Record(write.key, write.data, version, expires_at)


def plan_restore(
    current: Record | None, key: str, data: bytes, version: int | None, expires_at: float | None
) -> Record:
    """The record a restore writes: the given version, or the next one as a plain write would."""
    if version is None:
        version = current.version + 1 if current is not None else 1
    return Record(key, data, version, expires_at)


# -- named leases and retention: argument checks and texts every backend shares ------------------------


def check_lease(name: object, owner: object) -> None:
    """Raise :class:`StateValueError` unless ``name`` and ``owner`` are usable (non-empty UTF-8 ``str``):
    the runtime calls the backend directly, so the checks the manager makes for keys are made here."""
    check_name("lease name", name, MAX_KEY_LENGTH)
    check_name("lease owner", owner, MAX_KEY_LENGTH)


def check_lease_ttl(ttl: object) -> float:
    """A lease's ttl: a positive finite number of seconds (never ``None``: a lease always expires)."""
    checked = check_ttl(ttl)
    if checked is None:
        raise StateValueError("a lease's ttl must be a positive number of seconds, not None")
    return checked


def check_steps(steps: object) -> list[str]:
    """The step names of :meth:`~motia.state.backends.base.StateBackend.touch_steps`, checked; a lone
    ``str`` is refused (it would be read as one step per character)."""
    if isinstance(steps, str | bytes) or not isinstance(steps, Sequence | set | frozenset):
        raise StateValueError(f"steps must be a sequence of step names, not {type(steps).__name__}")
    return [check_name("step name", step, MAX_KEY_LENGTH) for step in steps]


def check_age(kind: str, age: object) -> float | None:
    """A retention age: ``None`` (skip that part) or a finite number of seconds, at least 0."""
    if age is None:
        return None
    if isinstance(age, bool) or not isinstance(age, int | float) or not math.isfinite(age) or age < 0:
        raise StateValueError(f"{kind} must be None or a number of seconds >= 0, not {age!r}")
    return float(age)


def check_limit(kind: str, limit: object) -> int | None:
    """A retention count: ``None`` (skip that part) or an ``int`` >= 0."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise StateValueError(f"{kind} must be None or an int >= 0, not {limit!r}")
    return limit


def orphaned_error(step: str, seen_at: float) -> str:
    """The error of a delivery retention moved to the dead letters (its step last seen at ``seen_at``),
    worded alike by every backend."""
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seen_at))
    return ORPHANED_ERROR.format(step=step, since=since)
