"""Fixtures for the console tests: real ``motia run`` processes and a headless Chromium."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

# The process helpers of the end-to-end tests.
from tests.e2e.motia_proc import MotiaProcess, run_motia, start_run  # noqa: F401 - run_motia is a fixture

CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
#: Flags that let Debian's Chromium run headless as root in a container, without touching the network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing(reason: str) -> None:
    """No browser: skip visibly on a developer machine, fail in CI (where scripts/test installs it)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the browser tests must run; scripts/test installs Chromium)")
    pytest.skip(f"{reason}; run `bash scripts/test` to install it")


def chromium_path() -> str:
    for candidate in (os.environ.get("MOTIA_CHROMIUM"), *CHROMIUM_PATHS, shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    _missing("Chromium is not installed (Debian package `chromium`)")
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """A headless Debian Chromium driven by Playwright (never Playwright's own downloaded browsers)."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the Python package `playwright` is not installed (pip install -e '.[test]')")
    with tempfile.TemporaryDirectory(prefix="motia-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1360, "height": 820},
        )
        yield context
        context.close()
