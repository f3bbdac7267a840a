"""PostgreSQL benchmark: pymotia's PostgreSQL backend against raw asyncpg doing the plain thing, in one run.

Run from the repository root (starts a private PostgreSQL cluster on a free port, as the tests do, with the
server's defaults: ``fsync=on``, ``synchronous_commit=on``, so every commit waits for its WAL flush):

    .venv/bin/python bench/postgres_bench.py                         # N=1,000, 5 rounds
    .venv/bin/python bench/postgres_bench.py --url postgresql://u:p@host/db   # an existing server
    .venv/bin/python bench/postgres_bench.py --drivers               # also asyncpg against psycopg 3

The raw peer is asyncpg on one connection, no schema of ours: ``INSERT ... ON CONFLICT DO UPDATE`` per set,
``SELECT`` per get, and ``BEGIN; SELECT ... FOR UPDATE; UPDATE; COMMIT`` per update (what an application
that wants an atomic read-modify-write writes by hand). pymotia does more per call: versions, TTL, the
events flag, a commit token (so a retried write is never applied twice), and a transaction per write.
"Concurrent" runs N sets from 100 tasks at once (pymotia pools 10 connections per event loop).
Figures are medians of interleaved rounds.

``--drivers`` repeats the measurement that chose the driver: 2,000 sequential upserts on one connection
and 2,000 concurrent ones over a pool of 10, asyncpg against psycopg 3 (``pip install 'psycopg[binary]'
psycopg-pool`` first; not a dependency of pymotia).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.postgres_server import PostgresServer  # noqa: E402 - the tests' private cluster

from motia import StateManager  # noqa: E402

SCOPE = "sessions"
INCREMENT = [{"type": "increment", "path": "expiresAt", "value": 1}]
RAW_TABLE = (
    "CREATE TABLE IF NOT EXISTS raw_kv (scope text, key text, value jsonb, version bigint, PRIMARY KEY (scope, key))"
)


async def timed(n: int, run: Callable[[int], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    for i in range(n):
        await run(i)
    return n / (time.perf_counter() - started)


async def timed_concurrently(n: int, run: Callable[[int], Awaitable[Any]], tasks: int = 100) -> float:
    gate = asyncio.Semaphore(tasks)

    async def one(i: int) -> None:
        async with gate:
            await run(i)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - started)


async def round_pymotia(url: str, n: int, round_no: int) -> dict[str, float]:
    state = StateManager.from_url(f"{url}{'&' if '?' in url else '?'}schema=bench_{round_no}")
    try:
        value = {"userId": "42", "expiresAt": 0, "data": {}}
        return {
            "set": await timed(n, lambda i: state.set(SCOPE, f"k{i}", value)),
            "get": await timed(n, lambda i: state.get(SCOPE, f"k{i}")),
            "update": await timed(n, lambda i: state.update(SCOPE, f"k{i}", INCREMENT)),
            "concurrent set": await timed_concurrently(n, lambda i: state.set(SCOPE, f"c{i}", value)),
        }
    finally:
        await state.aclose()


async def round_raw(url: str, n: int, round_no: int) -> dict[str, float]:
    conn = await asyncpg.connect(url.split("?", 1)[0])
    pool = await asyncpg.create_pool(url.split("?", 1)[0], min_size=10, max_size=10)
    try:
        table = f"raw_kv_{round_no}"
        await conn.execute(RAW_TABLE.replace("raw_kv", table))
        value = '{"userId": "42", "expiresAt": 0, "data": {}}'
        upsert = (
            f"INSERT INTO {table} VALUES ($1, $2, $3::jsonb, 1) ON CONFLICT (scope, key)"
            f" DO UPDATE SET value = excluded.value, version = {table}.version + 1"
        )

        async def update(i: int) -> None:
            async with conn.transaction():
                row = await conn.fetchrow(
                    f"SELECT value, version FROM {table} WHERE scope = $1 AND key = $2 FOR UPDATE", SCOPE, f"k{i}"
                )
                await conn.execute(
                    f"UPDATE {table} SET value = jsonb_set($3::jsonb, '{{expiresAt}}',"
                    f" to_jsonb(($3::jsonb->>'expiresAt')::int + 1)), version = $4 WHERE scope = $1 AND key = $2",
                    SCOPE,
                    f"k{i}",
                    row[0],
                    row[1] + 1,
                )

        async def pooled_set(i: int) -> None:
            async with pool.acquire() as c:
                await c.execute(upsert, SCOPE, f"c{i}", value)

        return {
            "set": await timed(n, lambda i: conn.execute(upsert, SCOPE, f"k{i}", value)),
            "get": await timed(
                n, lambda i: conn.fetchrow(f"SELECT value FROM {table} WHERE scope = $1 AND key = $2", SCOPE, f"k{i}")
            ),
            "update": await timed(n, update),
            "concurrent set": await timed_concurrently(n, pooled_set),
        }
    finally:
        await pool.close()
        await conn.close()


async def drivers(url: str, n: int = 2000) -> None:
    for _ in range(2):
        await _drivers_once(url.split("?", 1)[0], n)


async def _drivers_once(dsn: str, n: int) -> None:
    import psycopg
    import psycopg_pool

    setup = "DROP TABLE IF EXISTS drivers; CREATE TABLE drivers (key text PRIMARY KEY, value bytea)"
    upsert_a = "INSERT INTO drivers VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    upsert_p = upsert_a.replace("$1", "%s").replace("$2", "%s")
    conn = await asyncpg.connect(dsn)
    await conn.execute(setup)
    seq_a = await timed(n, lambda i: conn.execute(upsert_a, f"k{i % 100}", b"{}"))
    await conn.close()
    pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)

    async def one_a(i: int) -> None:
        async with pool.acquire() as c:
            await c.execute(upsert_a, f"c{i}", b"{}")

    conc_a = await timed_concurrently(n, one_a, tasks=n)
    await pool.close()
    pconn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    seq_p = await timed(n, lambda i: pconn.execute(upsert_p, (f"k{i % 100}", b"{}"), prepare=True))
    await pconn.close()
    ppool = psycopg_pool.AsyncConnectionPool(dsn, min_size=10, max_size=10, kwargs={"autocommit": True}, open=False)
    await ppool.open()

    async def one_p(i: int) -> None:
        async with ppool.connection() as c:
            await c.execute(upsert_p, (f"p{i}", b"{}"), prepare=True)

    conc_p = await timed_concurrently(n, one_p, tasks=n)
    await ppool.close()
    print(f"asyncpg  sequential {seq_a:7.0f}/s  concurrent (pool 10) {conc_a:7.0f}/s")
    print(f"psycopg3 sequential {seq_p:7.0f}/s  concurrent (pool 10) {conc_p:7.0f}/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", help="an existing server (default: start a private cluster)")
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--drivers", action="store_true", help="also compare asyncpg with psycopg 3")
    args = parser.parse_args()
    server = None if args.url else PostgresServer()
    url = args.url or f"{server.url}?timeout=60"  # type: ignore[union-attr]
    try:
        results: dict[str, dict[str, list[float]]] = {"pymotia": {}, "asyncpg": {}}
        for round_no in range(args.repeat):
            for name, run in (("pymotia", round_pymotia), ("asyncpg", round_raw)):
                for workload, rate in asyncio.run(run(url, args.n, round_no)).items():
                    results[name].setdefault(workload, []).append(rate)
        print(f"N={args.n}, median of {args.repeat} interleaved rounds")
        print(f"{'workload':<16} {'pymotia':>10} {'asyncpg':>10} {'ratio':>7}")
        for workload, rates in results["pymotia"].items():
            ours, raw = statistics.median(rates), statistics.median(results["asyncpg"][workload])
            print(f"{workload:<16} {ours:>8.0f}/s {raw:>8.0f}/s {ours / raw:>6.2f}x")
        seq = statistics.median(results["pymotia"]["set"])
        concurrent = statistics.median(results["pymotia"]["concurrent set"])
        print(f"pymotia: 100 concurrent tasks {concurrent / seq:.1f}x its own sequential set rate")
        if args.drivers:
            asyncio.run(drivers(url))
    finally:
        if server is not None:
            server.close()


if __name__ == "__main__":
    main()
