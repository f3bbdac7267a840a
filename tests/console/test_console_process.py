"""``motia run`` flags for the console, as real processes: the bind check, --no-console, the dev child."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from motia.cli.serve import RunOptions, run_command
from tests.e2e.motia_proc import EXAMPLE_STEPS

pytestmark = pytest.mark.slow


def test_a_non_loopback_bind_without_a_token_stops_start_up(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "motia", "run", "--host", "0.0.0.0", "--dir", str(EXAMPLE_STEPS)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )
    assert done.returncode == 1
    assert "--console-token" in done.stderr and "0.0.0.0" in done.stderr
    assert not (tmp_path / ".motia").exists()  # refused before the store was opened


def test_no_console_serves_nothing_under_the_console_paths(run_motia, tmp_path):
    server = run_motia(EXAMPLE_STEPS, state=f"sqlite:///{tmp_path / 'state.db'}", extra=["--no-console"]).wait_ready()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for path in ("/__motia", "/__motia/", "/__motia/api/scopes", "/__motia/static/app.js"):
            assert client.get(path).status_code == 404, path
        assert client.get("/__motia/health").status_code == 200
    assert "console:" not in server.logs()


def test_the_console_is_on_by_default_and_logged(run_motia, tmp_path):
    server = run_motia(EXAMPLE_STEPS, state=f"sqlite:///{tmp_path / 'state.db'}").wait_ready()
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/__motia/api/scopes").json() == {"scopes": []}
    assert f"console: http://127.0.0.1:{server.port}/__motia" in server.logs()


def test_dev_passes_no_console_to_its_child():
    assert "--no-console" in run_command(RunOptions(console=False))
    assert "--no-console" not in run_command(RunOptions())
    # The token travels by environment, never on the child's command line.
    assert "secret" not in " ".join(run_command(RunOptions(console_token="secret")))
