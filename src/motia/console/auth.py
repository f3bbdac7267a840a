"""Who may use the console: loopback-only without a token, a bearer token (or its cookie) with one.

Without a token the console answers only requests addressed to a loopback host name (``Host:
localhost``/``127.0.0.1``/``[::1]``), which defeats DNS rebinding: a web page cannot make a browser talk
to ``127.0.0.1`` under its own domain name. Writes must send JSON, and a cross-origin ``Origin`` is
refused, so another site cannot post forms into the store. With a token every request must carry it as
``Authorization: Bearer TOKEN`` or in the cookie that opening ``/__motia?token=TOKEN`` sets.
"""

from __future__ import annotations

import ipaddress
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from motia.exceptions import ConfigError
from motia.runtime.http import JSONResponse

__all__ = ["COOKIE_NAME", "TOKEN_ENV", "ConsoleAuth", "check_console_bind", "is_loopback"]

#: The environment variable read for ``--console-token``.
TOKEN_ENV = "MOTIA_CONSOLE_TOKEN"
#: The cookie holding the token once ``/__motia?token=...`` was opened.
COOKIE_NAME = "motia_console_token"

_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an interface to bind or a ``Host`` name, no port) is this machine only."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_console_bind(host: str, token: str | None) -> None:
    """Refuse to serve the console on a non-loopback interface without a token (a start-up error)."""
    if token is not None and (not token or any(c.isspace() for c in token)):
        raise ConfigError("the console token must be a non-empty string without whitespace")
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"the console would be reachable from other machines on --host {host} without a token: "
            "pass --console-token TOKEN (or set MOTIA_CONSOLE_TOKEN), or --no-console"
        )


def _host_name(authority: str) -> str:
    """``example.com:3111`` -> ``example.com``; ``[::1]:3111`` -> ``::1``."""
    return urlsplit(f"//{authority}").hostname or ""


class ConsoleAuth:
    """Checks every console request; ``token=None`` means loopback-only access."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def _token_matches(self, candidate: str | None) -> bool:
        if self.token is None or candidate is None:
            return False
        return secrets.compare_digest(candidate.encode(), self.token.encode())

    def check(self, request: Request) -> Response | None:
        """``None`` if ``request`` may proceed, else the error response to send."""
        if self.token is not None:
            header = request.headers.get("authorization", "")
            scheme, _, credentials = header.partition(" ")
            bearer = credentials.strip() if scheme.lower() == "bearer" else None
            cookie = request.cookies.get(COOKIE_NAME)
            if not (self._token_matches(bearer) or self._token_matches(cookie)):
                message = "wrong console token" if bearer or cookie else "console token required"
                return JSONResponse(
                    {"error": f"{message}: send 'Authorization: Bearer TOKEN' or open /__motia?token=TOKEN"},
                    status_code=401,
                    headers={"www-authenticate": 'Bearer realm="motia console"'},
                )
        elif not is_loopback(_host_name(request.headers.get("host", ""))):
            return JSONResponse(
                {"error": "the console without a token answers only requests addressed to localhost"},
                status_code=403,
            )
        if request.method in _UNSAFE_METHODS:
            origin = request.headers.get("origin")
            if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
                return JSONResponse({"error": f"cross-origin request from {origin} refused"}, status_code=403)
        return None

    def login(self, request: Request) -> Response | None:
        """For the page: ``?token=`` that matches sets the cookie and redirects to the clean URL."""
        given = request.query_params.get("token")
        if given is None or self.token is None:
            return None
        if not self._token_matches(given):
            return JSONResponse({"error": "wrong console token"}, status_code=401)
        response = Response(status_code=303, headers={"location": "/__motia/"})
        response.set_cookie(
            COOKIE_NAME, given, path="/__motia", httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )
        return response
