"""What every console endpoint shares: the client error it raises and the parsing of query parameters.

Kept apart from :mod:`motia.console.routes` so that the endpoint modules (state in ``routes``, streams in
:mod:`motia.console.streams`) use one definition without importing each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from motia.runtime.http import parse_json

__all__ = ["ApiError", "Endpoint", "json_body", "query", "query_int", "required"]

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


async def json_body(request: Request, max_body: int) -> dict[str, Any]:
    """The request's JSON object body. Writes must send JSON (``Content-Type: application/json``): a page
    of another site cannot send that without the browser asking first (CORS), so it cannot post a form into
    the console (see :mod:`motia.console.auth`)."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        raise ApiError(415, "the request body must be JSON (Content-Type: application/json)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body:
        raise ApiError(413, f"request body too large (limit {max_body} bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            raise ApiError(413, f"request body too large (limit {max_body} bytes)")
        chunks.append(chunk)
    try:
        body = parse_json(b"".join(chunks))  # the runtime's one strict parser: big ints exact, no NaN
    except ValueError as exc:
        raise ApiError(400, f"malformed JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the JSON body must be an object, not {type(body).__name__}")
    return body
