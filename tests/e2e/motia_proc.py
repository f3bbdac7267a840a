"""Helpers to run ``motia`` as a real subprocess on a free loopback port (imported by the e2e tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from tests.failure_report import on_failure, tail
from tests.server_process import spawn_tied

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_STEPS = REPO / "examples" / "sessions" / "steps"
EXTRA_STEPS = Path(__file__).resolve().parent / "steps_extra"
START_DEADLINE = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(predicate, *, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Call ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {timeout}s")
        time.sleep(interval)


class MotiaProcess:
    """A ``motia`` subprocess; output goes to a log file so it can never block on a full pipe."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        cwd: Path,
        log_path: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}" if port else ""
        self.log_path = log_path
        # The caller's MOTIA_STATE_URL must not leak into tests that check the default store.
        full_env = {k: v for k, v in os.environ.items() if k != "MOTIA_STATE_URL"}
        full_env.update({"NO_COLOR": "1", **(env or {})})
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        # Stopped gracefully (SIGTERM) if this process dies without stopping it: a pytest killed with SIGKILL
        # leaves no `motia run` serving behind (tests.server_process.spawn_tied).
        self.proc = spawn_tied(
            [sys.executable, "-m", "motia", *args],
            signal.SIGTERM,
            cwd=cwd,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = START_DEADLINE) -> MotiaProcess:
        def ready() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"motia exited with {self.proc.returncode} before serving:\n{self.logs()}")
            try:
                return httpx.get(f"{self.url}/__motia/health", timeout=1.0).status_code == 200
            except httpx.TransportError:
                return False

        poll(ready, timeout=timeout, what=f"readiness of {self.url}")
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"motia did not stop within {timeout}s after {signal.Signals(sig).name}:\n{self.logs()}")
        finally:
            self._log.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def start_run(
    tmp_path: Path,
    steps_dir: Path | str | None,
    *,
    state: str | None = None,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    name: str = "motia",
) -> MotiaProcess:
    port = free_port()
    args = ["run", "--port", str(port)]
    if steps_dir is not None:
        args += ["--dir", str(steps_dir)]
    if state is not None:
        args += ["--state", state]
    args += list(extra)
    return MotiaProcess(args, cwd=cwd or REPO, log_path=tmp_path / f"{name}-{port}.log", env=env, port=port)


@pytest.fixture
def run_motia(tmp_path, request) -> Iterator[Callable[..., MotiaProcess]]:
    """Start ``motia run`` processes (killed at the end of the test if still running); a failed test's report
    quotes the end of each one's output."""
    started: list[MotiaProcess] = []

    def start(*args, **kwargs) -> MotiaProcess:
        proc = start_run(tmp_path, *args, **kwargs)
        started.append(proc)
        on_failure(request.node, f"motia output ({proc.log_path.name})", lambda: tail(proc.logs()))
        return proc

    yield start
    for proc in started:
        proc.kill()
