"""Fixtures for the CLI tests: real ``motia run`` processes."""

from tests.e2e.motia_proc import run_motia  # noqa: F401 - the fixture, for test_strict_topics_process.py
