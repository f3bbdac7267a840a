"""The state backends: :class:`MemoryBackend` (for tests and local dev), :class:`SQLiteBackend` (the embedded
default), :class:`RedisBackend` (``pymotia[redis]``) and :class:`PostgresBackend` (``pymotia[postgres]``), each
behind the contracts of :mod:`motia.state.backends.base`.

``MemoryBackend`` is imported with this package; the others load on first use, so that importing motia
never imports a backend it does not use, and a missing optional dependency is reported when its backend is
asked for, saying what to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from motia.state.backends.memory import MemoryBackend

if TYPE_CHECKING:
    from motia.state.backends.postgres import PostgresBackend
    from motia.state.backends.redis import RedisBackend
    from motia.state.backends.sqlite import SQLiteBackend

__all__ = ["MemoryBackend", "PostgresBackend", "RedisBackend", "SQLiteBackend"]


def __getattr__(name: str) -> Any:
    if name == "SQLiteBackend":
        from motia.state.backends.sqlite import SQLiteBackend

        return SQLiteBackend
    if name == "RedisBackend":
        try:
            import redis  # noqa: F401  (the optional dependency, checked before the backend is handed out)
        except ImportError:
            raise ImportError(
                "RedisBackend needs the redis package, an optional dependency: pip install 'pymotia[redis]'"
            ) from None
        from motia.state.backends.redis import RedisBackend

        return RedisBackend
    if name == "PostgresBackend":
        try:
            import asyncpg  # noqa: F401  (the optional dependency, checked before the backend is handed out)
        except ImportError:
            raise ImportError(
                "PostgresBackend needs the asyncpg package, an optional dependency: pip install 'pymotia[postgres]'"
            ) from None
        from motia.state.backends.postgres import PostgresBackend

        return PostgresBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
