"""Handler return values to HTTP responses: ``to_response``, the JSON fast path, ``JSONResponse``.

Moved out of :mod:`motia.runtime.http` (which re-exports every name) so the routes stay one concept.
The common answer, a JSON body with no headers of the handler's, skips building a Starlette
``Response``: :func:`plain_json` gives its status and bytes and the route sends them itself (issue 15).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.responses import Response

from motia.runtime.types import ApiResponse

__all__ = ["JSONResponse", "encode_json", "error_response", "plain_json", "to_response"]

logger = logging.getLogger("motia.http")


class JSONResponse(Response):
    """A JSON response encoded with orjson (fast, and handles dataclasses and datetimes); ints beyond
    64 bits, which orjson refuses, go through the standard library. The one JSON response of the
    runtime and the console, so both answer the same bytes for the same value."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return encode_json(content)


def encode_json(content: Any) -> bytes:
    """The bytes of every JSON response: orjson, and the standard library for ints beyond 64 bits."""
    try:
        return orjson.dumps(content, default=_default)
    except orjson.JSONEncodeError as exc:
        if "64-bit" not in str(exc):
            raise
        # allow_nan=False: never answer NaN/Infinity, which no JSON parser reads back.
        text = json.dumps(content, default=_default, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text.encode()


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def error_response(status: int, message: str, trace_id: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"error": message, **extra}
    headers = None
    if trace_id is not None:
        body["trace_id"] = trace_id
        headers = {"x-trace-id": trace_id}
    return JSONResponse(body, status_code=status, headers=headers)


_RESPONSE_KEYS = frozenset({"status", "body", "headers"})
#: Statuses that never carry a body, besides 1xx.
_BODYLESS = frozenset({204, 304})


def plain_json(result: Any) -> tuple[int, bytes] | None:
    """``(status, JSON bytes)`` when ``result`` is the common answer (a JSON body, a status with a body,
    no headers of the handler's), which :meth:`StepRoute.serve` sends without building a ``Response``;
    ``None`` for everything else, which :func:`to_response` turns into one (and checks)."""
    if type(result) is dict:
        if "status" not in result or result.get("headers") or not _RESPONSE_KEYS.issuperset(result):
            return None
        status, body = result["status"], result.get("body")
    elif type(result) is ApiResponse:
        if result.headers:
            return None
        status, body = result.status, result.body
    else:
        return None
    # No body, bytes and text (sent as they are), and statuses sent without a body or length: to_response.
    if type(status) is not int or not 200 <= status <= 599 or status in (204, 304):
        return None
    if body is None or isinstance(body, str | bytes | bytearray):
        return None
    return status, encode_json(body)


def to_response(result: Any, trace_id: str | None = None) -> Response:
    """Turn a handler's return value (``ApiResponse``, ``{"status", "body", "headers"}``, ``None``) into a response.

    ``None`` answers 204. Anything else is a programming error and raises ``TypeError`` (→ 500).
    ``trace_id`` is sent as the ``x-trace-id`` header.
    """
    if result is None:
        return Response(status_code=204, headers={"x-trace-id": trace_id} if trace_id else None)
    if isinstance(result, ApiResponse):
        status, body, headers = result.status, result.body, dict(result.headers or {})
    elif isinstance(result, dict) and "status" in result and _RESPONSE_KEYS.issuperset(result):
        status, body, headers = result["status"], result.get("body"), dict(result.get("headers") or {})
    else:
        raise TypeError(
            "an HTTP handler must return {'status': ..., 'body': ..., 'headers': ...} or ApiResponse, "
            f"got {result!r:.200}"
        )
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise TypeError(f"response status must be an int between 100 and 599, got {status!r}")
    headers = {str(k): str(v) for k, v in headers.items()}
    if trace_id:
        headers["x-trace-id"] = trace_id
    if status < 200 or status in _BODYLESS:
        # HTTP forbids a body here (RFC 9110 15.3.5, 15.4.5): sending one breaks the connection, and the
        # server refuses it ("Response content longer than Content-Length"). The headers (an ETag) stay.
        if body not in (None, "", b""):
            logger.warning("a %d response has no body: the handler's body was not sent", status)
        return Response(status_code=status, headers=headers)
    if body is None:
        return Response(status_code=status, headers=headers)
    if isinstance(body, bytes | bytearray):
        return Response(
            bytes(body),
            status_code=status,
            headers=headers,
            media_type=None if _has(headers, "content-type") else "application/octet-stream",
        )
    if isinstance(body, str) and _has(headers, "content-type") and "json" not in _get(headers, "content-type"):
        return Response(body, status_code=status, headers=headers)
    return JSONResponse(body, status_code=status, headers=headers)


def _has(headers: dict[str, str], name: str) -> bool:
    return any(k.lower() == name for k in headers)


def _get(headers: dict[str, str], name: str) -> str:
    return next(v for k, v in headers.items() if k.lower() == name)
