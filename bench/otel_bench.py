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
  ``on`` (tracing as issue 17 measures it: SDK tracer provider, batch span processor into an in-memory
  exporter, every span sampled; no metrics configured), ``discard`` (``on`` with an exporter that keeps
  nothing, as a network exporter frees what it sent: the SDK's in-memory exporter keeps every span, which
  the garbage collector then walks), ``metrics`` (``on`` plus an SDK meter provider with
  an in-memory reader: the histograms recorded too), ``sampled`` (``on`` with
  ``parentbased_traceidratio`` at 10 %, the production recommendation; HTTP only: the ``set`` loop runs
  inside one span, which is sampled or not as a whole).

Each round runs every mode once, in turn, in a fresh app and store; the ratio is of the summed rates. Beside
wall-clock rates it prints CPU time per operation of this process (``time.process_time()`` around the timed
loop, all threads: the batch exporter's included), which moves far less with other processes' load.

An A/B against older code runs this same script with ``PYTHONPATH`` pointing at the other tree's ``src``,
alternating (``for src in /tmp/base/src src /tmp/base/src src; do PYTHONPATH=$src ... --rounds 1; done``).
"""

from __future__ import annotations

import argparse
import gc
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

MODES = ("off", "idle", "on", "discard", "metrics", "sampled")
SET_MODES = ("off", "idle", "on", "discard", "metrics")


def _discarding_exporter() -> Any:
    """A span exporter that counts what it is given and keeps nothing, as a network exporter (OTLP) frees
    each batch once sent. The SDK's ``InMemorySpanExporter`` keeps every span for the life of the process,
    and the collector then walks all of them again and again: a cost of the benchmark, not of tracing."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Discarding(SpanExporter):
        def __init__(self) -> None:
            self.exported = 0

        def export(self, spans: Any) -> SpanExportResult:
            self.exported += len(spans)
            return SpanExportResult.SUCCESS

    return Discarding()


class On:
    """The telemetry over SDK providers exporting to memory (batch processor), as the issue measures it;
    ``metrics`` adds a meter provider with an in-memory reader, ``ratio`` samples that share of traces."""

    def __init__(self, *, metrics: bool = False, ratio: float | None = None, discard: bool = False) -> None:
        from opentelemetry import metrics as otel_metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        from motia.runtime.telemetry import enable

        self.exporter: Any = _discarding_exporter() if discard else InMemorySpanExporter()
        sampler = ParentBased(TraceIdRatioBased(ratio)) if ratio is not None else None
        self.tracer_provider = TracerProvider(sampler=sampler)
        self.tracer_provider.add_span_processor(BatchSpanProcessor(self.exporter))
        # Without metrics: the global provider as `motia run` finds it with no OTEL_METRICS_EXPORTER (the
        # unset proxy; code before session 23 records into it, newer code skips it).
        self.meter_provider: Any = (
            MeterProvider(metric_readers=[InMemoryMetricReader()]) if metrics else otel_metrics.get_meter_provider()
        )
        self.telemetry = enable(self.tracer_provider, self.meter_provider)
        observe.install(self.telemetry)

    def close(self) -> int:
        observe.stop(self.telemetry)
        self.tracer_provider.force_flush()
        spans = getattr(self.exporter, "exported", None)
        if spans is None:
            spans = len(self.exporter.get_finished_spans())
        self.tracer_provider.shutdown()
        if hasattr(self.meter_provider, "shutdown"):
            self.meter_provider.shutdown()
        return spans


def enter(mode: str) -> On | None:
    if mode == "idle":
        import opentelemetry.sdk.trace  # noqa: F401 - the extra installed and imported, tracing not asked for

        assert not observe.tracing_requested({}) and observe.start_from_env({}) is None
    if mode == "on":
        return On()
    if mode == "discard":
        return On(discard=True)
    if mode == "metrics":
        return On(metrics=True)
    if mode == "sampled":
        return On(ratio=0.1)
    return None


async def http_rate(n: int, mode: str, tmp: str) -> tuple[float, float, int]:
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
        gc.collect()  # the garbage of earlier rounds (their spans, apps) is not this mode's cost
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            await asgi(dict(SCOPE), receive, send)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert set(statuses) == {200}, set(statuses)
    finally:
        await app.shutdown()
    spans = telemetry.close() if telemetry is not None else 0
    return n / elapsed, cpu / n, spans


async def set_rate(n: int, mode: str, tmp: str) -> tuple[float, float, int]:
    telemetry = enter(mode)
    state = StateManager.from_url(f"sqlite:///{tmp}/set-{mode}-{time.monotonic_ns()}.db")
    value = {"name": "bench", "n": 1, "tags": ["a", "b"]}

    async def loop() -> tuple[float, float]:
        for i in range(200):  # warm-up
            await state.set("bench", f"w{i}", value)
        gc.collect()  # the garbage of earlier rounds (their spans, stores) is not this mode's cost
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(n):
            await state.set("bench", f"k{i}", value)
        return time.perf_counter() - start, time.process_time() - cpu

    try:
        if telemetry is not None:
            with telemetry.telemetry.tracer.start_as_current_span("step bench"):  # as inside a handler run
                elapsed, cpu = await loop()
        else:
            elapsed, cpu = await loop()
    finally:
        await state.aclose()
    spans = telemetry.close() if telemetry is not None else 0
    return n / elapsed, cpu / n, spans


def report(name: str, rates: dict[str, list[float]], cpus: dict[str, list[float]], target_on: float) -> None:
    off, off_cpu = sum(rates["off"]), statistics.median(cpus["off"])
    print(f"\n{name}: per-round rates (ops/s); ratio of summed rates to 'off'; median CPU us/op and its ratio")
    for mode, mode_rates in rates.items():
        rounds = " ".join(f"{rate:9.0f}" for rate in mode_rates)
        ratio = sum(mode_rates) / off
        cpu = statistics.median(cpus[mode])
        print(
            f"  {mode:<7} {rounds}   median {statistics.median(mode_rates):9.0f}   x{ratio:.3f} ({ratio - 1:+.1%})"
            f"   cpu {cpu * 1e6:8.1f} us/op x{cpu / off_cpu:.2f}"
        )
    for what, target in (("on", target_on), ("discard", target_on), ("idle", 0.03), ("sampled", target_on)):
        if what in rates:
            cost = 1 - sum(rates[what]) / off
            cpu_cost = 1 - off_cpu / statistics.median(cpus[what])  # as a rate: ops/CPU-s lost
            verdict = "met" if cost <= target else "MISSED"
            print(f"  {what} costs {cost:.1%} wall, {cpu_cost:.1%} CPU rate (target <= {target:.0%}: {verdict})")


async def main(rounds: int, n: int) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER"):
        os.environ.pop(name, None)
    http: dict[str, list[float]] = {mode: [] for mode in MODES}
    sets: dict[str, list[float]] = {mode: [] for mode in SET_MODES}
    http_cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    set_cpu: dict[str, list[float]] = {mode: [] for mode in SET_MODES}
    spans: dict[str, int] = {}
    runs: list[
        tuple[dict[str, list[float]], dict[str, list[float]], Callable[[int, str, str], Awaitable[Any]], str]
    ] = [(http, http_cpu, http_rate, "http"), (sets, set_cpu, set_rate, "set")]
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(rounds):
            for table, cpu_table, run, label in runs:
                modes = tuple(table)
                order = modes if round_no % 2 == 0 else tuple(reversed(modes))  # alternate who goes first
                for mode in order:
                    rate, cpu, exported = await run(n, mode, tmp)
                    table[mode].append(rate)
                    cpu_table[mode].append(cpu)
                    spans[f"{label}/{mode}"] = exported
    print(f"{rounds} rounds, {n} requests and {n} sets per mode and round; uvloop; load average {os.getloadavg()}")
    print(
        f"spans exported in the last round: http on {spans['http/on']}, sampled {spans['http/sampled']};"
        f" set on {spans['set/on']}"
    )
    report("HTTP GET /session/:id (in-process ASGI)", http, http_cpu, 0.15)
    report("sequential state set (SQLite)", sets, set_cpu, 0.25)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-n", type=int, default=5000)
    args = ap.parse_args()
    uvloop.run(main(args.rounds, args.n))
