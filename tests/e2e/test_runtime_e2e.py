"""`motia run` / `motia dev` as real processes: errors, cron, shutdown, persistence, logging, reload."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
import pytest

from tests.e2e.motia_proc import EXAMPLE_STEPS, EXTRA_STEPS, REPO, MotiaProcess, free_port, poll

pytestmark = pytest.mark.slow


def run_cli(args, *, cwd=REPO, timeout=30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "motia", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )


@pytest.fixture(scope="module")
def extra(tmp_path_factory):
    """The test-only steps (errors, slow request, cron) served with JSON logs."""
    tmp = tmp_path_factory.mktemp("extra")
    from tests.e2e.motia_proc import start_run

    proc = start_run(tmp, EXTRA_STEPS, state=f"sqlite:///{tmp / 'state.db'}", extra=["--log-format", "json"])
    yield proc.wait_ready()
    proc.kill()


def test_handler_exception_is_500_with_trace_id_and_server_keeps_serving(extra):
    with httpx.Client(base_url=extra.url, timeout=10) as c:
        r = c.get("/boom")
        assert r.status_code == 500
        trace_id = r.json()["trace_id"]
        assert r.json() == {"error": "Internal Server Error", "trace_id": trace_id}
        assert c.post("/validated", json={"n": 1}).json() == {"n": 1}

    def logged():
        records = [json.loads(line) for line in extra.logs().splitlines() if line.startswith("{")]
        return [r for r in records if r.get("trace_id") == trace_id]

    [record] = poll(logged, timeout=5, what="the error log record")
    assert record["step"] == "boom" and record["level"] == "error"
    assert "RuntimeError: kaboom from a test step" in record["exc"] and "Traceback" in record["exc"]


def test_body_schema_violation_is_400(extra):
    r = httpx.post(f"{extra.url}/validated", json={"n": "one"})
    assert r.status_code == 400
    assert r.json()["details"] == [{"path": "n", "message": "expected integer, got string"}]


def test_logs_are_json_lines(extra):
    lines = [line for line in extra.logs().splitlines() if line.strip()]
    assert lines, "no log output"
    for line in lines:
        assert isinstance(json.loads(line), dict), line


def test_per_second_cron_runs_on_successive_ticks(extra):
    def ticks():
        body = httpx.get(f"{extra.url}/ticks", timeout=5).json()
        return body if body["count"] >= 2 else None

    body = poll(ticks, timeout=15, interval=0.2, what="two cron ticks")
    at = [datetime.fromisoformat(t) for t in body["at"]]
    assert all(t.microsecond == 0 and t.utcoffset().total_seconds() == 0 for t in at)  # type: ignore[union-attr]
    assert at == sorted(at) and len(set(at)) == len(at)  # one run per tick
    assert '"msg":"tick"' in extra.logs() and '"isCron":true' in extra.logs()


def test_five_field_cron_is_accepted(extra):
    assert "hourly-five-field: cron('0 * * * *')" in extra.logs()


def test_graceful_shutdown_finishes_in_flight_request(tmp_path, run_motia):
    proc = run_motia(EXTRA_STEPS, state=f"sqlite:///{tmp_path / 'state.db'}").wait_ready()
    with ThreadPoolExecutor(1) as pool:
        # Given a slow request in flight,
        slow = pool.submit(httpx.get, f"{proc.url}/slow?ms=1500", timeout=20)
        poll(
            lambda: httpx.get(f"{proc.url}/slow/started", timeout=5).json()["started"],
            timeout=10,
            what="the slow request to start",
        )
        # when SIGTERM arrives,
        proc.proc.send_signal(signal.SIGTERM)
        # then the request completes, new connections are refused and the process exits 0.
        response = slow.result(timeout=20)
    assert response.status_code == 200 and response.json() == {"finished": True}
    assert proc.stop(timeout=20) == 0
    logs = proc.logs()
    assert "received SIGTERM: shutting down gracefully" in logs
    assert "state store closed" in logs
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{proc.url}/slow/started", timeout=2)


def test_sigint_also_exits_zero(tmp_path, run_motia):
    proc = run_motia(EXTRA_STEPS, state="memory://").wait_ready()
    assert proc.stop(signal.SIGINT) == 0
    assert "received SIGINT" in proc.logs()


def test_state_survives_restart_and_env_var_selects_the_store(tmp_path, run_motia):
    db = tmp_path / "persist.db"
    first = run_motia(EXAMPLE_STEPS, state=f"sqlite:///{db}").wait_ready()
    created = httpx.post(f"{first.url}/session", json={"userId": "persist"}).json()
    session = httpx.get(f"{first.url}/session/{created['sessionId']}").json()
    assert first.stop() == 0
    # The second process gets the store from MOTIA_STATE_URL only.
    second = run_motia(EXAMPLE_STEPS, env={"MOTIA_STATE_URL": f"sqlite:///{db}"}).wait_ready()
    again = httpx.get(f"{second.url}/session/{created['sessionId']}")
    assert again.status_code == 200 and again.json() == session
    assert f"state: sqlite:///{db}" in second.logs()
    assert second.stop() == 0


def test_default_layout_and_default_store(tmp_path, run_motia):
    # `cd project && motia run`: steps/ and .motia/state.db relative to the working directory.
    shutil.copytree(EXAMPLE_STEPS, tmp_path / "steps")
    proc = run_motia(None, cwd=tmp_path).wait_ready()
    assert httpx.post(f"{proc.url}/session", json={"userId": "d"}).status_code == 201
    assert proc.stop() == 0
    assert f"state: sqlite:///{tmp_path / '.motia' / 'state.db'}" in proc.logs()
    assert (tmp_path / ".motia" / "state.db").is_file()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {
                "bad_cron_step.py": "from motia import cron, step\n"
                "default = step({'name': 'c', 'triggers': [cron('61 * * * *')]}, lambda i: None)\n"
            },
            "bad_cron_step.py:2: invalid cron expression '61 * * * *'",
        ),
        (
            {"broken_step.py": "import no_such_module_here\n"},
            "broken_step.py:1: failed to import: ModuleNotFoundError: No module named 'no_such_module_here'",
        ),
        (
            {
                "a_step.py": "from motia import http, step\n"
                "default = step({'name': 'x', 'triggers': [http('GET', '/a')]}, lambda i: None)\n",
                "b_step.py": "from motia import http, step\n"
                "default = step({'name': 'x', 'triggers': [http('GET', '/b')]}, lambda i: None)\n",
            },
            "b_step.py: duplicate step name 'x'",
        ),
        (
            {
                "a_step.py": "from motia import http, step\n"
                "default = step({'name': 'a', 'triggers': [http('GET', '/s/:id')]}, lambda i: None)\n",
                "b_step.py": "from motia import http, step\n"
                "default = step({'name': 'b', 'triggers': [http('GET', '/s/{id}')]}, lambda i: None)\n",
            },
            "b_step.py: duplicate route GET /s/{id}",
        ),
    ],
)
def test_startup_errors_name_the_file_and_exit_1(tmp_path, files, message):
    for name, body in files.items():
        (tmp_path / "steps" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "steps" / name).write_text(body)
    result = run_cli(["run", "--port", str(free_port()), "--state", "memory://"], cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"Error: steps/{message}" in result.stderr


def test_unopenable_store_fails_at_startup(tmp_path):
    shutil.copytree(EXAMPLE_STEPS, tmp_path / "steps")
    (tmp_path / "blocker").write_text("a file, not a directory")
    result = run_cli(
        ["run", "--port", str(free_port()), "--state", f"sqlite:///{tmp_path}/blocker/state.db"], cwd=tmp_path
    )
    assert result.returncode == 1
    assert f"{tmp_path}/blocker/state.db" in result.stderr


def test_cli_help_and_version():
    result = run_cli(["--help"])
    assert result.returncode == 0 and "run" in result.stdout and "dev" in result.stdout
    run_help = run_cli(["run", "--help"])
    for option in ("--dir", "--host", "--port", "--state", "--log-format", "Example:"):
        assert option in run_help.stdout
    assert "0.1.0" in run_cli(["--version"]).stdout


def test_dev_restarts_on_change(tmp_path):
    steps = tmp_path / "steps"
    steps.mkdir()
    source = (
        "from motia import http, step\n"
        "default = step({{'name': 'v', 'triggers': [http('GET', '/v')]}}, "
        "lambda i: {{'status': 200, 'body': {{'v': {v}}}}})\n"
    )
    (steps / "v_step.py").write_text(source.format(v=1))
    port = free_port()
    proc = MotiaProcess(
        ["dev", "--port", str(port), "--state", "memory://"], cwd=tmp_path, log_path=tmp_path / "dev.log", port=port
    )
    try:
        proc.wait_ready()
        assert httpx.get(f"{proc.url}/v").json() == {"v": 1}
        (steps / "v_step.py").write_text(source.format(v=2))

        def reloaded():
            try:
                return httpx.get(f"{proc.url}/v", timeout=2).json() == {"v": 2}
            except httpx.TransportError:
                return False

        poll(reloaded, timeout=30, interval=0.2, what="the reloaded step")
        assert "change detected in v_step.py" in proc.logs()
        assert proc.stop() == 0
    finally:
        proc.kill()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{proc.url}/v", timeout=2)
