"""Opening a SQLite store beside processes that create or write it never fails (issue 11, #11).

SQLite answers "database is locked" at once, without waiting for its busy timeout, to some set-up steps (the
switch to WAL while another process creates the file, WAL recovery): opening retries those until the store's
``timeout``, and skips what is already done (a file already in WAL mode, a schema already current).
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from motia import StateManager

CHILD = Path(__file__).with_name("_child_opener.py")
PROCESSES = 6  # half only open, half write while the others open
FILES = 100
INTERVAL = 0.06  # seconds between files: every child opens file n at the same moment

pytestmark = pytest.mark.slow


def test_processes_creating_and_writing_one_new_file_at_once_all_open(
    tmp_path: Path, child_env: dict[str, str]
) -> None:
    # Given several processes that open (and create) the same new files at the same moments, half of them
    # writing to each file while the others open it (before the fix about one open in a hundred failed here)
    start = time.time() + 3  # time for every child to start and import
    children = [
        subprocess.Popen(
            [
                sys.executable,
                str(CHILD),
                str(tmp_path),
                "write" if i % 2 else "open",
                str(start),
                str(FILES),
                str(INTERVAL),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env,
        )
        for i in range(PROCESSES)
    ]
    outputs = [child.communicate(timeout=180) for child in children]
    # Then every open and every write succeeded
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
        assert out.splitlines()[-1] == "done 0", out
    # And every file is a sound store holding what each process wrote
    for n in range(FILES):
        with contextlib.closing(sqlite3.connect(tmp_path / f"s{n}.db")) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            written = dict(connection.execute("SELECT scope, count(*) FROM motia_state GROUP BY scope").fetchall())
            assert written == {"open": 1, "write": 20}


async def test_opening_a_current_store_does_not_wait_for_the_write_lock(sqlite_path: Path, sqlite_url: str) -> None:
    # Given a store in use, whose write lock another process holds (a long transaction, a checkpoint)
    async with StateManager.from_url(sqlite_url) as sm:
        await sm.set("s", "k", 1)
    with contextlib.closing(sqlite3.connect(sqlite_path, isolation_level=None)) as foreign:
        foreign.execute("BEGIN IMMEDIATE")
        try:
            # When a process opens it (with a short timeout, so waiting for the lock would fail)
            async with StateManager.from_url(f"{sqlite_url}?timeout=0.5") as sm:
                # Then it opens (its schema is current: nothing to write) and reads
                assert await sm.get("s", "k") == 1
        finally:
            foreign.execute("ROLLBACK")


async def test_opening_a_store_first_made_in_another_journal_mode_switches_it_to_wal(sqlite_path: Path) -> None:
    # Given a file some other tool created in the default rollback-journal mode
    with contextlib.closing(sqlite3.connect(sqlite_path)) as other:
        other.execute("CREATE TABLE unrelated (a)")
        other.commit()
    # When it is opened as a store, Then it is switched to WAL and works
    async with StateManager.from_url(f"sqlite:///{sqlite_path}") as sm:
        await sm.set("s", "k", 1)
    with contextlib.closing(sqlite3.connect(sqlite_path)) as check:
        assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)
