"""State URLs: which backend, where, with which options.

``sqlite:///relative/path.db`` (relative to the working directory), ``sqlite:////absolute/path.db``,
``memory://`` (a fresh private store each time it is opened), with ``pymotia[redis]``
``redis://host:port/db``, and with ``pymotia[postgres]`` ``postgresql://user:password@host:port/database``
(or ``postgres://``; options ``schema``, ``sslmode``, ``timeout``). Query parameters are backend options (``sqlite:///x.db?durability=full``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from motia.exceptions import ConfigError
from motia.state.backends.base import StateBackend
from motia.state.backends.memory import MemoryBackend
from motia.state.masking import mask_url

#: The environment variable that overrides the default state URL.
STATE_URL_ENV = "MOTIA_STATE_URL"
#: Where the default SQLite file lives, relative to the project directory.
DEFAULT_STATE_PATH = Path(".motia") / "state.db"

__all__ = ["DEFAULT_STATE_PATH", "STATE_URL_ENV", "default_state_url", "mask_url", "open_backend", "sqlite_path"]

_SQLITE_OPTIONS = {"durability": str, "timeout": float}


def default_state_url(project_dir: str | os.PathLike[str] | None = None) -> str:
    """``MOTIA_STATE_URL`` if set, else the SQLite file ``.motia/state.db`` under ``project_dir`` (or cwd)."""
    configured = os.environ.get(STATE_URL_ENV)
    if configured:
        return configured
    base = Path(project_dir) if project_dir is not None else Path.cwd()
    return f"sqlite:///{(base / DEFAULT_STATE_PATH).absolute()}"


def open_backend(url: str, **options: Any) -> StateBackend:
    """Open the backend named by ``url``; ``options`` override the URL's query parameters."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(
            f"invalid state URL {url!r}: expected sqlite:///path.db, memory://, redis://host:port/db or postgresql://host/db"
        )
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if scheme == "memory":
        _reject_unknown(url, {**query, **options}, {"clock"})
        return MemoryBackend(**options)
    if scheme == "sqlite":
        from motia.state.backends.sqlite import SQLiteBackend  # lazy: a backend loads when a URL names it

        path = _sqlite_path_text(url)
        if not path:
            raise ConfigError(f"invalid state URL {url!r}: no file path (expected sqlite:///path/to/state.db)")
        merged: dict[str, Any] = {}
        for name, raw in query.items():
            if name not in _SQLITE_OPTIONS:
                _reject_unknown(url, {name: raw}, set(_SQLITE_OPTIONS))
            try:
                merged[name] = _SQLITE_OPTIONS[name](raw)
            except ValueError:
                raise ConfigError(f"invalid state URL {url!r}: {name}={raw!r} is not valid") from None
        merged.update(options)
        _reject_unknown(url, merged, {*_SQLITE_OPTIONS, "clock", "sweep_interval"})
        return SQLiteBackend(path, **merged)
    if scheme in ("redis", "rediss"):
        from motia.state.backends.redis import RedisBackend  # lazy: needs the optional redis package

        _reject_unknown(url, options, {"clock", "prefix", "timeout"})
        return RedisBackend(url, **options)
    if scheme in ("postgresql", "postgres"):
        from motia.state.backends.postgres.settings import parse_url  # lazy: only when a URL names it

        parse_url(url)  # bad options are a ConfigError before the driver is looked for
        from motia.state.backends.postgres import PostgresBackend

        _reject_unknown(url, options, {"clock", "schema", "timeout"})
        return PostgresBackend(url, **options)
    raise ConfigError(
        f"unknown state URL scheme {parts.scheme!r} in {mask_url(url)!r}: "
        "use sqlite:///, memory://, redis:// or postgresql://"
    )


def sqlite_path(url: str) -> Path | None:
    """The file a ``sqlite:///`` URL names (relative to the working directory unless absolute), else ``None``."""
    if urlsplit(url).scheme.lower() != "sqlite":
        return None
    return Path(_sqlite_path_text(url))


def _sqlite_path_text(url: str) -> str:
    path = unquote(url.split("://", 1)[1].split("?", 1)[0])
    return path[1:] if path.startswith("/") else path  # sqlite:////abs/x.db keeps its leading slash


def _reject_unknown(url: str, given: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for state URL {mask_url(url)!r} (known: {known})")
