"""Fixtures for the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from motia_proc import MotiaProcess, start_run


@pytest.fixture
def run_motia(tmp_path) -> Iterator:
    """Start ``motia run`` processes that are killed at the end of the test if still running."""
    started: list[MotiaProcess] = []

    def start(*args, **kwargs) -> MotiaProcess:
        proc = start_run(tmp_path, *args, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
