"""The pytest plugin, loaded through its ``pytest11`` entry point by a ``pytest`` subprocess run from a user's
project (no conftest.py; ours is not loaded either, the project's pytest.ini stops pytest's search for one)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SAMPLE = Path(__file__).parent / "sample_project"
SAMPLE_TESTS = 6

pytestmark = pytest.mark.slow


def run_pytest(directory: Path, *args: str) -> tuple[int, dict[str, int], str]:
    """Run pytest in ``directory``; return its exit code, its summary counts (``{"passed": 6}``) and output."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    counts = {kind: int(number) for number, kind in re.findall(r"(\d+) (passed|failed|errors?|skipped)", summary)}
    return result.returncode, counts, output


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_the_sample_project_passes_with_the_plugins_fixtures_only(store: str):
    assert not (SAMPLE / "conftest.py").exists()
    code, counts, output = run_pytest(SAMPLE, f"--motia-state={store}")
    assert (code, counts) == (0, {"passed": SAMPLE_TESTS}), output


def test_a_deliberately_failing_sample_test_fails():
    code, counts, output = run_pytest(SAMPLE, "deliberately_failing.py")
    assert (code, counts) == (1, {"failed": 1}), output
    assert "assert None is not None" in output


def test_the_project_is_found_from_the_ini_option_or_a_marker_and_bad_settings_are_refused(tmp_path: Path):
    # Given a project whose steps are in app/steps and others/, an ini option naming app, and a marker naming others
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "motia_project = app\nmotia_state = sqlite\n"
    )
    for where, name in (("app/steps", "ping"), ("others", "pong")):
        (tmp_path / where).mkdir(parents=True)
        (tmp_path / where / f"{name}_step.py").write_text(
            "from motia import http, step\n"
            f"{name}_step = step({{'name': '{name}', 'triggers': [http('GET', '/{name}')]}}, "
            f"lambda request: {{'status': 200, 'body': '{name}'}})\n"
        )
    (tmp_path / "test_where.py").write_text(
        textwrap.dedent(
            """
            import pytest

            async def test_the_ini_option(motia_project, motia_client, motia_state):
                assert motia_project.name == "app"
                assert motia_state.url.startswith("sqlite:///")  # the motia_state ini option
                assert (await motia_client.get("/ping")).json() == "ping"

            @pytest.mark.motia_project("others")
            @pytest.mark.motia_state("memory")
            async def test_the_marker(motia_client, motia_state):
                assert motia_state.url == "memory://"
                assert (await motia_client.get("/pong")).json() == "pong"
                assert (await motia_client.get("/ping")).status_code == 404

            @pytest.mark.motia_state("postgres")
            def test_an_unknown_store(motia_state):
                pass

            @pytest.mark.motia_project("nowhere")
            def test_a_missing_project(motia_project):
                pass
            """
        )
    )
    code, counts, output = run_pytest(tmp_path)
    assert counts == {"passed": 2, "errors": 2}, output
    assert "the motia_state marker must be one of memory, sqlite, not 'postgres'" in output
    assert "the motia_project marker names 'nowhere', which is not a directory" in output
