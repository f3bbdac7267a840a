"""The stream server's limits, with their defaults and the environment variables that change them.

One place for them so that ``motia run`` can be tuned without code: a deployment with big groups raises
the queue, a public one lowers the subscriptions per connection. Bad values stop the start with a
:class:`~motia.exceptions.ConfigError` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import ClassVar

from motia.exceptions import ConfigError
from motia.streams.protocol import MAX_FRAME_BYTES

__all__ = [
    "DEFAULT_MAX_SUBSCRIPTIONS",
    "DEFAULT_QUEUE_BYTES",
    "DEFAULT_QUEUE_LIMIT",
    "MAX_FRAME_BYTES",
    "StreamLimits",
]

#: Messages a subscriber may have waiting before it is closed as too slow.
DEFAULT_QUEUE_LIMIT = 1000
#: ... and their total size (a single message larger than this still goes out, alone).
DEFAULT_QUEUE_BYTES = 8 * 1024 * 1024
#: Subscriptions one connection may hold.
DEFAULT_MAX_SUBSCRIPTIONS = 100


@dataclass(frozen=True)
class StreamLimits:
    """What one connection may cost the server. Every value is a positive int."""

    queue_limit: int = DEFAULT_QUEUE_LIMIT  #: messages waiting for a connection before it is closed (1013)
    queue_bytes: int = DEFAULT_QUEUE_BYTES  #: their total size
    max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS  #: per connection (``TOO_MANY_SUBSCRIPTIONS`` past it)
    max_frame_bytes: int = MAX_FRAME_BYTES  #: a client frame's size (closed with 1009 past it)

    ENV: ClassVar[dict[str, str]] = {
        "queue_limit": "MOTIA_STREAM_QUEUE_LIMIT",
        "queue_bytes": "MOTIA_STREAM_QUEUE_BYTES",
        "max_subscriptions": "MOTIA_STREAM_MAX_SUBSCRIPTIONS",
        "max_frame_bytes": "MOTIA_STREAM_MAX_FRAME_BYTES",
    }

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"stream limit {field.name} must be a positive int, not {value!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StreamLimits:
        """The defaults, overridden by ``MOTIA_STREAM_QUEUE_LIMIT``, ``MOTIA_STREAM_QUEUE_BYTES``,
        ``MOTIA_STREAM_MAX_SUBSCRIPTIONS`` and ``MOTIA_STREAM_MAX_FRAME_BYTES``."""
        env = os.environ if environ is None else environ
        values: dict[str, int] = {}
        for name, variable in cls.ENV.items():
            text = env.get(variable)
            if not text:
                continue
            try:
                value = int(text)
            except ValueError:
                raise ConfigError(f"${variable} must be a positive integer, got {text!r}") from None
            if value < 1:
                raise ConfigError(f"${variable} must be a positive integer, got {text!r}")
            values[name] = value
        return cls(**values)
