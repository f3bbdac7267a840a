"""What OpenTelemetry costs on HTTP over real sockets (issue 17): ``motia run`` (examples/sessions, SQLite)
loaded by wrk, with tracing off, with OpenTelemetry imported but no exporter, and on, in interleaved rounds.

    apt-get install -y wrk
    .venv/bin/python bench/otel_http_bench.py --rounds 3 --duration 5

The server is bench/http_bench.py's ``motia run`` (same flags, same store, same request). "on" gives the
subprocess a ``sitecustomize`` that sets global SDK providers exporting to memory (a batch span processor
and an in-memory metric reader), as ``opentelemetry-instrument`` would: pymotia finds them and traces every
request (a server span and a ``state.get`` span, plus their metrics). "idle" only imports the SDK.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_bench import motia_starter, run_wrk, stop  # noqa: E402 - the HTTP benchmark's server and client

SITE = {
    "idle": "import opentelemetry.sdk.trace  # the extra installed and imported; no provider, no OTEL_* variable\n",
    "on": textwrap.dedent(
        """
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
        trace.set_tracer_provider(provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
        """
    ),
}
MODES = ("off", "idle", "on")


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
                    result = run_wrk(mode, port, args)
                finally:
                    stop(proc)
                if result.errors:
                    raise SystemExit(f"{mode}: errors {result.errors}")
                rates[mode].append(result.requests / result.seconds)
                print(f"round {round_no + 1} {mode:<5} {rates[mode][-1]:8.0f} req/s", flush=True)
    print(f"\n{args.rounds} rounds, wrk -t1 -c{args.connections} {args.duration:g} s each; load {os.getloadavg()}")
    off = sum(rates["off"])
    for mode in MODES:
        ratio = sum(rates[mode]) / off
        print(
            f"  {mode:<5} median {statistics.median(rates[mode]):8.0f} req/s   x{ratio:.3f} ({ratio - 1:+.1%})"
            f"   rounds: {' '.join(f'{r:.0f}' for r in rates[mode])}"
        )


if __name__ == "__main__":
    main()
