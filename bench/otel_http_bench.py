"""What OpenTelemetry costs on HTTP over real sockets (issue 17): ``motia run`` (examples/sessions, SQLite)
loaded by wrk, with tracing off, with OpenTelemetry imported but no exporter, and on, in interleaved rounds.

    apt-get install -y wrk
    .venv/bin/python bench/otel_http_bench.py --rounds 3 --duration 5

The server is bench/http_bench.py's ``motia run`` (same flags, same store, same request). "on" gives the
subprocess a ``sitecustomize`` that sets a global SDK tracer provider exporting to memory (a batch span
processor), as ``opentelemetry-instrument`` would: pymotia finds it and traces every request (a server span
and a ``state.get`` span). "metrics" also sets a global SDK meter provider (an in-memory reader), so the
histograms are recorded too; "sampled" is "on" with ``parentbased_traceidratio`` at 10 %; "discard" is "on"
with an exporter that keeps nothing, as a network exporter frees what it sent (the in-memory exporter keeps
every span of the run, which the garbage collector walks again and again). "idle" only imports the SDK.

Beside requests per second it prints the server process's CPU time per request (user + system, from
``/proc/<pid>/stat`` around the timed run, after the warm-up), which moves far less with other load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_bench import motia_starter, run_wrk, stop  # noqa: E402 - the HTTP benchmark's server and client

_TRACER = """
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

provider = TracerProvider(sampler={sampler})
provider.add_span_processor(BatchSpanProcessor({exporter}))
trace.set_tracer_provider(provider)
"""
#: An exporter keeping nothing, as a network exporter frees each batch once sent (the SDK's in-memory exporter
#: keeps every span of the run, which the garbage collector then walks again and again).
_DISCARD = """
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class Discarding(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS
"""
_METER = "metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))\n"
SITE = {
    "idle": "import opentelemetry.sdk.trace  # the extra installed and imported; no provider, no OTEL_* variable\n",
    "on": _TRACER.format(sampler=None, exporter="InMemorySpanExporter()"),
    "discard": _DISCARD + _TRACER.format(sampler=None, exporter="Discarding()"),
    "metrics": _TRACER.format(sampler=None, exporter="InMemorySpanExporter()") + _METER,
    "sampled": _TRACER.format(sampler="ParentBased(TraceIdRatioBased(0.1))", exporter="InMemorySpanExporter()"),
}
MODES = ("off", "idle", "on", "discard", "metrics", "sampled")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    args.wrk_threads = 1
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER"):
        os.environ.pop(name, None)
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpus: dict[str, list[float]] = {mode: [] for mode in MODES}
    warmup = argparse.Namespace(**{**vars(args), "duration": args.warmup, "warmup": 0})
    timed = argparse.Namespace(**{**vars(args), "warmup": 0})
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        starters = {}
        for mode in MODES:
            site = tmp / f"site-{mode}"
            site.mkdir()
            if mode in SITE:
                (site / "sitecustomize.py").write_text(SITE[mode])
            starters[mode] = motia_starter(src=site, tag=mode)
        for round_no in range(args.rounds):
            order = MODES if round_no % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                proc, port = starters[mode](tmp)
                try:
                    if args.warmup > 0:
                        run_wrk(mode, port, warmup)
                    before = cpu_seconds(proc.pid)
                    result = run_wrk(mode, port, timed)
                    cpu = cpu_seconds(proc.pid) - before
                finally:
                    stop(proc)
                if result.errors:
                    raise SystemExit(f"{mode}: errors {result.errors}")
                rates[mode].append(result.requests / result.seconds)
                cpus[mode].append(cpu / result.requests)
                line = f"round {round_no + 1} {mode:<7} {rates[mode][-1]:8.0f} req/s"
                print(f"{line}   cpu {cpus[mode][-1] * 1e6:6.1f} us/req", flush=True)
    print(f"\n{args.rounds} rounds, wrk -t1 -c{args.connections} {args.duration:g} s each; load {os.getloadavg()}")
    off, off_cpu = sum(rates["off"]), statistics.median(cpus["off"])
    for mode in MODES:
        ratio = sum(rates[mode]) / off
        cpu = statistics.median(cpus[mode])
        print(
            f"  {mode:<7} median {statistics.median(rates[mode]):8.0f} req/s   x{ratio:.3f} ({ratio - 1:+.1%})"
            f"   cpu {cpu * 1e6:6.1f} us/req x{cpu / off_cpu:.2f}"
            f"   rounds: {' '.join(f'{r:.0f}' for r in rates[mode])}"
        )


if __name__ == "__main__":
    main()
