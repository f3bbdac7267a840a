"""Who is connecting to a stream: ``stream_authenticate`` from ``motia_config.py``, and the token.

A project may define, in ``motia_config.py`` in its directory (where ``motia run`` is started)::

    def stream_authenticate(request):        # or async def
        if request.token != expected:
            raise PermissionError("bad token")  # refused: WebSocket close 4401, SSE 401
        return {"user": "ann"}                  # the auth_context can_access / on_join / on_leave get
                                                # (None: anonymous)

``request`` is a :class:`StreamAuthRequest`. motia-py 1.0's forms are understood too: a hook taking
``(request, ctx)``, and a result ``False`` (refused), ``True`` (anonymous) or an object with ``authorized``
and ``context`` (``StreamAuthResult``). The token is taken, in this order, from the
``Sec-WebSocket-Protocol: Authorization, <token>`` header (what browsers can send; the server then selects
the ``Authorization`` subprotocol, as browsers require), the ``authToken`` query parameter, or an
``Authorization: Bearer <token>`` header. Authentication fails closed: an exception refuses the connection.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from motia.exceptions import ConfigError
from motia.runtime.project_config import CONFIG_MODULE, load_project_config
from motia.runtime.streams.hooks import call_hook

__all__ = [
    "AUTH_SUBPROTOCOL",
    "CLOSE_UNAUTHORIZED",
    "Authenticate",
    "StreamAuthRequest",
    "StreamAuthRefused",
    "authenticate",
    "extract_token",
    "load_stream_authenticate",
    "mask_tokens_in_server_logs",
    "select_subprotocol",
]

log = logging.getLogger("motia.streams")

#: The subprotocol a browser offers (``new WebSocket(url, ["Authorization", token])``) to carry a token.
AUTH_SUBPROTOCOL = "Authorization"
#: WebSocket close code of a refused connection (HTTP 401's counterpart).
CLOSE_UNAUTHORIZED = 4401

#: ``stream_authenticate(request) -> auth_context | None`` (sync or async; or ``(request, ctx)``).
Authenticate = Callable[..., Any]


@dataclass(frozen=True)
class StreamAuthRequest:
    """What ``stream_authenticate`` sees of a connection: ``headers`` and ``query_params`` (mappings;
    header names are case-insensitive), the full ``url``, the ``token`` found (or ``None``), and, as
    motia-py 1.0 names them, the ``path`` and the client's ``addr`` (``host:port``)."""

    headers: Mapping[str, str]
    query_params: Mapping[str, str]
    url: str
    token: str | None
    path: str = "/"
    addr: str = ""


#: motia-py 1.0's name for the request ``stream_authenticate`` gets.
StreamAuthInput = StreamAuthRequest


class StreamAuthResult(BaseModel):
    """motia-py 1.0's answer of an authentication hook: refused unless ``authorized``; ``context`` is the
    auth context ``can_access`` and the presence hooks then see. Returning the context itself (or
    ``None``) works too."""

    authorized: bool
    context: Any = None


class StreamAuthRefused(Exception):
    """``stream_authenticate`` refused the connection (it raised); the reason is logged, not sent."""


def _protocols(headers: Mapping[str, str]) -> list[str]:
    header = headers.get("sec-websocket-protocol") or ""
    return [part.strip() for part in header.split(",") if part.strip()]


def extract_token(headers: Mapping[str, str], query_params: Mapping[str, str]) -> str | None:
    """The token of a connection: subprotocol ``Authorization, <token>``, ``?authToken=``, or bearer."""
    protocols = _protocols(headers)
    for index, protocol in enumerate(protocols[:-1]):
        if protocol.lower() == AUTH_SUBPROTOCOL.lower():
            return protocols[index + 1]
    token = query_params.get("authToken")
    if token:
        return token
    scheme, _, credentials = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def select_subprotocol(offered: Sequence[str]) -> str | None:
    """The subprotocol to accept: ``Authorization`` when offered (spelled as offered), else none (a
    browser fails the handshake when a subprotocol it offered is not selected)."""
    for protocol in offered:
        if protocol.lower() == AUTH_SUBPROTOCOL.lower():
            return protocol
    return None


async def authenticate(
    hook: Authenticate | None,
    headers: Mapping[str, str],
    query_params: Mapping[str, str],
    url: str,
    *,
    path: str = "/",
    addr: str = "",
    context: Callable[[], Any] | None = None,
) -> Any:
    """The connection's auth context: ``None`` (anonymous) without a hook, else what the hook returns.
    Raises :class:`StreamAuthRefused` when the hook raises or refuses (never fail open). ``context()``
    makes the ``ctx`` of a hook that takes two arguments (motia-py 1.0's ``authenticate(input, ctx)``)."""
    if hook is None:
        return None
    request = StreamAuthRequest(headers, query_params, url, extract_token(headers, query_params), path, addr)
    try:
        if _positional_arity(hook) >= 2:
            result = await call_hook(hook, request, None if context is None else context())
        else:
            result = await call_hook(hook, request)
    except Exception as exc:
        log.info("stream connection refused by stream_authenticate: %s: %s", type(exc).__name__, exc)
        raise StreamAuthRefused(str(exc)) from exc
    if result is False:
        raise StreamAuthRefused("stream_authenticate returned False")
    if result is True:
        return None
    authorized = getattr(result, "authorized", None)
    if isinstance(authorized, bool):  # motia-py 1.0's StreamAuthResult(authorized, context)
        if not authorized:
            raise StreamAuthRefused("stream_authenticate did not authorize the connection")
        return getattr(result, "context", None)
    return result


def _positional_arity(hook: Callable[..., Any]) -> int:
    try:
        parameters = inspect.signature(hook).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: call it with the request alone
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return 1
    return sum(1 for p in parameters if p.kind in kinds)


def load_stream_authenticate(project_dir: str | Path) -> Authenticate | None:
    """``stream_authenticate`` of ``project_dir/motia_config.py``, or ``None`` when there is no such file
    or function. A file that fails to import, or a ``stream_authenticate`` that is not callable, raises
    :class:`ConfigError` naming the file: a project that meant to protect its streams does not start open.
    """
    path = Path(project_dir) / f"{CONFIG_MODULE}.py"
    module = load_project_config(project_dir)
    if module is None:
        return None
    hook = getattr(module, "stream_authenticate", None)
    if hook is not None and not callable(hook):
        raise ConfigError(f"stream_authenticate in {path} must be a function, not {type(hook).__name__}")
    return hook


_TOKEN_IN_QUERY = re.compile(r"(authToken=)[^&\s\"']*")


class _MaskTokens(logging.Filter):
    """Masks ``authToken=...`` in log records: uvicorn logs each WebSocket's path with its query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "authToken=" in a for a in record.args):
            record.args = tuple(_TOKEN_IN_QUERY.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str) and "authToken=" in record.msg:
            record.msg = _TOKEN_IN_QUERY.sub(r"\1***", record.msg)
        return True


_mask = _MaskTokens()


def mask_tokens_in_server_logs() -> None:
    """Keep stream tokens sent as ``?authToken=`` out of the server's logs (idempotent)."""
    for name in ("uvicorn.error", "uvicorn.access"):
        server_log = logging.getLogger(name)
        if _mask not in server_log.filters:
            server_log.addFilter(_mask)
