"""Backends load lazily (STYLE.md 4): importing motia imports no optional dependency, ``MemoryBackend`` comes
with ``motia.state.backends``, the others on first use, and a missing redis-py is reported saying what to
install (pymotia[redis], pymotia[postgres]). Each case runs in a fresh interpreter, so that nothing imported
earlier in the session hides a fault.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_child(code: str) -> str:
    """Runs ``code`` in a fresh interpreter and returns its output (failing on a non-zero exit)."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_importing_motia_imports_no_optional_backend():
    # Given a fresh interpreter
    # When it imports motia and the backends package
    output = run_child(
        """
        import sys
        import motia
        from motia.state.backends import MemoryBackend
        optional = ("redis", "asyncpg", "psycopg", "motia.state.backends.redis", "motia.state.backends.sqlite",
                    "motia.state.backends.postgres")
        print(sorted(name for name in optional if name in sys.modules))
        from motia.state.backends import SQLiteBackend
        print(SQLiteBackend.__module__)
        print(sorted(name for name in ("asyncpg", "motia.state.backends.postgres") if name in sys.modules))
        from motia.state.backends import PostgresBackend
        print(PostgresBackend.__module__)
        """
    )
    # Then neither redis-py, asyncpg nor the SQLite, Redis and PostgreSQL backends were imported until asked for
    assert output.splitlines() == [
        "[]",
        "motia.state.backends.sqlite.backend",
        "[]",
        "motia.state.backends.postgres.backend",
    ]


def test_a_missing_redis_package_is_reported_with_what_to_install():
    # Given an interpreter where redis-py is not installed
    output = run_child(
        """
        import sys
        sys.modules["redis"] = None  # as if pymotia[redis] were not installed: importing it fails
        from motia import ConfigError, StateManager
        from motia.state.backends import MemoryBackend
        try:
            from motia.state.backends import RedisBackend
        except ImportError as exc:
            print("import:", exc)
        try:
            StateManager.from_url("redis://127.0.0.1:1/0")
        except ConfigError as exc:
            print("open:", exc)
        """
    )
    # When the Redis backend is imported or a redis:// store opened, Then each error says what to install
    lines = output.splitlines()
    assert len(lines) == 2, output
    assert lines[0].startswith("import: ") and "pip install 'pymotia[redis]'" in lines[0]
    assert lines[1].startswith("open: ") and "pip install 'pymotia[redis]'" in lines[1]


def test_a_missing_asyncpg_package_is_reported_with_what_to_install():
    # Given an interpreter where asyncpg is not installed
    output = run_child(
        """
        import sys
        sys.modules["asyncpg"] = None  # as if pymotia[postgres] were not installed: importing it fails
        from motia import ConfigError, StateManager
        try:
            from motia.state.backends import PostgresBackend
        except ImportError as exc:
            print("import:", exc)
        try:
            StateManager.from_url("postgresql://u:secret@127.0.0.1:1/db")
        except ConfigError as exc:
            print("open:", exc)
        """
    )
    # When the PostgreSQL backend is imported or a postgresql:// store opened, Then each error says what to install
    lines = output.splitlines()
    assert len(lines) == 2, output
    assert lines[0].startswith("import: ") and "pip install 'pymotia[postgres]'" in lines[0]
    assert lines[1].startswith("open: ") and "pip install 'pymotia[postgres]'" in lines[1]
    assert "secret" not in output
