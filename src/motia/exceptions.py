"""Every error pymotia raises on purpose.

One root, so ``except motia.MotiaError`` catches everything of ours and nothing else::

    MotiaError
    ├── ConfigError                  bad configuration (URL, option, step config)
    │   └── ScheduleExhausted        a cron expression has no tick left (its last year is past)
    ├── StepLoadError                a step file cannot be loaded or registered
    ├── EnqueueError                 a message cannot be enqueued (nothing was sent); also a ValueError
├── MatchError                   ctx.match has no handler for the trigger (or an unknown key); also a RuntimeError
    ├── Undeliverable                a stored delivery no trigger of its step can take (dead-lettered)
    ├── HttpResponseError            a streaming HTTP response used wrongly (written after close, not bytes)
    │   └── ClientDisconnected       the client of a streaming HTTP response went away; also a ConnectionError
    ├── StreamError                  anything about streams that is not a state error
    │   ├── StreamNotFoundError      no stream of that name is declared; also a LookupError
    │   ├── StreamProtocolError      a client's stream frame is malformed; also a ValueError
    │   ├── StreamConnectionError    StreamClient cannot reach the stream server; also a ConnectionError
    │   ├── StreamAuthError          the stream server refused StreamClient's credentials (4401 / 401)
    │   └── StreamAccessDeniedError  the stream server denied a subscription (can_access); also a PermissionError
    └── StateError                   anything about state
        ├── DeadLetterNotFoundError  no dead letter of that id (to show, redrive or purge); also a LookupError
        ├── StateValueError          bad scope, key or value (not JSON, over a limit); also a ValueError
        ├── InvalidUpdateError       a malformed or inapplicable update operation; also a ValueError
        ├── StateConflictError       ``if_version`` did not match the stored version
        ├── StateClosedError         the store was used after ``aclose()``
        └── StateBackendError        the storage itself failed (driver errors are translated to this)
            ├── StateBackendUnavailable   the store cannot be opened or reached (path/URL in the message)
            └── StateTimeout              the store stayed locked or busy past the deadline

Backend drivers (``sqlite3``, ``redis``) never leak their own exceptions: each backend translates them
at its boundary, keeping the driver error as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "ClientDisconnected",
    "ConfigError",
    "DeadLetterNotFoundError",
    "EnqueueError",
    "HttpResponseError",
    "InvalidUpdateError",
    "MatchError",
    "MotiaError",
    "ScheduleExhausted",
    "StateBackendError",
    "StateBackendUnavailable",
    "StateClosedError",
    "StateConflictError",
    "StateError",
    "StateTimeout",
    "StateValueError",
    "StepLoadError",
    "StreamAccessDeniedError",
    "StreamAuthError",
    "StreamConnectionError",
    "StreamError",
    "StreamNotFoundError",
    "StreamProtocolError",
    "Undeliverable",
]


class MotiaError(Exception):
    """Raised for every error pymotia reports on purpose (the root of the hierarchy)."""


class ConfigError(MotiaError):
    """Raised when configuration (a state URL, an option, a step config) is invalid."""


class ScheduleExhausted(ConfigError):
    """Raised by ``next_fire`` when a cron expression has no tick left (a 7-field expression whose last
    year is past); the scheduler stops scheduling that job."""


class StepLoadError(MotiaError):
    """Raised when a step file cannot be imported or registered; the message names the file."""


class EnqueueError(MotiaError, ValueError):
    """Raised when a message cannot be enqueued (undeclared topic, invalid data, no subscriber under strict
    topics); nothing was sent."""


class MatchError(MotiaError, RuntimeError):
    """Raised by ``ctx.match`` when no handler is given for the run's trigger type and there is no
    ``default``, or when a key is not a trigger type (motia-py raised ``RuntimeError``, which this still is)."""


class Undeliverable(MotiaError):
    """A delivery no trigger of its step can take (the step changed since it was enqueued)."""


class HttpResponseError(MotiaError):
    """Raised when a handler's streaming HTTP response (``input.response``) is used wrongly: a write after
    ``close()``, a chunk that is neither bytes nor text, a status outside 100..599."""


class ClientDisconnected(HttpResponseError, ConnectionError):
    """Raised by a write to a streaming HTTP response whose client has gone away: nothing more can be
    sent, so the handler may stop (``input.response.disconnected`` says so without writing)."""


class StreamError(MotiaError):
    """Raised for stream problems that are not state problems (a stream item's bad value is a
    :class:`StateValueError`, as for state)."""


class StreamNotFoundError(StreamError, LookupError):
    """Raised when a stream name is not declared by any stream file or ``Stream(...)`` object."""


class StreamProtocolError(StreamError, ValueError):
    """Raised when a client's stream frame (join, leave) is malformed; the message says what is wrong.

    ``code`` is the error code the server answers with (``INVALID_MESSAGE``, ``MESSAGE_TOO_LARGE``...);
    ``stream_name``, ``group_id``, ``item_id`` and ``subscription_id`` are what could be read of the frame
    (``None`` when absent or unusable), so that the error frame reaches the right subscription.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "INVALID_MESSAGE",
        stream_name: str | None = None,
        group_id: str | None = None,
        item_id: str | None = None,
        subscription_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.stream_name = stream_name
        self.group_id = group_id
        self.item_id = item_id
        self.subscription_id = subscription_id


class StreamConnectionError(StreamError, ConnectionError):
    """Raised by :class:`~motia.streams.client.StreamClient` when the server cannot be reached (on the first
    connection, or when a bounded number of reconnect attempts ran out)."""


class StreamAuthError(StreamError):
    """Raised by :class:`~motia.streams.client.StreamClient` when the server refused its credentials
    (WebSocket close 4401, or HTTP 401/403): permanent, so it is not retried."""


class StreamAccessDeniedError(StreamError, PermissionError):
    """Raised by :class:`~motia.streams.client.StreamClient` when the server denied a subscription
    (``STREAM_ACCESS_DENIED``: the stream's ``can_access`` said no): permanent, so it is not retried."""


class StateError(MotiaError):
    """Raised for every state problem (the root of the state errors)."""


class DeadLetterNotFoundError(StateError, LookupError):
    """Raised when an operator names a dead letter that is not there (never was, already redriven or
    purged); nothing was changed. ``delivery_id`` is the id asked for."""

    def __init__(self, delivery_id: str, detail: str = "") -> None:
        self.delivery_id = delivery_id
        super().__init__(f"no dead letter {delivery_id!r}" + (f" ({detail})" if detail else ""))


class StateValueError(StateError, ValueError):
    """Raised when a scope, key or value is not acceptable; nothing was written."""


class InvalidUpdateError(StateError, ValueError):
    """Raised when an update operation is malformed or cannot apply; nothing was written.

    ``index`` is the position of the failing operation in the list and ``path`` its path (or ``None``).
    """

    def __init__(self, message: str, *, index: int | None = None, path: object = None) -> None:
        super().__init__(message)
        self.index = index
        self.path = path


class StateConflictError(StateError):
    """Raised when ``if_version`` does not match the stored version; nothing was written."""

    def __init__(self, message: str, *, expected: int, actual: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class StateClosedError(StateError):
    """Raised when a state manager or backend is used after it was closed."""


class StateBackendError(StateError):
    """Raised when the storage itself fails (disk full, I/O error, lost connection)."""


class StateBackendUnavailable(StateBackendError):
    """Raised when the store cannot be opened or reached; the message names the path or URL."""


class StateTimeout(StateBackendError):
    """Raised when the store stays locked or busy past the configured deadline."""
