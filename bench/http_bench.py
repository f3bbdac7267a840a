"""HTTP benchmark: GET /session/:id served by `motia run` vs a bare Starlette + uvicorn app.

Run from the repository root:

    .venv/bin/python bench/http_bench.py                       # 32 connections, 10 s per server
    .venv/bin/python bench/http_bench.py --connections 8 --duration 5 --rounds 2

Both servers run as subprocesses on loopback, with the same uvicorn settings (httptools, uvloop when
installed, no access log) and read the same session from SQLite in WAL mode:

* **motia**: ``python -m motia run --dir examples/sessions/steps`` with a temp SQLite store; the request
  goes through step routing, ``ctx`` creation and ``await ctx.state.get(...)`` (pymotia's SQLite
  backend).
* **bare**: one Starlette route doing ``SELECT value FROM kv WHERE scope=? AND key=?`` with ``sqlite3``
  (``journal_mode=WAL``, ``synchronous=NORMAL``) straight in the handler, and returning the bytes.

The load client is in this process: raw asyncio sockets, HTTP/1.1 keep-alive, ``--connections``
connections each sending one request at a time, ``--warmup`` seconds not counted, then ``--duration``
seconds measured. Rounds alternate motia/bare so machine noise hits both. Percentiles are over every
request of the measured window (nearest-rank). Client and servers share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SESSION_ID = "bench-session"
SESSION = b'{"userId":"42","expiresAt":1893456000000,"createdAt":1700000000000,"data":{}}'

BARE_APP = textwrap.dedent(
    """
    import sqlite3, sys, threading
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    DB = sys.argv[1]
    local = threading.local()

    def connection():
        con = getattr(local, "con", None)
        if con is None:
            con = local.con = sqlite3.connect(DB, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
        return con

    async def get_session(request):
        row = connection().execute(
            "SELECT value FROM kv WHERE scope = ? AND key = ?", ("user-sessions", request.path_params["sid"])
        ).fetchone()
        if row is None:
            return JSONResponse({"error": "Session not found"}, status_code=404)
        return Response(row[0], media_type="application/json")

    async def health(request):
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route("/session/{sid}", get_session), Route("/__motia/health", health)])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False,
                server_header=False)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before serving {url}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.05)
    raise SystemExit(f"{url} not ready within {timeout}s")


def prepare_motia_store(path: Path) -> None:
    import orjson

    from motia import SyncStateManager

    with SyncStateManager.from_url(f"sqlite:///{path}") as sm:
        sm.set("user-sessions", SESSION_ID, orjson.loads(SESSION))


def prepare_bare_store(path: Path) -> None:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE IF NOT EXISTS kv (scope TEXT, key TEXT, value BLOB, PRIMARY KEY (scope, key))")
    con.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", ("user-sessions", SESSION_ID, SESSION))
    con.close()


@dataclass
class Result:
    name: str
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        xs = sorted(self.latencies)
        if not xs:
            return float("nan")
        return xs[min(len(xs) - 1, max(0, int(round(p / 100 * len(xs) + 0.5)) - 1))] * 1000


async def _connection(host: str, port: int, request: bytes, stop_at: float, measure_from: float, out: Result) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            start = time.perf_counter()
            if start >= stop_at:
                return
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            end = time.perf_counter()
            status = status_line[9:12]
            if start >= measure_from:
                if status != b"200":
                    out.errors[status.decode()] = out.errors.get(status.decode(), 0) + 1
                out.latencies.append(end - start)
                out.requests += 1
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def load(name: str, port: int, path: str, connections: int, warmup: float, duration: float) -> Result:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    out = Result(name)
    now = time.perf_counter()
    measure_from = now + warmup
    stop_at = measure_from + duration
    await asyncio.gather(
        *(_connection("127.0.0.1", port, request, stop_at, measure_from, out) for _ in range(connections))
    )
    out.seconds = duration
    return out


def start_motia(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    db = tmp / "motia.db"
    prepare_motia_store(db)
    cmd = [
        sys.executable,
        "-m",
        "motia",
        "run",
        "--dir",
        str(REPO / "examples/sessions/steps"),
        "--port",
        str(port),
        "--state",
        f"sqlite:///{db}",
        "--log-level",
        "warning",
    ]
    proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}/__motia/health", proc)
    return proc, port


def start_bare(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    db = tmp / "bare.db"
    prepare_bare_store(db)
    script = tmp / "bare_app.py"
    script.write_text(BARE_APP)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), str(port)], cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_ready(f"http://127.0.0.1:{port}/__motia/health", proc)
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def merge(results: list[Result]) -> Result:
    merged = Result(results[0].name)
    for r in results:
        merged.requests += r.requests
        merged.seconds += r.seconds
        merged.latencies += r.latencies
        for k, v in r.errors.items():
            merged.errors[k] = merged.errors.get(k, 0) + v
    return merged


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per server and round")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        loop_factory = asyncio.new_event_loop

    runs: dict[str, list[Result]] = {"motia": [], "bare": []}
    with tempfile.TemporaryDirectory(prefix="motia-http-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for _ in range(args.rounds):
            for name, starter in (("motia", start_motia), ("bare", start_bare)):
                proc, port = starter(tmp)
                try:
                    with asyncio.Runner(loop_factory=loop_factory) as runner:
                        result = runner.run(
                            load(name, port, f"/session/{SESSION_ID}", args.connections, args.warmup, args.duration)
                        )
                finally:
                    stop(proc)
                runs[name].append(result)

    motia, bare = merge(runs["motia"]), merge(runs["bare"])
    print(
        f"GET /session/:id, {args.connections} connections, {args.rounds} x {args.duration:.0f} s per server, "
        f"loopback, {os.cpu_count()} cores shared by client and server, Python {sys.version.split()[0]}"
    )
    print()
    print("| server | req/s | p50 ms | p99 ms | non-200 |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in (motia, bare):
        print(f"| {r.name} | {r.rps:,.0f} | {r.pct(50):.2f} | {r.pct(99):.2f} | {sum(r.errors.values())} |")
    print()
    ratio = motia.rps / bare.rps if bare.rps else float("nan")
    print(f"motia / bare throughput: {ratio:.2f}x  (target >= 0.5x)")
    print(f"motia p99: {motia.pct(99):.2f} ms  (target < 10 ms)")
    if args.rounds > 1:
        per_round = [m.rps / b.rps for m, b in zip(runs["motia"], runs["bare"], strict=True)]
        print(
            f"per-round ratios: {', '.join(f'{x:.2f}' for x in per_round)} (median {statistics.median(per_round):.2f})"
        )
    print("Motia 0.17 (Node), same endpoint, from ../shared/peers: about 4 req/s at 2 connections, p50 ~450 ms.")


if __name__ == "__main__":
    main()
