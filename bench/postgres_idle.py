"""What an idle ``motia run`` costs its PostgreSQL store: transactions per second while nothing happens.

Run from the repository root (starts a private PostgreSQL cluster, as the tests do):

    .venv/bin/python bench/postgres_idle.py                    # this checkout
    .venv/bin/python bench/postgres_idle.py --src /path/to/other/checkout/src --seconds 30

It writes a small app to a temp dir (a queue step, a state-trigger step, an HTTP step, a stream), starts
``motia run --state postgresql://...`` on it, lets it settle, and counts the server's committed and rolled
back transactions (``pg_stat_database.xact_commit + xact_rollback`` of the database) over ``--seconds``
of idleness: every statement outside an explicit transaction is one. The window's figure includes the one
read of the statistics at its end (``--calibrate`` measures the same window with no app running: the
server's own background and the reads). ``--src`` runs another checkout's code (``PYTHONPATH``) with this
venv: how the figures of two versions are compared in one run.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.postgres_server import PostgresServer  # noqa: E402 - the tests' private cluster

APP = {
    "jobs_step.py": """
from motia import http, queue, state, step


@step({"name": "job", "triggers": [queue("jobs")]})
async def job(input, ctx):
    await ctx.state.set("orders", str(input["n"]), input)


@step({"name": "watch", "triggers": [state(scope="orders")]})
async def watch(input, ctx):
    await ctx.streams.feed.set("all", input.item_id, {"seen": True})


@step({"name": "send", "triggers": [http("POST", "/send")], "enqueues": ["jobs"]})
async def send(input, ctx):
    await ctx.enqueue({"topic": "jobs", "data": input.body})
    return {"status": 202, "body": {}}
""",
    "feed_stream.py": 'config = {"name": "feed"}\n',
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def transactions(server: PostgresServer) -> int:
    out = server.psql(
        "SELECT pg_stat_force_next_flush(); SELECT xact_commit + xact_rollback FROM pg_stat_database"
        " WHERE datname = current_database()"
    )
    return int(out.split()[-1])


def window(server: PostgresServer, seconds: float) -> float:
    before = transactions(server)
    time.sleep(seconds)
    return (transactions(server) - before) / seconds


def run_app(server: PostgresServer, src: str | None, seconds: float, settle: float) -> float:
    with tempfile.TemporaryDirectory(prefix="motia-idle-") as workdir:
        steps = Path(workdir) / "steps"
        steps.mkdir()
        for name, text in APP.items():
            (steps / name).write_text(text)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "MOTIA_STATE_URL"}
        if src is not None:
            env["PYTHONPATH"] = src
        log = open(Path(workdir) / "motia.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", "motia", "run", "--port", str(port), "--dir", str(steps), "--state",
             f"{server.url}?schema=idle{port}"],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/__motia/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit((Path(workdir) / "motia.log").read_text())
                time.sleep(0.1)
            # One message through every part (queue, state trigger, stream), then idle.
            assert httpx.post(f"http://127.0.0.1:{port}/send", json={"n": 1}).status_code == 202
            time.sleep(settle)
            return window(server, seconds)
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--src", action="append", help="a checkout's src dir to run instead (repeatable)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds idle before the window opens")
    parser.add_argument("--calibrate", action="store_true", help="also measure the window with no app")
    args = parser.parse_args()
    server = PostgresServer()
    try:
        if args.calibrate:
            print(f"no app: {window(server, args.seconds):.2f} transactions/s")
        for src in args.src or [None]:
            rate = run_app(server, src, args.seconds, args.settle)
            print(f"{src or 'this checkout'}: {rate:.2f} transactions/s over {args.seconds:g} s idle")
    finally:
        server.close()


if __name__ == "__main__":
    main()
