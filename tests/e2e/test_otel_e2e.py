"""OpenTelemetry across real ``motia run`` processes (issue 17): one trace across two instances on Redis
(spans read from ``OTEL_TRACES_EXPORTER=console`` output), and OpenTelemetry never imported without the
``OTEL_*`` variables or without the extra."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from motia import SyncStateManager
from tests.e2e.motia_proc import REPO, MotiaProcess, poll

STEPS = Path(__file__).resolve().parent / "steps_otel"
NO_OTEL = {"OTEL_TRACES_EXPORTER": "", "OTEL_METRICS_EXPORTER": "", "OTEL_LOGS_EXPORTER": ""}
#: Console exporters, flushed often (the batch processor's delay in milliseconds).
CONSOLE = {**NO_OTEL, "OTEL_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_SERVICE_NAME": "shop"}


def console_spans(text: str) -> list[dict[str, Any]]:
    """The spans the console exporter printed (one indented JSON object each) among the log lines."""
    decoder = json.JSONDecoder()
    spans = []
    at = text.find("\n{")
    while at >= 0:
        try:
            found, end = decoder.raw_decode(text, at + 1)
        except json.JSONDecodeError:
            end = at + 2
        else:
            if isinstance(found, dict) and "context" in found:
                spans.append(found)
        at = text.find("\n{", end)
    return spans


def test_one_trace_across_two_instances_on_redis(
    run_motia: Callable[..., MotiaProcess], redis_server: Any, tmp_path: Path
) -> None:
    # Given two instances on one Redis: the front serves the HTTP step, the back runs the state trigger
    # and the queue step; both export their spans to the console
    url = f"{redis_server.url}?prefix=otel-{uuid.uuid4().hex[:12]}"
    front = run_motia(STEPS / "front", state=url, name="front", env=CONSOLE).wait_ready()
    back = run_motia(STEPS / "back", state=url, name="back", env=CONSOLE).wait_ready()
    # When a request comes in at the front
    response = httpx.post(f"{front.url}/orders", json={"id": "o1", "qty": 1}, timeout=10)
    assert response.status_code == 201
    trace_id = response.json()["trace"]
    with SyncStateManager.from_url(url) as store:
        shipped = poll(lambda: store.get("shipped", "o1"), timeout=20, what="the queue step at the back")
    assert front.stop() == 0 and back.stop() == 0  # flushes the exporters
    # Then the back's runs are in the request's trace, children of the front's spans
    front_spans = {span["name"]: span for span in console_spans(front.logs())}
    back_spans = {span["name"]: span for span in console_spans(back.logs())}
    request, write = front_spans["step create-order"], front_spans["state.set"]
    on_order, enqueue, ship = back_spans["step on-order"], back_spans["enqueue order.placed"], back_spans["step ship"]
    assert {span["context"]["trace_id"] for span in (request, write, on_order, enqueue, ship)} == {f"0x{trace_id}"}
    assert shipped == {"trace": trace_id}
    assert request["parent_id"] is None and request["kind"] == "SpanKind.SERVER"
    assert write["parent_id"] == request["context"]["span_id"]
    assert on_order["parent_id"] == write["context"]["span_id"]
    assert enqueue["parent_id"] == on_order["context"]["span_id"]
    assert ship["parent_id"] == enqueue["context"]["span_id"]
    assert request["resource"]["attributes"]["service.name"] == "shop"
    assert response.headers["traceparent"].startswith(f"00-{trace_id}-")


def test_motia_run_without_otel_variables_imports_no_opentelemetry(
    run_motia: Callable[..., MotiaProcess], tmp_path: Path
) -> None:
    # Given motia run with the extra installed but no OTEL_* variable
    proc = run_motia(STEPS / "front", state=f"sqlite:///{tmp_path / 's.db'}", env=NO_OTEL).wait_ready()
    # When it serves a request
    response = httpx.post(f"{proc.url}/orders", json={"id": "o1", "qty": 1}, timeout=10)
    # Then it traced nothing and imported no OpenTelemetry module
    assert len(response.json()["trace"]) == 16 and "traceparent" not in response.headers
    assert httpx.get(f"{proc.url}/otel-modules", timeout=10).json() == []
    proc.stop()


def test_import_motia_imports_no_opentelemetry() -> None:
    code = "import sys, motia, motia.runtime.app; print(sorted(m for m in sys.modules if 'opentelemetry' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_without_the_extra_motia_run_warns_and_runs_untraced(
    run_motia: Callable[..., MotiaProcess], tmp_path: Path
) -> None:
    # Given a Python where OpenTelemetry cannot be imported (as without pymotia[otel]), and tracing asked for
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoOtel:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'opentelemetry' or name.startswith('opentelemetry.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, _NoOtel())\n"
    )
    env = {**CONSOLE, "PYTHONPATH": str(site)}
    proc = run_motia(STEPS / "front", state=f"sqlite:///{tmp_path / 's.db'}", env=env).wait_ready()
    # When it serves a request
    response = httpx.post(f"{proc.url}/orders", json={"id": "o1", "qty": 1}, timeout=10)
    # Then it answers untraced, says what to install, and imported nothing of OpenTelemetry
    assert response.status_code == 201 and "traceparent" not in response.headers
    assert httpx.get(f"{proc.url}/otel-modules", timeout=10).json() == []
    proc.stop()
    assert "install pymotia[otel]" in proc.logs()


def test_console_traces_alone_keep_the_flow_for_the_traces_view_with_no_exporter(
    run_motia: Callable[..., MotiaProcess], tmp_path: Path
) -> None:
    # Given motia run asked to keep traces for its console only: no OTEL_* exporter at all
    env = {**NO_OTEL, "MOTIA_CONSOLE_TRACES": "1"}
    proc = run_motia(STEPS / "front", state=f"sqlite:///{tmp_path / 's.db'}", env=env).wait_ready()
    # When it serves a request
    response = httpx.post(f"{proc.url}/orders", json={"id": "o1", "qty": 1}, timeout=10)
    trace_id = response.json()["trace"]
    assert len(trace_id) == 32 and response.headers["traceparent"].startswith(f"00-{trace_id}-")

    # Then the console's Traces view has the request's trace (the server span ends after the answer is sent)
    def kept() -> dict[str, Any] | None:
        found = httpx.get(f"{proc.url}/__motia/api/traces/{trace_id}", timeout=10)
        return found.json() if found.status_code == 200 else None

    trace = poll(kept, timeout=20, what="the trace in the console's buffer")
    names = [span["name"] for span in trace["spans"]]
    assert "step create-order" in names and "state.set" in names
    assert proc.stop() == 0
    assert not console_spans(proc.logs())  # nothing exported
