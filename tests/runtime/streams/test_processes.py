"""The stream server in real ``motia run`` processes: ``motia_config.py`` auth, changes made through another
process (one SQLite file) or another instance (one Redis) reaching a socket, and a slow consumer that
cannot grow the server's memory (its RSS is measured)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.e2e.motia_proc import MotiaProcess
from tests.runtime.streams.conftest import join_frame, receive

pytestmark = pytest.mark.slow

STREAM_FILE = """
config = {"name": "todo", "history": 50}
"""

STEP_FILE = """
from motia import http, step

@step({"name": "put-todo", "triggers": [http("POST", "/todo/:group/:id")]})
async def put_todo(request, ctx):
    result = await ctx.streams.todo.set(request.path_params["group"], request.path_params["id"], request.body)
    return {"status": 200, "body": result.new_value}

@step({"name": "flood", "triggers": [http("POST", "/flood/:group")]})
async def flood(request, ctx):
    pad = "x" * request.body["size"]
    for n in range(request.body["count"]):
        await ctx.streams.todo.set(request.path_params["group"], "big", {"n": n, "pad": pad})
    return {"status": 200, "body": {"written": request.body["count"]}}
"""

CONFIG_FILE = """
def stream_authenticate(request):
    if request.token is None:
        return None
    if request.token != "secret":
        raise PermissionError("bad token")
    return {"user": "ann"}
"""


def project(tmp_path: Path, *, config: bool = True) -> Path:
    root = tmp_path / "project"
    (root / "steps").mkdir(parents=True)
    (root / "steps" / "todo_stream.py").write_text(textwrap.dedent(STREAM_FILE))
    (root / "steps" / "todo_step.py").write_text(textwrap.dedent(STEP_FILE))
    if config:
        (root / "motia_config.py").write_text(textwrap.dedent(CONFIG_FILE))
    return root


def ws_url(proc: MotiaProcess, path: str = "/") -> str:
    return proc.url.replace("http://", "ws://") + path


async def test_motia_run_serves_streams_behind_motia_config_auth(
    tmp_path: Path, run_motia: Callable[..., MotiaProcess]
) -> None:
    root = project(tmp_path)
    proc = run_motia("steps", state="memory://", cwd=root).wait_ready()
    assert "authenticated by stream_authenticate of motia_config.py" in proc.logs()
    # A bad token is refused with 4401
    async with connect(ws_url(proc), subprotocols=["Authorization", "wrong"]) as refused:  # type: ignore[list-item]
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(refused.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    # The right one is accepted with the Authorization subprotocol; a change over HTTP reaches the socket
    async with connect(ws_url(proc), subprotocols=["Authorization", "secret"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "Authorization"
        await ws.send(join_frame(item="t1"))
        [synced] = await receive(ws, timeout=10)
        assert synced["event"] == {"type": "sync", "data": None}
        async with httpx.AsyncClient(base_url=proc.url) as client:
            response = await client.post("/todo/inbox/t1", json={"title": "buy milk"})
            assert response.status_code == 200, response.text
        [created] = await receive(ws, timeout=10)
        assert (created["id"], created["seq"], created["event"]) == (
            "t1",
            1,
            {"type": "create", "data": {"title": "buy milk", "id": "t1"}},
        )
    # A token in the query string works too, and never reaches the server's log
    async with connect(ws_url(proc, "/?authToken=secret&x=1")) as by_query:
        await by_query.send(join_frame(item="t1"))
        [synced] = await receive(by_query, timeout=10)
        assert synced["event"]["data"] == {"title": "buy milk", "id": "t1"}
    logs = proc.logs()
    assert "authToken=***&x=1" in logs and "secret" not in logs


async def a_change_through_b_reaches_a(a: MotiaProcess, b: MotiaProcess) -> None:
    async with connect(ws_url(a, "/__motia/streams")) as ws:
        await ws.send(join_frame(group="shared"))
        [synced] = await receive(ws, timeout=10)
        start = synced["seq"]
        async with httpx.AsyncClient() as client:
            for n in range(5):
                response = await client.post(f"{b.url}/todo/shared/t{n % 2}", json={"n": n})
                assert response.status_code == 200, response.text
        got = await receive(ws, 5, timeout=10)
        assert [(m["seq"], m["id"], m["event"]["data"]["n"]) for m in got] == [
            (start + n + 1, f"t{n % 2}", n) for n in range(5)
        ]
        assert [m["event"]["type"] for m in got] == ["create", "create", "update", "update", "update"]


async def test_a_change_made_by_another_process_on_one_sqlite_file_reaches_a_socket(
    tmp_path: Path,
    run_motia: Callable[..., MotiaProcess],
) -> None:
    root = project(tmp_path, config=False)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a = run_motia("steps", state=url, cwd=root, name="a").wait_ready()
    b = run_motia("steps", state=url, cwd=root, name="b").wait_ready()
    await a_change_through_b_reaches_a(a, b)


SCRIPT = """
from motia import Stream
todo = Stream("todo")
todo.set("shared", "from-script", {"by": "script"})
todo.send({"groupId": "shared"}, {"type": "done", "data": 1})
"""


async def test_a_script_writing_to_the_sqlite_file_reaches_a_socket_of_motia_run(
    tmp_path: Path, run_motia: Callable[..., MotiaProcess]
) -> None:
    root = project(tmp_path, config=False)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    proc = run_motia("steps", state=url, cwd=root).wait_ready()
    async with connect(ws_url(proc)) as ws:
        await ws.send(join_frame(group="shared"))
        await receive(ws, timeout=10)
        # A plain Python script on the same file, with the blocking Stream API
        (root / "script.py").write_text(textwrap.dedent(SCRIPT))
        env = {**os.environ, "MOTIA_STATE_URL": url}
        script = await asyncio.create_subprocess_exec(sys.executable, "script.py", cwd=root, env=env)
        assert await asyncio.wait_for(script.wait(), 60) == 0
        created, event = await receive(ws, 2, timeout=10)
        assert (created["id"], created["event"]) == (
            "from-script",
            {"type": "create", "data": {"by": "script", "id": "from-script"}},
        )
        assert event["event"] == {"type": "event", "event": {"type": "done", "data": 1}}


async def test_a_change_made_through_another_instance_on_one_redis_reaches_a_socket(
    tmp_path: Path,
    run_motia: Callable[..., MotiaProcess],
    redis_server: Any,
) -> None:
    root = project(tmp_path, config=False)
    url = f"{redis_server.url}?prefix=streams-{uuid.uuid4().hex[:12]}"
    a = run_motia("steps", state=url, cwd=root, name="a").wait_ready()
    b = run_motia("steps", state=url, cwd=root, name="b").wait_ready()
    await a_change_through_b_reaches_a(a, b)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")  # pragma: no cover


async def flood(proc: MotiaProcess, group: str, count: int, size: int) -> None:
    async with httpx.AsyncClient(timeout=120) as client:
        response = await client.post(f"{proc.url}/flood/{group}", json={"count": count, "size": size})
        assert response.status_code == 200, response.text


async def slow_client(proc: MotiaProcess, group: str) -> ClientConnection:
    """A client that joins and then stops reading: a small receive window, one message buffered."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(proc.url.rsplit(":", 1)[1])))
    ws = await connect(ws_url(proc), sock=sock, max_queue=1, compression=None, ping_interval=None)
    await ws.send(join_frame(group=group))
    await receive(ws, timeout=10)
    return ws


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="RSS is read from /proc")
async def test_a_slow_consumer_is_disconnected_and_the_server_memory_stays_bounded(
    tmp_path: Path,
    run_motia: Callable[..., MotiaProcess],
) -> None:
    root = project(tmp_path, config=False)
    proc = run_motia("steps", state=f"sqlite:///{tmp_path / 's.db'}", cwd=root).wait_ready()
    count, size = 1500, 50_000  # 75 MB of changes
    # Warm up: the same writes with a reader that keeps up, so the allocator and caches are at size
    async with connect(ws_url(proc), max_size=None) as reader:
        await reader.send(join_frame(group="warm"))
        await receive(reader, timeout=10)
        writer = asyncio.create_task(flood(proc, "warm", count, size))
        for _ in range(count):
            await asyncio.wait_for(reader.recv(), 30)
        await writer
    before = rss_bytes(proc.proc.pid)
    # When a client that does not read is sent 75 MB
    slow = await slow_client(proc, "slow")
    await flood(proc, "slow", count, size)
    after = rss_bytes(proc.proc.pid)
    # Then the server holds at most its queue limit for it (8 MiB) plus buffers, not what was sent
    assert after - before < 30 * 1024 * 1024, f"RSS grew by {(after - before) / 2**20:.1f} MiB"
    # ... and it was disconnected: reading now, it gets far fewer messages than were sent, then the close
    received = 0
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(slow.recv(), 30)
            received += 1
    assert received < count // 2
    # The server keeps serving
    async with connect(ws_url(proc)) as fresh:
        await fresh.send(join_frame(group="slow"))
        [synced] = await receive(fresh, timeout=10)
        assert orjson.loads(orjson.dumps(synced["event"]["data"]))[0]["n"] == count - 1
