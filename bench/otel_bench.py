"""What OpenTelemetry costs (issue 17): the HTTP path and a sequential state ``set``, with tracing off, with the
extra installed but no exporter configured, and on (in-memory exporter behind a batch processor, plus an
in-memory metric reader), interleaved in one run.

    .venv/bin/python bench/otel_bench.py                      # 5 rounds, 5000 requests and 5000 sets per mode
    .venv/bin/python bench/otel_bench.py --rounds 7 -n 10000

* **HTTP**: GET /session/:id through the ASGI app ``motia run`` serves (examples/sessions, SQLite store),
  called in-process on uvloop as bench/http_inprocess.py does: pymotia's own CPU per request, without
  uvicorn and sockets. Requests per second of the server loop alone: the relative overhead is an *upper
  bound* of what a client sees over real sockets (where parsing and the network add the same fixed cost to
  every mode).
* **set**: ``await state.set(scope, key, value)`` one after another on a SQLite store, each inside a
  handler-like span when tracing is on (state operations are traced inside runs only).
* modes: ``off`` (no telemetry; OpenTelemetry not imported until the first ``idle`` round),
  ``idle`` (OpenTelemetry imported, ``OTEL_*`` unset: what ``pymotia[otel]`` without an exporter costs),
  ``on`` (the telemetry enabled over SDK providers: every span recorded and exported in batches).

Each round runs every mode once, in turn, in a fresh app and store; the ratio is of the summed rates.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import uvloop

from motia.runtime import observe
from motia.runtime.app import MotiaApp
from motia.runtime.http import build_asgi
from motia.state.manager import StateManager
from motia.steps.loader import load_steps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from http_inprocess import SCOPE, SESSION  # noqa: E402 - the same request as bench/http_inprocess.py

MODES = ("off", "idle", "on")


class On:
    """The telemetry over SDK providers exporting to memory (batch processor), as the brief measures it."""

    def __init__(self) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from motia.runtime.telemetry import enable

        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        self.telemetry = enable(self.tracer_provider, self.meter_provider)
        observe.install(self.telemetry)

    def close(self) -> int:
        observe.stop(self.telemetry)
        self.tracer_provider.force_flush()
        spans = len(self.exporter.get_finished_spans())
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        return spans


def enter(mode: str) -> On | None:
    if mode == "idle":
        import opentelemetry.sdk.trace  # noqa: F401 - the extra installed and imported, tracing not asked for

        assert not observe.tracing_requested({}) and observe.start_from_env({}) is None
    return On() if mode == "on" else None


async def http_rate(n: int, mode: str, tmp: str) -> tuple[float, int]:
    telemetry = enter(mode)
    steps = [ls.step for ls in load_steps(REPO / "examples/sessions/steps")]
    app = MotiaApp(steps, state=f"sqlite:///{tmp}/http-{mode}-{time.monotonic_ns()}.db", delivery=False, cron=False)
    asgi = build_asgi(app)
    await app.startup()
    try:
        await app.state.set("user-sessions", "bench-session", orjson.loads(SESSION))
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        for _ in range(500):  # warm-up
            await asgi(dict(SCOPE), receive, send)
        start = time.perf_counter()
        for _ in range(n):
            await asgi(dict(SCOPE), receive, send)
        elapsed = time.perf_counter() - start
        assert set(statuses) == {200}, set(statuses)
    finally:
        await app.shutdown()
    spans = telemetry.close() if telemetry is not None else 0
    return n / elapsed, spans


async def set_rate(n: int, mode: str, tmp: str) -> tuple[float, int]:
    telemetry = enter(mode)
    state = StateManager.from_url(f"sqlite:///{tmp}/set-{mode}-{time.monotonic_ns()}.db")
    value = {"name": "bench", "n": 1, "tags": ["a", "b"]}

    async def loop() -> float:
        for i in range(200):  # warm-up
            await state.set("bench", f"w{i}", value)
        start = time.perf_counter()
        for i in range(n):
            await state.set("bench", f"k{i}", value)
        return time.perf_counter() - start

    try:
        if telemetry is not None:
            with telemetry.telemetry.tracer.start_as_current_span("step bench"):  # as inside a handler run
                elapsed = await loop()
        else:
            elapsed = await loop()
    finally:
        await state.aclose()
    spans = telemetry.close() if telemetry is not None else 0
    return n / elapsed, spans


def report(name: str, rates: dict[str, list[float]], target_on: float, target_idle: float) -> None:
    off = sum(rates["off"])
    print(f"\n{name}: per-round rates (ops/s), then the ratio of summed rates to 'off'")
    for mode in MODES:
        rounds = " ".join(f"{rate:9.0f}" for rate in rates[mode])
        ratio = sum(rates[mode]) / off
        print(f"  {mode:<5} {rounds}   median {statistics.median(rates[mode]):9.0f}   x{ratio:.3f} ({ratio - 1:+.1%})")
    on_cost = 1 - sum(rates["on"]) / off
    idle_cost = 1 - sum(rates["idle"]) / off
    for what, cost, target in (("on", on_cost, target_on), ("idle", idle_cost, target_idle)):
        print(f"  {what} costs {cost:.1%} (target <= {target:.0%}: {'met' if cost <= target else 'MISSED'})")


async def main(rounds: int, n: int) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER"):
        os.environ.pop(name, None)
    http: dict[str, list[float]] = {mode: [] for mode in MODES}
    sets: dict[str, list[float]] = {mode: [] for mode in MODES}
    spans: dict[str, int] = {}
    runs: list[tuple[dict[str, list[float]], Callable[[int, str, str], Awaitable[tuple[float, int]]], str]] = [
        (http, http_rate, "http"),
        (sets, set_rate, "set"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(rounds):
            order = MODES if round_no % 2 == 0 else tuple(reversed(MODES))  # alternate who goes first
            for table, run, label in runs:
                for mode in order:
                    rate, exported = await run(n, mode, tmp)
                    table[mode].append(rate)
                    spans[f"{label}/{mode}"] = exported
    print(f"{rounds} rounds, {n} requests and {n} sets per mode and round; uvloop; load average {os.getloadavg()}")
    print(f"spans exported in the last 'on' round: http {spans['http/on']}, set {spans['set/on']}")
    report("HTTP GET /session/:id (in-process ASGI)", http, 0.15, 0.03)
    report("sequential state set (SQLite)", sets, 0.25, 0.03)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-n", type=int, default=5000)
    args = ap.parse_args()
    uvloop.run(main(args.rounds, args.n))
