"""Redis benchmark: pymotia's Redis backend against raw redis-py doing the same work, in one run.

Run from the repository root (starts a private ``redis-server`` on a free port, no persistence):

    .venv/bin/python bench/redis_bench.py                       # N=1,000 and 10,000, 5 rounds
    .venv/bin/python bench/redis_bench.py --url redis://127.0.0.1:6379/0   # an existing server
    .venv/bin/python bench/redis_bench.py --motia-js $PEER/motia-js   # also Motia 0.x's Redis adapter
    .venv/bin/python bench/redis_bench.py --loop asyncio         # on asyncio's loop (default: uvloop, as `motia run`)

``--motia-js DIR`` runs ../shared/peers/motia_js_state_bench.mjs (Motia 0.x installed in DIR, see
../shared/peers/README.md) against the same server after pymotia's rounds and prints its figures.

The workload follows ../shared/peers/redis_py_bench.py: scope ``sessions``, keys ``k0..kN-1``, values
``{"userId": "42", "expiresAt": <counter>, "data": {}}``. The peers are redis-py's asyncio client (the
same driver and event loop pymotia uses: the like-for-like ratio) and its blocking client (what the
peers script measures), each with one hash per scope holding JSON text: ``HSET``/``HGET`` plus
``json``, and a Lua script for the atomic increment (``EVALSHA``, decoding and re-encoding with cjson).
pymotia does more per call: versions, TTL, change events, the write token, and its ``update`` applies
the operation in Python and writes by compare-and-set. Figures are medians of interleaved rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis
import redis.asyncio

from _loops import add_loop_option, run_on
from motia import StateManager

SCOPE = "sessions"
_counter = itertools.count()
INCREMENT = [{"type": "increment", "path": "expiresAt", "value": 1}]
INCREMENT_LUA = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local v = {}
if raw then v = cjson.decode(raw) end
v['expiresAt'] = (tonumber(v['expiresAt']) or 0) + 1
local out = cjson.encode(v)
redis.call('HSET', KEYS[1], ARGV[1], out)
return out
"""


def next_value() -> dict[str, object]:
    return {"userId": "42", "expiresAt": next(_counter), "data": {}}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_server() -> tuple[subprocess.Popen[bytes], str, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server), or pass --url")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="motia-redis-bench-")
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    client.close()
    return process, f"redis://127.0.0.1:{port}/0", workdir


async def time_each(function: Callable[[str], Awaitable[object]], keys: list[str]) -> float:
    start = time.perf_counter()
    for key in keys:
        await function(key)
    return len(keys) / (time.perf_counter() - start)


def time_each_sync(function: Callable[[str], object], keys: list[str]) -> float:
    start = time.perf_counter()
    for key in keys:
        function(key)
    return len(keys) / (time.perf_counter() - start)


async def time_concurrent(function: Callable[[str], Awaitable[object]], keys: list[str], tasks: int) -> float:
    async def worker(offset: int) -> None:
        for key in keys[offset::tasks]:
            await function(key)

    start = time.perf_counter()
    await asyncio.gather(*(worker(offset) for offset in range(tasks)))
    return len(keys) / (time.perf_counter() - start)


def fmt(rate: float) -> str:
    return f"{rate / 1000:.1f}k/s"


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}\n")
    print("| " + " | ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    for row in rows:
        print("| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |")


async def run(url: str, sizes: list[int], repeat: int, tasks: int, loop: str) -> None:
    run_id = f"bench{os.getpid()}"
    manager = StateManager.from_url(f"{url}?prefix={run_id}")
    raw = redis.asyncio.Redis.from_url(url)
    blocking = redis.Redis.from_url(url)
    increment_async = raw.register_script(INCREMENT_LUA)
    increment_sync = blocking.register_script(INCREMENT_LUA)
    rows: list[list[str]] = []
    concurrency: list[list[str]] = []
    try:
        for n in sizes:
            keys = [f"k{i}" for i in range(n)]
            shuffled = [keys[(i * 7919) % n] for i in range(n)]
            samples: dict[str, list[float]] = {}

            def add(name: str, rate: float, samples: dict[str, list[float]] = samples) -> None:
                samples.setdefault(name, []).append(rate)

            for round_number in range(repeat):
                scope = f"{SCOPE}{n}-{round_number}"
                hash_async = f"{run_id}:raw:{scope}"
                hash_sync = f"{run_id}:sync:{scope}"

                async def m_set(key: str, scope: str = scope) -> Any:
                    return await manager.set(scope, key, next_value())

                async def m_get(key: str, scope: str = scope) -> Any:
                    return await manager.get(scope, key)

                async def m_update(key: str, scope: str = scope) -> Any:
                    return await manager.update(scope, key, INCREMENT)

                async def r_set(key: str, name: str = hash_async) -> Any:
                    return await raw.hset(name, key, json.dumps(next_value()))

                async def r_get(key: str, name: str = hash_async) -> Any:
                    return json.loads(await raw.hget(name, key))  # type: ignore[arg-type]

                async def r_update(key: str, name: str = hash_async) -> Any:
                    return await increment_async(keys=[name], args=[key])

                def s_set(key: str, name: str = hash_sync) -> Any:
                    return blocking.hset(name, key, json.dumps(next_value()))

                def s_get(key: str, name: str = hash_sync) -> Any:
                    return json.loads(blocking.hget(name, key))  # type: ignore[arg-type]

                def s_update(key: str, name: str = hash_sync) -> Any:
                    return increment_sync(keys=[name], args=[key])

                # interleaved: pymotia, raw asyncio, raw blocking, per operation
                add("set/m", await time_each(m_set, keys))
                add("set/r", await time_each(r_set, keys))
                add("set/s", time_each_sync(s_set, keys))
                add("get/m", await time_each(m_get, shuffled))
                add("get/r", await time_each(r_get, shuffled))
                add("get/s", time_each_sync(s_get, shuffled))
                add("update/m", await time_each(m_update, keys))
                add("update/r", await time_each(r_update, keys))
                add("update/s", time_each_sync(s_update, keys))
                start = time.perf_counter()
                listed = await manager.list(scope)
                add("list/m", 1 / (time.perf_counter() - start))
                start = time.perf_counter()
                hashed = {k: json.loads(v) for k, v in (await raw.hgetall(hash_async)).items()}
                add("list/r", 1 / (time.perf_counter() - start))
                assert len(listed) == len(hashed) == n
                add("cset/m", await time_concurrent(m_set, keys, tasks))
                add("cset/r", await time_concurrent(r_set, keys, tasks))
                add("cget/m", await time_concurrent(m_get, shuffled, tasks))
                add("cget/r", await time_concurrent(r_get, shuffled, tasks))
                add("cupdate/m", await time_concurrent(m_update, keys, tasks))
                add("cupdate/r", await time_concurrent(r_update, keys, tasks))
                await manager.clear(scope)
                await raw.delete(hash_async, hash_sync)

            med = {name: statistics.median(values) for name, values in samples.items()}
            for op in ("set", "get", "update"):
                rows.append(
                    [
                        f"{n:,}",
                        f"sequential {op}",
                        fmt(med[f"{op}/m"]),
                        fmt(med[f"{op}/r"]),
                        fmt(med[f"{op}/s"]),
                        f"{med[f'{op}/m'] / med[f'{op}/r']:.2f}x",
                        f"{med[f'{op}/m'] / med[f'{op}/s']:.2f}x",
                    ]
                )
            rows.append(
                [
                    f"{n:,}",
                    "list (whole scope)",
                    f"{1000 / med['list/m']:.1f} ms",
                    f"{1000 / med['list/r']:.1f} ms",
                    "",
                    f"{med['list/m'] / med['list/r']:.2f}x",
                    "",
                ]
            )
            for op in ("set", "get", "update"):
                concurrency.append(
                    [
                        f"{n:,}",
                        op,
                        fmt(med[f"{op}/m"]),
                        fmt(med[f"c{op}/m"]),
                        f"{med[f'c{op}/m'] / med[f'{op}/m']:.2f}x",
                        fmt(med[f"c{op}/r"]),
                        f"{med[f'c{op}/r'] / med[f'{op}/r']:.2f}x",
                    ]
                )
    finally:
        await manager.aclose()
        await raw.aclose()
        blocking.close()
    print_table(
        f"Sequential, {loop} loop (median of {repeat} interleaved rounds; ratio = pymotia / peer, higher is better)",
        ["N", "workload", "pymotia redis", "redis-py asyncio", "redis-py blocking", "vs asyncio", "vs blocking"],
        rows,
    )
    print_table(
        f"{tasks} concurrent tasks against one awaited call at a time, {loop} loop",
        ["N", "op", "pymotia sequential", f"pymotia {tasks} tasks", "gain", f"redis-py asyncio {tasks} tasks", "gain"],
        concurrency,
    )


PEERS = Path(__file__).resolve().parents[2] / "shared" / "peers"


def motia_js(motia_dir: str, url: str, sizes: list[int]) -> None:
    """Motia 0.x's @motiadev/adapter-redis-state on the same server (its update is get, +1, set)."""
    result = subprocess.run(
        [
            "node",
            str(PEERS / "motia_js_state_bench.mjs"),
            "--motia-dir",
            motia_dir,
            "--only",
            "redis",
            "--redis-url",
            url.rsplit("/", 1)[0],
            "--sizes",
            ",".join(map(str, sizes)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    figures: dict[tuple[int, str], float] = {}
    lost_update = ""
    for line in result.stdout.splitlines():
        record = json.loads(line)
        if record.get("adapter") != "redis":
            continue
        if "ops_per_s" in record and "n" in record:
            figures[(record["n"], record["op"])] = record["ops_per_s"]
        if "final" in record:
            lost_update = f"{record['final']} / {record.get('expected', '?')}"
    rows = [
        [f"{n:,}", *(fmt(figures[(n, op)]) if (n, op) in figures else "-" for op in ("set", "get", "update_rmw"))]
        for n in sizes
    ]
    print_table(
        f"Motia {json.loads(result.stdout.splitlines()[0]).get('motia', '0.x')} RedisStateAdapter, same server",
        ["N", "set", "get", "update (get, +1, set)"],
        rows,
    )
    if lost_update:
        print(f"\nMotia 0.x, 4 processes x 500 get+set increments on one key: final {lost_update}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an existing Redis server (default: start a private one)")
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--motia-js", help="a folder with Motia 0.x installed (node_modules/motia)")
    add_loop_option(parser)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    process = None
    workdir = None
    url = args.url
    if url is None:
        process, url, workdir = start_server()
    try:
        info = redis.Redis.from_url(url).info("server")
        print(f"redis-server {info['redis_version']}, redis-py {redis.__version__}, {url}")
        run_on(args.loop, run(url, sizes, args.repeat, args.tasks, args.loop))
        if args.motia_js:
            motia_js(args.motia_js, url, sizes)
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
