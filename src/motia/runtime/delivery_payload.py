"""What the delivery worker reads from a delivery's payload besides the handler's input, and what it keeps of a
failed attempt: the writer's ``traceparent``, the error text (split from :mod:`motia.runtime.delivery`)."""

from __future__ import annotations

import traceback

__all__ = ["MAX_ERROR_CHARS", "attempt_error", "traceparent"]

#: Longest error text kept with a retried or dead-lettered delivery.
MAX_ERROR_CHARS = 8000


def attempt_error(exc: BaseException) -> str:
    """The traceback text kept with a retried or dead-lettered delivery, its middle cut past ``MAX_ERROR_CHARS``."""
    text = "".join(traceback.format_exception(exc))
    return (
        text
        if len(text) <= MAX_ERROR_CHARS
        else text[: MAX_ERROR_CHARS // 2] + "\n...\n" + text[-MAX_ERROR_CHARS // 2 :]
    )


_TRACEPARENT = b',"traceparent":"'
_TRACEPARENT_LENGTH = 55  # "00-<32 hex>-<16 hex>-<2 hex>"


def traceparent(payload: bytes) -> str | None:
    """The ``traceparent`` a delivery's payload carries: its last field when the writer was traced (queue
    messages, state events). Read from its fixed place at the end, without decoding the payload again and
    never from inside the data (which may hold a key of that name)."""
    end = len(payload) - 2  # before the closing '"}'
    start = end - _TRACEPARENT_LENGTH
    if payload[end:] != b'"}' or payload[start - len(_TRACEPARENT) : start] != _TRACEPARENT:
        return None
    return payload[start:end].decode("ascii", "replace")
