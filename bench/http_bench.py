"""HTTP benchmark: GET /session/:id served by `motia run` vs bare Starlette and FastAPI apps.

Run from the repository root:

    apt-get install -y wrk                                     # Debian's wrk, for the wrk table
    .venv/bin/pip install -e ".[bench]"                        # the FastAPI peer (never a motia dependency)
    .venv/bin/python bench/http_bench.py --rounds 3            # 32 connections, 10 s per server per round
    .venv/bin/python bench/http_bench.py --baseline /tmp/motia-main    # + `motia run` of another checkout
    .venv/bin/python bench/http_bench.py --workers-compare     # `motia run --workers 2` vs `--workers 1`

Every server runs as a subprocess on loopback under uvicorn with the same settings (httptools, the
uvloop event loop, no access log, no server header) and reads the same session from SQLite in WAL mode:

* **motia**: ``python -m motia run --dir examples/sessions/steps`` with a temp SQLite store (console on,
  as users run it); the request goes through step routing, ``ctx`` creation and
  ``await ctx.state.get(...)`` (pymotia's SQLite backend), and the handler returns the decoded value.
* **bare**: one Starlette route doing ``SELECT value FROM kv WHERE scope=? AND key=?`` with ``sqlite3``
  (``journal_mode=WAL``, ``synchronous=NORMAL``) straight in the handler, returning the stored bytes.
* **fastapi**: the same read in an ``async def`` FastAPI endpoint, returning the decoded value as
  FastAPI users do (FastAPI's default JSON response); pymotia's handler does the same.

Two load generators, each in a table of its own (both run against the same server process):

* **wrk** (``wrk -t1 -c32 --latency``): C, so the client takes as little of the 2 shared cores as possible.
* **python**: raw asyncio sockets on uvloop in this process, HTTP/1.1 keep-alive, one request at a time
  per connection; percentiles over every request of the measured window (nearest-rank).

Each load runs ``--warmup`` seconds not counted, then ``--duration`` seconds measured. Rounds alternate
the servers so machine noise hits them all; ratios are of the summed requests over all rounds, and
the per-round ratios are printed with their median. Client and servers share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SESSION_ID = "bench-session"
SESSION = b'{"userId":"42","expiresAt":1893456000000,"createdAt":1700000000000,"data":{}}'
PATH = f"/session/{SESSION_ID}"

_PEER_COMMON = """
    import sqlite3, sys, threading
    import uvicorn

    DB = sys.argv[1]
    local = threading.local()

    def connection():
        con = getattr(local, "con", None)
        if con is None:
            con = local.con = sqlite3.connect(DB, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
        return con

    def read(sid):
        return connection().execute(
            "SELECT value FROM kv WHERE scope = ? AND key = ?", ("user-sessions", sid)
        ).fetchone()

    def serve(app):
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False,
                    server_header=False, loop="uvloop", http="httptools")
"""

BARE_APP = textwrap.dedent(_PEER_COMMON) + textwrap.dedent(
    """
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def get_session(request):
        row = read(request.path_params["sid"])
        if row is None:
            return JSONResponse({"error": "Session not found"}, status_code=404)
        return Response(row[0], media_type="application/json")

    async def health(request):
        return JSONResponse({"status": "ok"})

    serve(Starlette(routes=[Route("/session/{sid}", get_session), Route("/__motia/health", health)]))
    """
)

FASTAPI_APP = textwrap.dedent(_PEER_COMMON) + textwrap.dedent(
    """
    import json
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.get("/session/{sid}")
    async def get_session(sid: str):
        row = read(sid)
        if row is None:
            return JSONResponse({"error": "Session not found"}, status_code=404)
        return json.loads(row[0])

    @app.get("/__motia/health")
    async def health():
        return {"status": "ok"}

    serve(app)
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


def prepare_motia_store(path: Path) -> None:
    import orjson

    from motia import SyncStateManager

    with SyncStateManager.from_url(f"sqlite:///{path}") as sm:
        sm.set("user-sessions", SESSION_ID, orjson.loads(SESSION))


def prepare_peer_store(path: Path) -> None:
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
    #: wrk reports percentiles itself (ms); kept per round, the median is printed.
    wrk_pcts: list[dict[str, float]] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if self.wrk_pcts:
            return statistics.median(r[str(int(p))] for r in self.wrk_pcts)
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


async def python_load(name: str, port: int, connections: int, warmup: float, duration: float) -> Result:
    request = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    out = Result(name)
    now = time.perf_counter()
    measure_from = now + warmup
    stop_at = measure_from + duration
    await asyncio.gather(
        *(_connection("127.0.0.1", port, request, stop_at, measure_from, out) for _ in range(connections))
    )
    out.seconds = duration
    return out


def run_python_client(name: str, port: int, args: argparse.Namespace) -> Result:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(python_load(name, port, args.connections, args.warmup, args.duration))


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if m is None:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(name: str, port: int, args: argparse.Namespace) -> Result:
    url = f"http://127.0.0.1:{port}{PATH}"
    base = ["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", "--timeout", "5s"]
    if args.warmup > 0:
        subprocess.run([*base, f"-d{args.warmup:g}s", url], check=True, capture_output=True)
    out = subprocess.run([*base, "--latency", f"-d{args.duration:g}s", url], check=True, capture_output=True, text=True)
    text = out.stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", text)
    if total is None:
        raise SystemExit(f"cannot read wrk's output:\n{text}")
    result = Result(name)
    result.requests = int(total.group(1))
    result.seconds = float(total.group(2)) * {"ms": 1e-3, "s": 1.0, "m": 60.0}[total.group(3)]
    pcts = {p: _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M)}
    result.wrk_pcts.append(pcts)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.*)", text)
    if non2xx:
        result.errors["non-2xx"] = int(non2xx.group(1))
    if errors:
        result.errors["socket"] = sum(int(n) for n in re.findall(r"\d+", errors.group(1)))
    return result


Starter = Callable[[Path], tuple[subprocess.Popen[bytes], int]]


def motia_starter(workers: int = 1, src: Path | None = None, tag: str = "motia") -> Starter:
    """``motia run`` of this checkout (or of ``src``, another checkout's ``src`` directory)."""

    def start(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        db = tmp / f"{tag}.db"
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
        if workers != 1:
            cmd += ["--workers", str(workers)]
        env = dict(os.environ)
        if src is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        proc = subprocess.Popen(
            cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait_ready(f"http://127.0.0.1:{port}/__motia/health", proc)
        return proc, port

    return start


def peer_starter(script_text: str, tag: str) -> Starter:
    def start(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        db = tmp / f"{tag}.db"
        prepare_peer_store(db)
        script = tmp / f"{tag}_app.py"
        script.write_text(script_text)
        proc = subprocess.Popen(
            [sys.executable, str(script), str(db), str(port)],
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_ready(f"http://127.0.0.1:{port}/__motia/health", proc)
        return proc, port

    return start


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def merge(results: list[Result]) -> Result:
    merged = Result(results[0].name)
    for r in results:
        merged.requests += r.requests
        merged.seconds += r.seconds
        merged.latencies += r.latencies
        merged.wrk_pcts += r.wrk_pcts
        for k, v in r.errors.items():
            merged.errors[k] = merged.errors.get(k, 0) + v
    return merged


def print_table(title: str, runs: dict[str, list[Result]], reference: str, rounds: int) -> None:
    merged = {name: merge(results) for name, results in runs.items()}
    print(title)
    print()
    print("| server | req/s | p50 ms | p99 ms | errors |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in merged.values():
        print(f"| {r.name} | {r.rps:,.0f} | {r.pct(50):.2f} | {r.pct(99):.2f} | {sum(r.errors.values())} |")
    print()
    ref = merged[reference]
    for name, r in merged.items():
        if name == reference:
            continue
        per_round = [a.rps / b.rps for a, b in zip(runs[reference], runs[name], strict=True) if b.rps]
        line = f"{reference} / {name}: {ref.rps / r.rps if r.rps else float('nan'):.2f}x"
        if rounds > 1:
            line += f"  (rounds {', '.join(f'{x:.2f}' for x in per_round)}; median {statistics.median(per_round):.2f})"
        print(line)
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per server, client and round")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--clients", default="wrk,python", help="load generators, comma-separated: wrk, python")
    ap.add_argument("--wrk-threads", type=int, default=1)
    ap.add_argument("--baseline", type=Path, help="another checkout: also serve `motia run` from its src/")
    ap.add_argument(
        "--workers-compare",
        action="store_true",
        help="instead of the peers, compare `motia run --workers 2` with `--workers 1` (wrk only)",
    )
    args = ap.parse_args()
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    if args.workers_compare:
        clients = ["wrk"]
    if "wrk" in clients and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: `apt-get install -y wrk` (Debian), or pass --clients python")
    import uvloop

    servers: dict[str, Starter] = {}
    if args.workers_compare:
        servers["motia --workers 1"] = motia_starter(1, tag="w1")
        servers["motia --workers 2"] = motia_starter(2, tag="w2")
    else:
        servers["motia"] = motia_starter()
        if args.baseline is not None:
            servers["motia (baseline)"] = motia_starter(src=args.baseline.resolve() / "src", tag="baseline")
        servers["bare"] = peer_starter(BARE_APP, "bare")
        try:
            import fastapi  # noqa: F401
        except ImportError:
            print("fastapi is not installed (.venv/bin/pip install fastapi): its row is skipped", file=sys.stderr)
        else:
            servers["fastapi"] = peer_starter(FASTAPI_APP, "fastapi")

    runs: dict[str, dict[str, list[Result]]] = {c: {name: [] for name in servers} for c in clients}
    loaders = {"wrk": run_wrk, "python": run_python_client}
    with tempfile.TemporaryDirectory(prefix="motia-http-bench-") as tmp_name:
        tmp = Path(tmp_name)
        for i in range(args.rounds):
            # Rotate the order each round, so no server always runs first (or right after another).
            order = list(servers)
            order = order[i % len(order) :] + order[: i % len(order)]
            for name in order:
                proc, port = servers[name](tmp)
                try:
                    for client in clients:
                        runs[client][name].append(loaders[client](name, port, args))
                finally:
                    stop(proc)
            print(f"round {i + 1}/{args.rounds} done", file=sys.stderr)

    head = (
        f"GET /session/:id, {args.connections} connections, {args.rounds} x {args.duration:g} s per server, "
        f"loopback, {os.cpu_count()} cores shared by client and servers, Python {sys.version.split()[0]}, "
        f"uvicorn with httptools on uvloop {uvloop.__version__} (as `motia run` serves)"
    )
    reference = "motia --workers 2" if args.workers_compare else "motia"
    if "wrk" in runs:
        print_table(f"wrk -t{args.wrk_threads} -c{args.connections}: {head}", runs["wrk"], reference, args.rounds)
    if "python" in runs:
        print_table(f"Python client (asyncio on uvloop): {head}", runs["python"], reference, args.rounds)
    if not args.workers_compare:
        print("Targets (issue 15): motia >= 0.8x bare and >= 2x fastapi with wrk at 32 connections; p99 < 5 ms.")
        print("Motia 0.17 (Node), same endpoint, from ../shared/peers: about 4 req/s at 2 connections, p50 ~450 ms.")
    else:
        print("Target (issue 15): --workers 2 >= 1.5x --workers 1 (wrk shares the 2 cores with the workers).")


if __name__ == "__main__":
    main()
