"""SSE and ``StreamClient`` against real ``motia run`` processes: a change made over HTTP reaches an SSE
reader, SIGTERM ends open event streams at once (a graceful shutdown would otherwise wait on them), and a
client resumes across a restart of the server on the same SQLite file."""

from __future__ import annotations

import asyncio
import signal
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from motia.streams import StreamClient
from tests.e2e.motia_proc import REPO, MotiaProcess, run_motia  # noqa: F401 - the fixture
from tests.streams.sse_reader import EventReader

pytestmark = pytest.mark.slow

STREAM_FILE = 'config = {"name": "todo"}\n'
STEP_FILE = """
from motia import http, step

@step({"name": "put-todo", "triggers": [http("POST", "/todo/:group/:id")]})
async def put_todo(request, ctx):
    result = await ctx.streams.todo.set(request.path_params["group"], request.path_params["id"], request.body)
    return {"status": 200, "body": result.new_value}
"""


def project(tmp_path: Path) -> Path:
    steps = tmp_path / "project" / "steps"
    steps.mkdir(parents=True)
    (steps / "todo_stream.py").write_text(STREAM_FILE)
    (steps / "todo_step.py").write_text(textwrap.dedent(STEP_FILE))
    return steps


async def test_sse_over_motia_run_and_sigterm_ends_open_streams(tmp_path: Path, run_motia) -> None:  # noqa: F811
    # Given `motia run` and an SSE reader of a group
    proc: MotiaProcess = run_motia(project(tmp_path), state="memory://")
    await asyncio.to_thread(proc.wait_ready)
    async with httpx.AsyncClient(base_url=proc.url, timeout=10) as http:
        async with http.stream("GET", "/__motia/streams/todo/inbox") as response:
            assert response.status_code == 200
            reader = EventReader(response)
            sync = await reader.next()
            # When a step changes the stream over HTTP
            assert (await http.post("/todo/inbox/t1", json={"title": "buy milk"})).status_code == 200
            created = await reader.next()
            # And the server is asked to stop while the response is open
            started = time.monotonic()
            proc.proc.send_signal(signal.SIGTERM)
            ended = await reader.next()
            code = await asyncio.to_thread(proc.stop)
            took = time.monotonic() - started
    # Then the reader saw the sync and the change, and the stream ended at once, saying why
    assert sync is not None and (sync.event, sync.id) == ("sync", "0")
    assert created is not None and (created.event, created.id) == ("create", "1")
    assert created.data["event"]["data"] == {"title": "buy milk", "id": "t1"}
    assert ended is None
    assert reader.comments == ["closed: the server is shutting down"]
    assert code == 0
    assert took < 5, f"shutdown took {took:.1f}s: an open SSE response held it"


async def test_stream_client_resumes_across_a_restart_on_one_sqlite_file(tmp_path: Path, run_motia) -> None:  # noqa: F811
    steps = project(tmp_path)
    state = f"sqlite:///{tmp_path}/motia.db"
    # Given a client subscribed to a group of a server on a SQLite file
    first: MotiaProcess = run_motia(steps, state=state)
    await asyncio.to_thread(first.wait_ready)
    port = first.port
    httpx.post(f"{first.url}/todo/g/a", json={"n": 0}, timeout=10).raise_for_status()
    async with StreamClient(f"ws://127.0.0.1:{port}", backoff=0.05, max_backoff=0.5) as client:
        async with client.subscribe_group("todo", "g") as sub:
            sync = await asyncio.wait_for(anext(sub), 10)
            assert (sync.type, sync.seq) == ("sync", 1)
            # When the server stops, another process changes the file, and the server starts again
            assert await asyncio.to_thread(first.stop) == 0
            other: MotiaProcess = run_motia(steps, state=state)
            await asyncio.to_thread(other.wait_ready)
            httpx.post(f"{other.url}/todo/g/a", json={"n": 1}, timeout=10).raise_for_status()
            httpx.post(f"{other.url}/todo/g/b", json={"n": 2}, timeout=10).raise_for_status()
            assert await asyncio.to_thread(other.stop) == 0
            again = MotiaProcess(
                ["run", "--port", str(port), "--dir", str(steps), "--state", state],
                cwd=REPO,
                log_path=tmp_path / "again.log",
                port=port,
            )
            try:
                await asyncio.to_thread(again.wait_ready)
                # Then the client, reconnected by itself, gets exactly the two changes it missed
                missed = [await asyncio.wait_for(anext(sub), 20) for _ in range(2)]
            finally:
                again.kill()
    assert [(c.type, c.id, c.seq) for c in missed] == [("update", "a", 2), ("create", "b", 3)]
