"""Dead letters operated end to end (issue 18): a real ``motia run`` whose billing step always fails makes a
dead letter (the warning and the ``on_dead_letter`` hook of ``motia_config.py`` seen), the handler is fixed,
and the real ``motia deliveries`` command redrives it: the handler runs exactly once more, with the same
trace id, and the dead letter is gone. Bulk redrive and purge by filter; on SQLite, Redis and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.motia_proc import MotiaProcess, poll

pytestmark = pytest.mark.slow

STEPS = Path(__file__).resolve().parent / "steps_dead_letters"
FAST = {"MOTIA_DELIVERY_POLL_INTERVAL": "0.05"}
MOTIA_CONFIG = """
import json, os

def on_dead_letter(record):
    with open(os.environ["DL_HOOK"], "a") as out:
        out.write(json.dumps(record) + "\\n")
"""


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    if request.param == "redis":
        return f"{request.getfixturevalue('redis_server').url}?prefix=dl{uuid.uuid4().hex[:8]}&timeout=1"
    return f"{request.getfixturevalue('postgres_server').url}?schema=dl_{uuid.uuid4().hex[:12]}"


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def motia(state_url: str, *args: str, expect: int = 0) -> Any:
    """A real ``motia deliveries ...`` process; its JSON output (or its stderr when it fails as expected)."""
    done = subprocess.run(
        [sys.executable, "-m", "motia", "deliveries", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "MOTIA_STATE_URL": state_url},
        timeout=60,
    )
    assert done.returncode == expect, (done.stdout, done.stderr)
    return json.loads(done.stdout) if expect == 0 else done.stderr


def test_redrive_after_fixing_the_handler_delivers_once(run_motia, tmp_path: Path, state_url: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "motia_config.py").write_text(MOTIA_CONFIG)
    runs, hook, fixed = tmp_path / "runs.jsonl", tmp_path / "hook.jsonl", tmp_path / "fixed"
    env = {**FAST, "DL_RUNS": str(runs), "DL_HOOK": str(hook), "DL_FIXED": str(fixed)}
    server: MotiaProcess = run_motia(STEPS, state=state_url, env=env, cwd=project).wait_ready()
    # Given an order whose billing fails on both attempts
    answer = httpx.post(f"{server.url}/orders", json={"id": "o1"}, timeout=10)
    assert answer.status_code == 202
    trace = answer.json()["trace"]
    # Then it becomes a dead letter: the hook gets its record and a warning says so
    (record,) = poll(lambda: lines(hook), timeout=20, what="the on_dead_letter hook")
    assert (record["step"], record["kind"], record["topic"], record["attempts"]) == (
        "bill",
        "queue",
        "orders.placed",
        2,
    )
    assert record["trace_id"] == trace and record["payload"]["data"] == {"id": "o1"}
    assert record["error_summary"] == "ValueError: card declined for order o1 (attempt 2)"
    poll(lambda: "dead letter: step 'bill', delivery " in server.logs(), timeout=10, what="the warning")
    assert [(run["attempt"], run["ok"]) for run in lines(runs)] == [(1, False), (2, False)]
    # And `motia deliveries show` has its payload, attempts, first and last error and trace id
    letter = motia(state_url, "show", record["id"])
    assert (letter["attempts"], letter["trace_id"], letter["payload"]["data"]) == (2, trace, {"id": "o1"})
    assert "ValueError: card declined for order o1 (attempt 1)" in letter["first_error"]
    assert "ValueError: card declined for order o1 (attempt 2)" in letter["error"]
    assert "Traceback (most recent call last)" in letter["error"]

    # When the handler is fixed and the dead letter redriven by the real CLI
    fixed.touch()
    assert motia(state_url, "redrive", record["id"]) == {"redriven": 1, "ids": [record["id"]], "skipped": []}
    # Then the handler runs exactly once more, as the same delivery with the same trace id, and succeeds
    done = poll(lambda: [run for run in lines(runs) if run["ok"]], timeout=20, what="the redriven run")
    poll(lambda: not motia(state_url, "list", "--pending")["pending_deliveries"], timeout=30, interval=0.5, what="done")
    assert done == [{"order": "o1", "ok": True, "attempt": 1, "delivery": record["id"], "trace": trace}]
    assert len(lines(runs)) == 3
    # And the dead letter is gone; redriving it again is a clear error
    assert motia(state_url, "list")["dead_letters"] == []
    assert "no dead letter" in motia(state_url, "redrive", record["id"], expect=1)
    assert len(lines(hook)) == 1
    assert server.stop() == 0


def test_bulk_redrive_and_purge_by_filter(run_motia, tmp_path: Path, state_url: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "motia_config.py").write_text(MOTIA_CONFIG)
    runs, fixed = tmp_path / "runs.jsonl", tmp_path / "fixed"
    env = {**FAST, "DL_RUNS": str(runs), "DL_HOOK": str(tmp_path / "hook.jsonl"), "DL_FIXED": str(fixed)}
    server = run_motia(STEPS, state=state_url, env=env, cwd=project).wait_ready()
    # Given three failed orders and two audit messages nobody subscribes to
    for order in ("b1", "b2", "b3"):
        assert httpx.post(f"{server.url}/orders", json={"id": order, "audit": True}, timeout=10).status_code == 202
    poll(lambda: len(lines(tmp_path / "hook.jsonl")) == 3, timeout=30, what="three dead letters of bill")
    assert len(motia(state_url, "list")["dead_letters"]) == 6  # the audit messages were kept when sent
    # A bulk command needs ids, a filter or --all
    assert "say which dead letters" in motia(state_url, "redrive", expect=2)
    assert "say which dead letters" in motia(state_url, "purge", expect=2)
    # An unknown id among known ones changes nothing
    first = motia(state_url, "list", "--step", "bill", "--limit", "1")["dead_letters"][0]["id"]
    assert "no dead letter 'nope'" in motia(state_url, "redrive", first, "nope", expect=1)
    assert len(motia(state_url, "list", "--step", "bill")["dead_letters"]) == 3
    # When the handler is fixed and every dead letter of the step is redriven, and the audit ones purged
    fixed.touch()
    assert motia(state_url, "redrive", "--step", "bill") == {"redriven": 3}
    assert motia(state_url, "purge", "--step", "(no subscriber)", "--topic", "orders.audit") == {"purged": 3}
    # Then each order is billed once more, and no dead letter is left
    poll(lambda: len([run for run in lines(runs) if run["ok"]]) == 3, timeout=20, what="three redriven runs")
    poll(lambda: not motia(state_url, "list", "--pending")["pending_deliveries"], timeout=30, interval=0.5, what="done")
    assert sorted(run["order"] for run in lines(runs) if run["ok"]) == ["b1", "b2", "b3"]
    assert motia(state_url, "list") == {"dead_letters": [], "next": None, "pending": {}}
    assert server.stop() == 0
