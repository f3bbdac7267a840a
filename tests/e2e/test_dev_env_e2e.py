"""``motia dev`` hands the state URL (a Redis password, say) to its ``motia run`` child through the
environment, never on the child's command line, where every user of the machine can read it (``ps``)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from motia import SyncStateManager
from motia.cli.serve import RunOptions, run_command
from tests.e2e.motia_proc import MotiaProcess, free_port, poll

pytestmark = pytest.mark.slow

SECRET = "pa55-w0rd-in-url"


def test_the_restart_command_carries_no_state_url() -> None:
    command = run_command(RunOptions(state_url=f"redis://:{SECRET}@redis.internal:6379/0"))
    assert not any(SECRET in part for part in command)
    assert "--state" not in command


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the child's command line from /proc")
def test_the_dev_child_uses_the_state_url_without_showing_it(tmp_path: Path) -> None:
    steps = tmp_path / "steps"
    steps.mkdir()
    (steps / "put_step.py").write_text(
        "from motia import http, step\n"
        "async def put(request, ctx):\n"
        "    await ctx.state.set('s', 'k', {'v': 1})\n"
        "    return {'status': 200, 'body': {}}\n"
        "default = step({'name': 'put', 'triggers': [http('POST', '/put')]}, put)\n"
    )
    # Given a state URL holding something secret (here in the file name; a password in a Redis URL)
    db = tmp_path / f"{SECRET}.db"
    url = f"sqlite:///{db}"
    port = free_port()
    proc = MotiaProcess(
        ["dev", "--port", str(port), "--state", url], cwd=tmp_path, log_path=tmp_path / "dev.log", port=port
    )
    try:
        proc.wait_ready()
        # When the child serves a write
        assert httpx.post(f"{proc.url}/put").status_code == 200
        # Then it went to the store the URL names
        with SyncStateManager.from_url(url) as sm:
            assert sm.get("s", "k") == {"v": 1}
        # And no child of `motia dev` shows the URL on its command line
        kids = poll(lambda: children(proc.proc.pid), timeout=10, what="the dev child")
        for pid in kids:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert b"run" in argv, argv
            assert not any(SECRET.encode() in part for part in argv), argv
        assert proc.stop() == 0
    finally:
        proc.kill()
