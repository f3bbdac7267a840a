"""``motia run`` reads strict topics from ``motia_config.py`` (and the environment): a real process keeps a message
nobody subscribes to by default and refuses it when strict."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.motia_proc import MotiaProcess

STEP = """
from motia import http, step


@step({"name": "announce", "triggers": [http("POST", "/announce")], "enqueues": ["news"]})
async def announce(input, ctx):
    await ctx.enqueue({"topic": "news", "data": input.body})
    return {"status": 202, "body": {"sent": True}}
"""


def project(tmp_path: Path, config: str | None) -> Path:
    root = tmp_path / "project"
    (root / "steps").mkdir(parents=True)
    (root / "steps" / "announce_step.py").write_text(textwrap.dedent(STEP))
    if config is not None:
        (root / "motia_config.py").write_text(config)
    return root


@pytest.mark.parametrize(
    ("config", "env", "strict"),
    [
        (None, {}, False),
        ("strict_topics = True\n", {}, True),
        ("strict_topics = True\n", {"MOTIA_STRICT_TOPICS": "0"}, False),
    ],
    ids=["default", "motia_config", "environment-wins"],
)
def test_motia_run_keeps_or_refuses(
    tmp_path: Path,
    run_motia: Callable[..., MotiaProcess],
    config: str | None,
    env: dict[str, str],
    strict: bool,
) -> None:
    root = project(tmp_path, config)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    proc = run_motia("steps", state=url, cwd=root, env=env).wait_ready()
    response = httpx.post(f"{proc.url}/announce", json={"headline": "hi"}, timeout=10)
    assert proc.stop() == 0
    logs = proc.logs()
    listed = subprocess.run(
        [sys.executable, "-m", "motia", "deliveries", "list", "--state", url], capture_output=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    letters = json.loads(listed.stdout)["dead_letters"]
    if strict:
        # Refused: the handler's enqueue raised (a 500), nothing was kept, the start-up log said so
        assert response.status_code == 500
        assert letters == []
        assert "strict topics: a message no step subscribes to is refused" in logs
        assert "and strict topics (MOTIA_STRICT_TOPICS or strict_topics in motia_config.py) refuse" in logs
    else:
        assert response.status_code == 202, logs
        assert [(d["step"], d["topic"], d["payload"]["data"]) for d in letters] == [
            ("(no subscriber)", "news", {"headline": "hi"})
        ]
        assert "no step subscribes to topic 'news' (sent by 'announce'): its messages are kept" in logs
