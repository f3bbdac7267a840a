"""Fixtures for the end-to-end tests."""

from __future__ import annotations

from tests.e2e.motia_proc import run_motia  # noqa: F401 - the fixture, shared with tests/console
