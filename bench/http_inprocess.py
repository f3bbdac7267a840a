"""CPU per request of the HTTP path, in-process: GET /session/:id through the ASGI app `motia run` serves.

No network and no uvicorn: the app (steps of examples/sessions, console routes, SQLite store) is called
with a prepared scope and fake receive/send on uvloop, so the figure is pymotia's own cost per request.
``--bare`` runs the same request through http_bench.py's bare peer (one Starlette route reading the row
with sqlite3 and answering its bytes) in alternating rounds, and prints the ratio of the two (issue 15's
target: pymotia at >= 0.85x the bare app's in-process rate). Times are CPU time of the process
(``time.process_time``, which other processes' load moves little) and wall time.

    .venv/bin/python bench/http_inprocess.py                  # microseconds per request
    .venv/bin/python bench/http_inprocess.py --bare --rounds 5    # and the bare app's, alternating
    .venv/bin/python bench/http_inprocess.py --profile        # and the cProfile table (slower)
    PYTHONPATH=/tmp/motia-before/src .venv/bin/python bench/http_inprocess.py   # another checkout

Instructions per request (callgrind, which load does not move): run ``K`` requests and none, and divide the
difference by ``K``; ``--instructions bare`` counts the bare app's the same way:

    cg="valgrind --tool=callgrind --callgrind-out-file=/dev/null"
    for k in 0 3000; do
      $cg .venv/bin/python bench/http_inprocess.py --instructions motia -n $k
    done   # "Collected : N" each; (N_3000 - N_0) / 3000 instructions per request
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import uvloop

import motia
from motia.console.routes import console_routes
from motia.runtime.app import MotiaApp
from motia.runtime.http import build_asgi
from motia.steps.loader import load_steps

REPO = Path(__file__).resolve().parents[1]
SESSION = b'{"userId":"42","expiresAt":1893456000000,"createdAt":1700000000000,"data":{}}'
SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/session/bench-session",
    "raw_path": b"/session/bench-session",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"127.0.0.1:3111"), (b"user-agent", b"wrk")],
    "client": ("127.0.0.1", 5555),
    "server": ("127.0.0.1", 3111),
}

Asgi = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def bare_app(db: str) -> Asgi:
    """http_bench.py's bare peer: one Starlette route, the row read with sqlite3, its bytes answered."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    con = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE IF NOT EXISTS kv (scope TEXT, key TEXT, value BLOB, PRIMARY KEY (scope, key))")
    con.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", ("user-sessions", "bench-session", SESSION))

    async def get_session(request: Any) -> Any:
        row = con.execute(
            "SELECT value FROM kv WHERE scope = ? AND key = ?", ("user-sessions", request.path_params["sid"])
        ).fetchone()
        if row is None:
            return JSONResponse({"error": "Session not found"}, status_code=404)
        return Response(row[0], media_type="application/json")

    async def health(request: Any) -> Any:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/session/{sid}", get_session), Route("/__motia/health", health)])


async def run(asgi: Asgi, n: int, profiler: cProfile.Profile | None = None) -> tuple[float, float]:
    """``n`` requests through ``asgi``: (wall, CPU) microseconds per request."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asgi(dict(SCOPE), receive, send)
    assert sent[0]["status"] == 200 and orjson.loads(sent[-1]["body"]) == orjson.loads(SESSION), sent[:2]
    sent.clear()
    if profiler:
        profiler.enable()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        await asgi(dict(SCOPE), receive, send)
        sent.clear()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    if profiler:
        profiler.disable()
    return wall / n * 1e6, cpu / n * 1e6


async def count(asgi: Asgi, n: int) -> None:
    """``n`` requests through ``asgi``, untimed (for callgrind)."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    for _ in range(n):
        await asgi(dict(SCOPE), receive, send)


async def main(n: int, rounds: int, bare: bool, profile: bool, instructions: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        steps = [ls.step for ls in load_steps(REPO / "examples/sessions/steps")]
        app = MotiaApp(steps, state=f"sqlite:///{tmp}/s.db")
        asgi = build_asgi(app, extra_routes=console_routes(app, token=None))
        peer = bare_app(f"{tmp}/bare.db")
        await app.startup()
        try:
            await app.state.set("user-sessions", "bench-session", orjson.loads(SESSION))
            await run(asgi, 2000)
            if instructions:  # the same warm-up as a timed run, so counts compare with the ones recorded
                await run(peer, 2000)
                await count(asgi if instructions == "motia" else peer, n)
                return
            if bare:
                await run(peer, 2000)
            if profile:
                profiler = cProfile.Profile()
                await run(asgi, n, profiler)
                pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
                return
            results: dict[str, list[tuple[float, float]]] = {"motia": [], "bare": []}
            for i in range(rounds):
                results["motia"].append(await run(asgi, n))
                wall, cpu = results["motia"][-1]
                line = f"round {i + 1}: motia {cpu:6.1f} us CPU {wall:6.1f} us wall"
                if bare:
                    results["bare"].append(await run(peer, n))
                    bwall, bcpu = results["bare"][-1]
                    line += f" | bare {bcpu:6.1f} us CPU {bwall:6.1f} us wall | rate ratio (CPU) {bcpu / cpu:.2f}x"
                print(line, flush=True)
        finally:
            await app.shutdown()
    if instructions:
        return
    motia_cpu = statistics.median(cpu for _, cpu in results["motia"])
    motia_wall = statistics.median(wall for wall, _ in results["motia"])
    where = Path(motia.__file__).parent
    print(f"motia: {motia_cpu:.1f} us CPU, {motia_wall:.1f} us wall per request", end=" ")
    print(f"(median of {rounds} x {n}, uvloop, {where})")
    if bare:
        bare_cpu = statistics.median(cpu for _, cpu in results["bare"])
        bare_wall = statistics.median(wall for wall, _ in results["bare"])
        print(f"bare:  {bare_cpu:.1f} us CPU, {bare_wall:.1f} us wall per request")
        print(f"motia / bare rate: {bare_cpu / motia_cpu:.2f}x by CPU, {bare_wall / motia_wall:.2f}x by wall")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=20000, help="requests per round")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--bare", action="store_true", help="also run the bare Starlette + sqlite3 app, alternating")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--instructions", choices=["motia", "bare"], help="only run -n requests of one app, for callgrind")
    args = ap.parse_args()
    uvloop.run(main(args.n, args.rounds, args.bare, args.profile, args.instructions))
