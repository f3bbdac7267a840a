"""Keyed flow control of a queue step: a concurrency limit per key and a rate limit, across instances.

``queue("orders", config={"concurrency": {"key": "userId", "limit": 1}})``: at most ``limit`` handlers
of the step for one key at once, in every instance on the store, the waiting messages of a key handled
in order. ``queue("mail", config={"rate_limit": {"limit": 10, "period": 60, "key": "to.domain"}})``
(``rateLimit`` too; ``key`` optional: the whole step): at most ``limit`` handler starts per ``period``
seconds per key. How the runtime enforces them: :mod:`motia.runtime.flow_control`.

A key is a dotted path into the message data (``"user.id"``; a list index is a number: ``"items.0"``),
or a function of the data returning the key. Its value must be a non-empty ``str`` or an ``int``: a
message whose key is missing, ``None`` or of another type is refused at ``enqueue`` with
:class:`~motia.exceptions.EnqueueError` (nothing sent), as a FIFO message without a ``messageGroupId``
is, so that no message slips past a limit unnoticed.

Pure: parsing and key extraction, no I/O; every bad value is a :class:`~motia.exceptions.ConfigError`
naming the trigger and the key when the step is declared.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from motia.exceptions import ConfigError, EnqueueError
from motia.state.backends.types import MAX_ORDER_SLOTS

__all__ = ["FlowKey", "KeyConcurrency", "RateLimit", "parse_key_concurrency", "parse_rate_limit"]

#: The longest key value (it becomes part of an order key and a state key).
MAX_KEY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class FlowKey:
    """Where a message's flow-control key comes from: a dotted ``path`` into its data, or a ``function``
    of the data. ``name`` is how messages and logs spell it."""

    path: tuple[str, ...] = ()
    function: Callable[[Any], Any] | None = None

    @property
    def name(self) -> str:
        if self.function is not None:
            return getattr(self.function, "__qualname__", repr(self.function))
        return ".".join(self.path)

    def of(self, data: Any) -> str:
        """The key of a message's ``data`` as a str; :class:`EnqueueError` when it is missing, ``None``,
        not a non-empty str or int, or the function raised."""
        if self.function is not None:
            try:
                value = self.function(data)
            except Exception as exc:
                raise EnqueueError(f"the flow-control key function {self.name} raised {exc!r}") from exc
        else:
            value = data
            for part in self.path:
                if isinstance(value, Mapping):
                    value = value.get(part)
                elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                    value = value[int(part)]
                else:
                    value = None
                if value is None:
                    break
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise EnqueueError(
                f"the message has no usable flow-control key {self.name!r} (got {value!r}): it must be a "
                "non-empty str or an int"
            )
        text = str(value)
        if len(text) > MAX_KEY_LENGTH:
            raise EnqueueError(f"the flow-control key {self.name!r} is over {MAX_KEY_LENGTH} characters")
        return text


@dataclass(frozen=True, slots=True)
class KeyConcurrency:
    """At most ``limit`` handlers at once per value of ``key``, across instances."""

    key: FlowKey
    limit: int


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` handler starts per ``period`` seconds, per value of ``key`` (``None``: per step)."""

    limit: int
    period: float
    key: FlowKey | None = None


def _key(value: object, *, what: str, name: str) -> FlowKey:
    if callable(value):
        return FlowKey(function=value)
    if isinstance(value, str) and value and all(value.split(".")):
        return FlowKey(path=tuple(value.split(".")))
    raise ConfigError(
        f"{what}: {name}.key must be a dotted path into the message data ('userId', 'user.id') or a function "
        f"of the data, got {value!r}"
    )


def _limit(value: object, *, what: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what}: {name}.limit must be an int >= 1, got {value!r}")
    return value


def _fields(value: Mapping[Any, Any], *, what: str, name: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    unknown = [key for key in value if key not in allowed]
    if unknown:
        raise ConfigError(f"{what}: unknown {name} key {unknown[0]!r} (expected {', '.join(allowed)})")
    return dict(value)


def parse_key_concurrency(value: Mapping[Any, Any], *, what: str) -> KeyConcurrency:
    """``{"key": ..., "limit": n}`` (both required; ``n`` at most :data:`MAX_ORDER_SLOTS`) as a
    :class:`KeyConcurrency`."""
    fields = _fields(value, what=what, name="concurrency", allowed=("key", "limit"))
    if "key" not in fields or "limit" not in fields:
        raise ConfigError(f"{what}: concurrency as a dict needs both 'key' and 'limit', got {dict(value)!r}")
    limit = _limit(fields["limit"], what=what, name="concurrency")
    if limit > MAX_ORDER_SLOTS:
        raise ConfigError(f"{what}: concurrency.limit is at most {MAX_ORDER_SLOTS} per key, got {limit}")
    return KeyConcurrency(_key(fields["key"], what=what, name="concurrency"), limit)


def parse_rate_limit(value: object, *, what: str) -> RateLimit | None:
    """``{"limit": n, "period": seconds, "key": ...}`` (``key`` optional) as a :class:`RateLimit`."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what}: rate_limit must be a dict {{'limit': n, 'period': seconds}}, got {value!r}")
    fields = _fields(value, what=what, name="rate_limit", allowed=("limit", "period", "key"))
    if "limit" not in fields or "period" not in fields:
        raise ConfigError(f"{what}: rate_limit needs both 'limit' and 'period', got {dict(value)!r}")
    period = fields["period"]
    if isinstance(period, bool) or not isinstance(period, int | float) or not math.isfinite(period) or period <= 0:
        raise ConfigError(f"{what}: rate_limit.period must be a number of seconds > 0, got {period!r}")
    key = fields.get("key")
    return RateLimit(
        _limit(fields["limit"], what=what, name="rate_limit"),
        float(period),
        None if key is None else _key(key, what=what, name="rate_limit"),
    )
