"""CPU per request of the HTTP path, in-process: GET /session/:id through the ASGI app `motia run` serves.

No network and no uvicorn: the app (steps of examples/sessions, console routes, SQLite store) is called
with a prepared scope and fake receive/send on uvloop, so the figure is pymotia's own cost per request.

    .venv/bin/python bench/http_inprocess.py                  # microseconds per request
    .venv/bin/python bench/http_inprocess.py --profile        # and the cProfile table (slower)
    PYTHONPATH=/tmp/motia-before/src .venv/bin/python bench/http_inprocess.py   # another checkout
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
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


async def main(n: int, profile: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        steps = [ls.step for ls in load_steps(REPO / "examples/sessions/steps")]
        app = MotiaApp(steps, state=f"sqlite:///{tmp}/s.db")
        asgi = build_asgi(app, extra_routes=console_routes(app, token=None))
        await app.startup()
        await app.state.set("user-sessions", "bench-session", orjson.loads(SESSION))
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        for _ in range(2000):
            await asgi(dict(SCOPE), receive, send)
        assert sent[0]["status"] == 200, sent[:2]
        sent.clear()
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        start = time.perf_counter()
        for _ in range(n):
            await asgi(dict(SCOPE), receive, send)
        elapsed = time.perf_counter() - start
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        await app.shutdown()
    print(f"{elapsed / n * 1e6:.1f} us per request ({n} requests, uvloop, motia from {Path(motia.__file__).parent})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    uvloop.run(main(args.n, args.profile))
