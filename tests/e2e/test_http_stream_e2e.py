"""Streaming responses and ``response_schema`` over a real ``motia run`` / ``motia dev`` subprocess.

The SSE handlers wait for a file the test writes only after it has read their first event, so the test
fails unless that event crossed the wire while the handler was still running.
"""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import httpx
import pytest

from motia.state.sync import SyncStateManager
from tests.e2e.motia_proc import MotiaProcess, free_port, poll

STEPS = """
import asyncio
import os
import threading
import time
from pathlib import Path

from motia import ClientDisconnected, http, step

GATE = Path(os.environ["SSE_GATE"])
HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache"}


def event(name, n):
    return f"event: {name}\\ndata: {n}\\n\\n".encode()


@step({"name": "async-sse", "triggers": [http("GET", "/sse/async")]})
async def async_sse(args, ctx):
    await args.response.status(201)
    await args.response.headers(HEADERS)
    args.response.writer.stream.write(event("first", 1))
    deadline = time.monotonic() + 15
    while not GATE.exists() and time.monotonic() < deadline:  # the test writes it after reading "first"
        await asyncio.sleep(0.02)
    args.response.writer.stream.write(event("second", 2 if GATE.exists() else "timed out"))
    args.response.close()


@step({"name": "sync-sse", "triggers": [http("GET", "/sse/sync")]})
def sync_sse(args, ctx):
    args.response.headers(HEADERS)
    args.response.writer.stream.write(event("first", 1))
    deadline = time.monotonic() + 15
    while not GATE.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    args.response.writer.stream.write(event("second", 2 if GATE.exists() else "timed out"))


@step({"name": "watcher", "triggers": [http("GET", "/sse/watch")]})
async def watcher(args, ctx):
    await args.response.headers(HEADERS)
    args.response.writer.stream.write(event("hello", 0))
    await asyncio.wait_for(args.response.wait_disconnected(), 15)
    try:
        args.response.writer.stream.write(event("anyone", 0))
    except ClientDisconnected:
        await ctx.state.set("sse", "watcher", "saw the client leave")


@step({"name": "checked", "triggers": [http("GET", "/checked", response_schema={200: {
    "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}})]})
async def checked(args, ctx):
    return {"status": 200, "body": {"n": "not a number"}}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    steps = tmp_path / "project" / "steps"
    steps.mkdir(parents=True)
    (steps / "streaming_step.py").write_text(textwrap.dedent(STEPS))
    return tmp_path / "project"


def start(project: Path, command: str, db: Path, gate: Path) -> MotiaProcess:
    port = free_port()
    args = [command, "--port", str(port), "--dir", "steps", "--state", f"sqlite:///{db}", "--no-console"]
    env = {"SSE_GATE": str(gate)}
    return MotiaProcess(args, cwd=project, log_path=project / f"{command}-{port}.log", env=env, port=port)


@pytest.mark.parametrize(("path", "status"), [("/sse/async", 201), ("/sse/sync", 200)])
def test_motia_run_flushes_each_event_as_written(project, tmp_path, path, status):
    gate = tmp_path / f"gate-{path.rsplit('/', 1)[1]}"
    proc = start(project, "run", tmp_path / "state.db", gate)
    try:
        proc.wait_ready()
        with httpx.Client(base_url=proc.url, timeout=15) as client, client.stream("GET", path) as response:
            assert response.status_code == status
            assert response.headers["content-type"] == "text/event-stream"
            assert response.headers["transfer-encoding"] == "chunked"
            chunks = response.iter_raw()
            # The first event arrives while the handler still waits for the gate (it says so if it gave up)
            assert next(chunks) == b"event: first\ndata: 1\n\n"
            gate.write_text("open")
            assert b"".join(chunks) == b"event: second\ndata: 2\n\n"
        assert proc.stop() == 0
    finally:
        proc.kill()


def test_motia_run_tells_the_handler_its_client_left(project, tmp_path):
    db = tmp_path / "state.db"
    proc = start(project, "run", db, tmp_path / "gate")
    try:
        proc.wait_ready()
        with httpx.Client(base_url=proc.url, timeout=15) as client:
            with client.stream("GET", "/sse/watch") as response:
                assert next(response.iter_raw()) == b"event: hello\ndata: 0\n\n"
            # leaving the block closed the connection with the body unread
            with SyncStateManager.from_url(f"sqlite:///{db}") as store:
                seen = poll(lambda: store.get("sse", "watcher"), timeout=15, what="the handler seeing the disconnect")
            assert seen == "saw the client leave"
            assert client.get("/__motia/health").status_code == 200
        assert proc.stop() == 0
    finally:
        proc.kill()


@pytest.mark.parametrize(("command", "status"), [("run", 200), ("dev", 500)])
def test_response_schema_is_checked_by_motia_dev_only(project, tmp_path, command, status):
    proc = start(project, command, tmp_path / "state.db", tmp_path / "gate")
    try:
        proc.wait_ready()
        response = httpx.get(f"{proc.url}/checked", timeout=15)
        assert response.status_code == status, response.text
        if command == "dev":
            body = response.json()
            assert body["error"] == "Response does not match response_schema"
            assert "n" in json.dumps(body["details"])
            assert "does not match response_schema" in proc.logs()
        else:
            assert response.json() == {"n": "not a number"}
        assert proc.stop(signal.SIGTERM) == 0
    finally:
        proc.kill()
