"""A failed test's report quotes what the processes it served said and what its browser pages saw
(``tests/failure_report.py``): a real pytest runs a test that serves ``motia run``, opens a page on it in
Chromium and fails, and its output is read."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.console.conftest import chromium_path

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

SERVED = """
from tests.e2e.motia_proc import EXAMPLE_STEPS


def test_served(browser, run_motia, tmp_path, passes):
    server = run_motia(EXAMPLE_STEPS, state=f"sqlite:///{tmp_path / 'state.db'}").wait_ready()
    page = browser.new_page()
    page.goto(f"{server.url}/no-such-page")  # 404
    page.evaluate("console.warn('a word from the page')")
    page.close()
    assert passes, "fails on purpose"
"""


def run_pytest(tmp_path: Path, passes: bool) -> str:
    """Run the test above, passing or failing, in a pytest with this suite's plugins; its output."""
    (tmp_path / "test_served.py").write_text(SERVED)
    (tmp_path / "conftest.py").write_text(f"import pytest\n\n@pytest.fixture\ndef passes():\n    return {passes}\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    command = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "tests.console.conftest"]
    command += ["-p", "no:cacheprovider", "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path)]
    command += [str(tmp_path / "test_served.py")]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == (0 if passes else 1), result.stdout + result.stderr
    return result.stdout


def test_a_failed_test_reports_its_served_processes_output_and_its_pages_events(tmp_path: Path) -> None:
    chromium_path()  # skips (fails in CI) without Chromium
    output = run_pytest(tmp_path, passes=False)
    assert "fails on purpose" in output
    # the motia process's output, under a title naming its log
    assert "motia output (motia-" in output
    assert "Uvicorn running on http://127.0.0.1:" in output
    # and what the page saw: the missing page and its console message
    assert "browser pages: console, errors, failed requests" in output
    assert "response 404: GET http://127.0.0.1:" in output
    assert "console.warning: a word from the page" in output


def test_a_passing_test_reports_nothing_more(tmp_path: Path) -> None:
    chromium_path()
    output = run_pytest(tmp_path, passes=True)
    assert "motia output" not in output and "browser pages" not in output
