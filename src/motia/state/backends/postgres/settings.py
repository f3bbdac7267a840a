"""The ``postgresql://`` URL and its options.

**URL.** ``postgresql://user:password@host:port/database`` (or ``postgres://``) with the options
``?schema=NAME`` (where the tables live, created if missing; default ``public``: every table is named
``motia_*``, so several apps share one database through different schemas), ``?timeout=SECONDS`` (how long a
call keeps retrying a lost connection before it raises, default 10) and ``?sslmode=`` (``disable``, ``allow``,
``prefer``, ``require``, ``verify-ca``, ``verify-full``; passed to asyncpg). Any other option is a
:class:`~motia.exceptions.ConfigError`. The password never appears in a message (:func:`mask_url`).
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

from motia.exceptions import ConfigError
from motia.state.masking import mask_url

#: The options a ``postgresql://`` URL may carry.
URL_OPTIONS = ("schema", "sslmode", "timeout")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DEFAULT_SCHEMA = "public"
DEFAULT_TIMEOUT = 10.0
#: The longest ``timeout``: a write's commit token must outlive its deadline (see ``COMMIT_TOKENS_KEPT``).
MAX_TIMEOUT = 450.0
#: A schema name: a plain lower-case SQL identifier, so it never needs quoting rules explained.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresSettings(NamedTuple):
    """A parsed ``postgresql://`` URL."""

    #: What asyncpg connects to: the URL without our options (password kept).
    dsn: str
    #: The URL shown in messages: password masked, our options normalised.
    url: str
    schema: str
    timeout: float
    sslmode: str | None


def parse_url(url: str, *, schema: str | None = None, timeout: float | None = None) -> PostgresSettings:
    """Check a ``postgresql://`` URL and its options; keyword arguments override the URL's query."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise ConfigError(f"not a PostgreSQL URL: {mask_url(url)!r}")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(query) - set(URL_OPTIONS))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for state URL {mask_url(url)!r} (known: {', '.join(URL_OPTIONS)})"
        )
    if schema is None:
        schema = query.get("schema", DEFAULT_SCHEMA)
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            f"invalid state URL {mask_url(url)!r}: schema must be a lower-case SQL name "
            f"(letters, digits, _; at most 63), not {schema!r}"
        )
    if timeout is None:
        try:
            timeout = float(query.get("timeout", DEFAULT_TIMEOUT))
        except ValueError:
            raise ConfigError(f"invalid state URL {mask_url(url)!r}: timeout must be a number of seconds") from None
    if not isinstance(timeout, int | float) or not 0 < timeout <= MAX_TIMEOUT:
        raise ConfigError(
            f"invalid state URL {mask_url(url)!r}: timeout must be a positive number of seconds, "
            f"at most {MAX_TIMEOUT:g}"
        )
    sslmode = query.get("sslmode")
    if sslmode is not None and sslmode not in SSL_MODES:
        raise ConfigError(
            f"invalid state URL {mask_url(url)!r}: sslmode must be one of {', '.join(SSL_MODES)}, not {sslmode!r}"
        )
    dsn = parts._replace(scheme="postgresql", query="").geturl()
    options: dict[str, str] = {}
    if schema != DEFAULT_SCHEMA:
        options["schema"] = schema
    if sslmode is not None:
        options["sslmode"] = sslmode
    if timeout != DEFAULT_TIMEOUT:
        options["timeout"] = f"{timeout:g}"
    shown = mask_url(dsn) + (f"?{urlencode(options)}" if options else "")
    return PostgresSettings(dsn, shown, schema, float(timeout), sslmode)
