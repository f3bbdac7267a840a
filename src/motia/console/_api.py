"""What every console endpoint shares: the client error it raises and the parsing of query parameters.

Kept apart from :mod:`motia.console.routes` so that the endpoint modules (state in ``routes``, streams in
:mod:`motia.console.streams`) use one definition without importing each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["ApiError", "Endpoint", "query", "query_int", "required"]

Endpoint = Callable[[Request], Awaitable[Response]]


class ApiError(Exception):
    """A client error: answered as ``{"error": message, **extra}`` with ``status``."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def query(request: Request, name: str) -> str | None:
    """The parameter, or ``None`` when absent or empty."""
    return request.query_params.get(name) or None


def required(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise ApiError(400, f"missing query parameter {name!r}")
    return value


def query_int(request: Request, name: str, *, low: int, high: int) -> int | None:
    raw = query(request, name)
    if raw is None:
        return None
    try:
        number = int(raw)
    except ValueError:
        raise ApiError(400, f"query parameter {name!r} must be an integer, not {raw!r}") from None
    if not low <= number <= high:
        raise ApiError(400, f"query parameter {name!r} must be between {low} and {high}, not {number}")
    return number
