"""Streams benchmark: one write fanned out to 1, 100 and 1,000 WebSocket subscribers of one group, served by
`motia run` vs a bare Starlette WebSocket broadcast of the same payloads.

Run from the repository root:

    .venv/bin/python bench/streams_bench.py                         # 2 rounds, both servers, 1/100/1000
    .venv/bin/python bench/streams_bench.py --rounds 3 --state memory --subscribers 1,100,1000

The servers (subprocesses on loopback, uvicorn on the same event loop, no access log):

* **motia**: ``python -m motia run`` of a two-file app: a stream ``bench`` and an HTTP step
  ``POST /bench/:group/:id`` doing ``await ctx.streams.bench.set(group, id, body)``. The write is committed
  to the store (``--state``: SQLite by default, as users run it) with its change record; the stream server
  tails the change log and sends the change to every subscriber of the group (Motia's wire protocol).
* **bare**: one Starlette app, the floor for Python here: a WebSocket route that keeps joined sockets in a
  set, and ``POST /bench/{group}/{id}`` that builds the same message (orjson, once) and ``await``s
  ``send_text`` to every socket of the group in turn. It stores nothing.

The client is this process (asyncio on ``--loop``), with the ``websockets`` library: N sockets each send
Motia's ``join`` frame and wait for the ``sync``; writes are HTTP POSTs on keep-alive connections.

* **latency**: one write at a time; from just before the POST is sent until the message has reached the
  last of the N subscribers ("write to last client"), p50 and p99 (nearest rank) over ``--samples``.
* **messages/s**: writes issued for ``--duration`` seconds by ``--writers`` HTTP connections, with at most
  ``--window`` writes not yet delivered to everyone (a closed loop, so neither server is pushed into
  queueing without bound); messages delivered to subscribers per second, first write to last delivery.
* **RSS per idle subscriber**: the server's resident memory (``/proc/PID/status`` VmRSS of the process and
  its children) after one warm-up write, then with ``--idle`` more subscribers joined and idle;
  growth / subscribers.

Rounds alternate the servers (rotating their order), so machine noise hits both; ratios are of the
summed figures over all rounds. Client and servers share the machine's cores: the client's receive cost
is part of every figure, the same for both servers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _loops import add_loop_option, run_on  # noqa: E402

STREAM = "bench"
GROUP = "room"
ITEM = "i1"
PADDING = "x" * 120  # a chat-message-sized item: about 200 bytes on the wire with the envelope

MOTIA_STREAM = """config = {"name": "bench"}\n"""
MOTIA_STEP = textwrap.dedent(
    """
    from motia import http

    config = {"name": "bench-write", "triggers": [http("POST", "/bench/:group/:id")]}


    async def handler(request, ctx):
        await ctx.streams.bench.set(request.path_params["group"], request.path_params["id"], request.body)
        return {"status": 200, "body": {"ok": True}}
    """
)

BARE_APP = textwrap.dedent(
    """
    import sys, time
    import orjson, uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocketDisconnect

    groups = {}
    seq = 0

    async def subscriber(ws):
        await ws.accept()
        joined = []
        try:
            while True:
                frame = orjson.loads(await ws.receive_text())
                data = frame["data"]
                if frame["type"] == "join":
                    group = groups.setdefault((data["streamName"], data["groupId"]), set())
                    group.add(ws)
                    joined.append(group)
                    await ws.send_text(orjson.dumps({
                        "type": "stream", "timestamp": time.time_ns() // 1_000_000, "streamName": data["streamName"],
                        "groupId": data["groupId"], "seq": seq, "event": {"type": "sync", "data": []},
                    }).decode())
        except WebSocketDisconnect:
            pass
        finally:
            for group in joined:
                group.discard(ws)

    async def write(request):
        global seq
        seq += 1
        group, item = request.path_params["group"], request.path_params["id"]
        data = {**orjson.loads(await request.body()), "id": item}
        message = orjson.dumps({
            "type": "stream", "timestamp": time.time_ns() // 1_000_000, "streamName": "bench", "groupId": group,
            "id": item, "seq": seq, "event": {"type": "update", "data": data},
        }).decode()
        for ws in list(groups.get(("bench", group), ())):
            try:
                await ws.send_text(message)
            except Exception:
                groups[("bench", group)].discard(ws)
        return JSONResponse({"ok": True})

    async def health(request):
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[
        WebSocketRoute("/", subscriber),
        Route("/bench/{group}/{id}", write, methods=["POST"]),
        Route("/__motia/health", health),
    ])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False,
                server_header=False, loop=sys.argv[2], http="httptools")
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before serving {url}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.05)
    raise SystemExit(f"{url} not ready within {timeout}s")


def rss_kb(pid: int) -> int:
    """VmRSS of ``pid`` and all its descendants, in KiB."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(FileNotFoundError):
                    pending += [int(c) for c in (task / "children").read_text().split()]
    return total


Starter = Callable[[Path, str], tuple[subprocess.Popen[bytes], int]]


def start_motia(tmp: Path, loop: str, state: str) -> tuple[subprocess.Popen[bytes], int]:
    steps = tmp / "motia-steps"
    steps.mkdir(exist_ok=True)
    (steps / "bench_stream.py").write_text(MOTIA_STREAM)
    (steps / "bench_write_step.py").write_text(MOTIA_STEP)
    port = free_port()
    url = "memory://" if state == "memory" else f"sqlite:///{tmp / f'motia-{port}.db'}"
    cmd = [sys.executable, "-m", "motia", "run", "--dir", str(steps), "--port", str(port), "--state", url]
    cmd += ["--log-level", "warning", "--no-console"]
    # `motia run` picks its loop itself (uvicorn's "auto": uvloop when installed), as users run it
    proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_ready(f"http://127.0.0.1:{port}/__motia/health", proc)
    return proc, port


def start_bare(tmp: Path, loop: str) -> tuple[subprocess.Popen[bytes], int]:
    script = tmp / "bare_app.py"
    script.write_text(BARE_APP)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port), loop],
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_ready(f"http://127.0.0.1:{port}/__motia/health", proc)
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class _WebSocket(asyncio.Protocol):
    """A minimal WebSocket client (RFC 6455: no extensions, so no compression is negotiated), parsing frames
    in ``data_received``: a high-level client's task switch per message would make the client, not the
    servers, the bottleneck at 1,000 subscribers on 2 shared cores."""

    def __init__(self, on_message: Callable[[bytes], None]) -> None:
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buffer = bytearray()
        self.upgraded = False
        self.fragments = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # uvloop's TCPTransport is no asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            if not head.startswith(b"HTTP/1.1 101"):
                self.handshake.set_exception(ConnectionError(f"upgrade refused: {head[:200]!r}"))
                return
            self.upgraded = True
            self.handshake.set_result(None)
        buffer = self.buffer
        while len(buffer) >= 2:
            opcode, length, offset = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, offset = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, offset = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < offset + length:
                return
            payload = bytes(buffer[offset : offset + length])
            fin = buffer[0] & 0x80
            del buffer[: offset + length]
            if opcode in (0, 1, 2):
                if not fin:
                    self.fragments += payload
                    continue
                if self.fragments:
                    payload, self.fragments = bytes(self.fragments) + payload, bytearray()
                self.on_message(payload)
            elif opcode == 9:
                self.send(payload, opcode=10)
            elif opcode == 8:
                assert self.transport is not None
                self.transport.close()

    def send(self, payload: bytes, opcode: int = 1) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert self.transport is not None
        self.transport.write(head + mask + masked)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(ConnectionError(f"closed before the upgrade: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def ws_connect(port: int, on_message: Callable[[bytes], None]) -> _WebSocket:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(lambda: _WebSocket(on_message), "127.0.0.1", port)
    protocol.transport = transport
    key = base64.b64encode(os.urandom(16)).decode()
    transport.write(
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await asyncio.wait_for(protocol.handshake, 30)
    return protocol


class Subscribers:
    """N WebSocket subscribers of one group; counts, per write number ``k``, how many have received it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sockets: list[_WebSocket] = []
        self.received = 0
        self.duplicates = 0
        self.counts: dict[int, int] = {}
        self.done: dict[int, asyncio.Future[float]] = {}
        self.target = 0
        self.errors: list[str] = []

    async def add(self, n: int) -> None:
        async def one() -> None:
            synced: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            seen: set[int] = set()

            def on_message(raw: bytes) -> None:
                message = orjson.loads(raw)
                event = message.get("event", {})
                if event.get("type") == "sync":
                    if not synced.done():
                        synced.set_result(None)
                    return
                self._received(seen, event["data"]["k"])

            ws = await ws_connect(self.port, on_message)
            join = {"streamName": STREAM, "groupId": GROUP, "subscriptionId": uuid.uuid4().hex}
            ws.send(orjson.dumps({"type": "join", "data": join}))
            await asyncio.wait_for(synced, 30)
            self.sockets.append(ws)

        # connect in batches, as a server's accept backlog would have it
        for start in range(0, n, 100):
            await asyncio.gather(*(one() for _ in range(min(100, n - start))))
        self.target = len(self.sockets)

    def _received(self, seen: set[int], k: int) -> None:
        if k in seen:
            self.duplicates += 1
            return
        seen.add(k)
        self.received += 1
        count = self.counts.get(k, 0) + 1
        self.counts[k] = count
        if count == self.target:
            del self.counts[k]
            future = self.done.pop(k, None)
            if future is not None and not future.done():
                future.set_result(time.perf_counter())

    def expect(self, k: int) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.done[k] = future
        return future

    async def close(self) -> None:
        closed = sum(ws.closed.done() for ws in self.sockets)
        if closed:
            self.errors.append(f"{closed} of {len(self.sockets)} subscribers were disconnected by the server")
        for ws in self.sockets:
            ws.close()
        await asyncio.gather(*(ws.closed for ws in self.sockets))
        self.sockets.clear()


class Writer:
    """Writes on one keep-alive HTTP/1.1 connection: ``POST /bench/GROUP/ITEM`` with ``{"k": k, "text"}``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def write(self, k: int) -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        body = orjson.dumps({"k": k, "text": PADDING})
        self.writer.write(
            f"POST /bench/{GROUP}/{ITEM} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        status = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        answer = await self.reader.readexactly(length)
        if status[9:12] != b"200":
            raise SystemExit(f"write {k} failed: {status!r} {answer[:300]!r}")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()


@dataclass
class Result:
    name: str
    latencies: dict[int, list[float]] = field(default_factory=dict)
    delivered: dict[int, int] = field(default_factory=dict)
    seconds: dict[int, float] = field(default_factory=dict)
    rss_per_sub: list[float] = field(default_factory=list)
    #: messages/s of each round, per subscriber count
    round_rates: dict[int, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def rate(self, n: int) -> float:
        return self.delivered.get(n, 0) / self.seconds[n] if self.seconds.get(n) else 0.0

    def pct(self, n: int, p: float) -> float:
        xs = sorted(self.latencies.get(n, []))
        if not xs:
            return float("nan")
        return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))] * 1000


async def measure(port: int, n: int, args: argparse.Namespace, out: Result) -> None:
    subs = Subscribers(port)
    writers = [Writer(port) for _ in range(args.writers)]
    k = 0
    try:
        await subs.add(n)
        # warm-up writes (not measured)
        for _ in range(5):
            k += 1
            done = subs.expect(k)
            await writers[0].write(k)
            await asyncio.wait_for(done, 30)
        # latency: one write at a time, from just before the request to the last subscriber's receipt
        samples = args.samples if n < 1000 else max(20, args.samples // 2)
        latencies = out.latencies.setdefault(n, [])
        for _ in range(samples):
            k += 1
            done = subs.expect(k)
            start = time.perf_counter()
            await writers[0].write(k)
            latencies.append(await asyncio.wait_for(done, 30) - start)
        # messages/s: a closed loop of writers, at most --window writes not yet delivered to everyone
        window = asyncio.Semaphore(args.window)
        received_before = subs.received
        pending: list[asyncio.Future[float]] = []
        started = time.perf_counter()
        stop_at = started + args.duration

        async def keep_writing(writer: Writer) -> None:
            nonlocal k
            while time.perf_counter() < stop_at:
                await window.acquire()
                k += 1
                future = subs.expect(k)
                future.add_done_callback(lambda _f: window.release())
                pending.append(future)
                await writer.write(k)

        await asyncio.gather(*(keep_writing(writer) for writer in writers))
        finished = max(await asyncio.wait_for(asyncio.gather(*pending), 60)) if pending else time.perf_counter()
        out.delivered[n] = out.delivered.get(n, 0) + subs.received - received_before
        out.seconds[n] = out.seconds.get(n, 0.0) + (finished - started)
        out.round_rates.setdefault(n, []).append((subs.received - received_before) / (finished - started))
        if subs.duplicates:
            out.errors.append(f"{n} subscribers: {subs.duplicates} duplicate messages")
    finally:
        await subs.close()
        out.errors += subs.errors
        for writer in writers:
            await writer.close()


async def measure_rss(port: int, pid: int, args: argparse.Namespace, out: Result) -> None:
    subs, idle = Subscribers(port), Subscribers(port)
    writer = Writer(port)
    try:
        await subs.add(1)
        done = subs.expect(1)
        await writer.write(1)
        await asyncio.wait_for(done, 30)
        await asyncio.sleep(0.5)  # nothing to await on the server's side: let it settle
        before = rss_kb(pid)
        await idle.add(args.idle)
        await asyncio.sleep(1.0)
        after = rss_kb(pid)
        out.rss_per_sub.append((after - before) * 1024 / args.idle)
    finally:
        await idle.close()
        await subs.close()
        out.errors += subs.errors + idle.errors
        await writer.close()


async def bench_server(port: int, pid: int, args: argparse.Namespace, out: Result) -> None:
    await measure_rss(port, pid, args, out)
    for n in args.subscribers:
        await measure(port, n, args, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", default="1,100,1000", help="subscriber counts, comma-separated")
    ap.add_argument("--samples", type=int, default=100, help="latency samples per count (half at 1,000)")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds of writes for messages/s")
    ap.add_argument("--writers", type=int, default=4, help="HTTP connections writing for messages/s")
    ap.add_argument("--window", type=int, default=16, help="writes in flight (not yet delivered to all)")
    ap.add_argument("--idle", type=int, default=1000, help="idle subscribers for the RSS figure")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--state", choices=("sqlite", "memory"), default="sqlite", help="motia's store")
    ap.add_argument("--servers", default="motia,bare")
    add_loop_option(ap)
    args = ap.parse_args()
    args.subscribers = [int(x) for x in args.subscribers.split(",")]
    starters: dict[str, Starter] = {"motia": lambda tmp, loop: start_motia(tmp, loop, args.state), "bare": start_bare}
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    results = {name: Result(name) for name in names}
    with tempfile.TemporaryDirectory(prefix="motia-streams-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for i in range(args.rounds):
            order = names[i % len(names) :] + names[: i % len(names)]
            for name in order:
                proc, port = starters[name](tmp, args.loop)
                try:
                    run_on(args.loop, bench_server(port, proc.pid, args, results[name]))
                finally:
                    stop(proc)
                print(f"round {i + 1}/{args.rounds}: {name} done", file=sys.stderr)

    import uvicorn

    print(
        f"Streams fan-out: {args.rounds} rounds, loopback, {os.cpu_count()} cores shared by client and servers, "
        f"Python {sys.version.split()[0]}, {args.loop} loop, uvicorn {uvicorn.__version__}, raw-protocol client; "
        f"motia store: {args.state}; item about {len(PADDING) + 80} bytes"
    )
    print()
    print("| server | subscribers | p50 ms | p99 ms | messages/s | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for n in args.subscribers:
        for r in results.values():
            print(
                f"| {r.name} | {n:,} | {r.pct(n, 50):.2f} | {r.pct(n, 99):.2f} | {r.rate(n):,.0f} | {len(r.errors)} |"
            )
    print()
    for r in results.values():
        per = ", ".join(f"{x / 1024:.1f}" for x in r.rss_per_sub)
        median = statistics.median(r.rss_per_sub) / 1024 if r.rss_per_sub else float("nan")
        print(f"{r.name}: RSS per idle subscriber ({args.idle:,} joined): median {median:.1f} KB (rounds {per})")
        for error in r.errors[:10]:
            print(f"  error: {error}")
    print()
    if "motia" in results and "bare" in results:
        motia, bare = results["motia"], results["bare"]
        for n in args.subscribers:
            ratio = motia.rate(n) / bare.rate(n) if bare.rate(n) else float("nan")
            per_round = [a / b for a, b in zip(motia.round_rates[n], bare.round_rates[n], strict=True) if b]
            line = f"motia / bare messages/s at {n:,} subscribers: {ratio:.2f}x"
            if len(per_round) > 1:
                rounds = ", ".join(f"{x:.2f}" for x in per_round)
                line += f"  (rounds {rounds}; median {statistics.median(per_round):.2f})"
            print(line)
        print()
        print("Targets (issue 13):")
        if 1000 in args.subscribers:
            ratio = motia.rate(1000) / bare.rate(1000) if bare.rate(1000) else float("nan")
            print(
                f"- >= 0.5x bare messages/s at 1,000 subscribers: {ratio:.2f}x, {'met' if ratio >= 0.5 else 'MISSED'}"
            )
        if 100 in args.subscribers:
            p99 = motia.pct(100, 99)
            print(f"- p99 write-to-client < 50 ms at 100 subscribers: {p99:.1f} ms, {'met' if p99 < 50 else 'MISSED'}")
        if motia.rss_per_sub:
            kb = statistics.median(motia.rss_per_sub) / 1024
            print(f"- < 50 KB RSS per idle subscriber: {kb:.1f} KB, {'met' if kb < 50 else 'MISSED'}")


if __name__ == "__main__":
    main()
