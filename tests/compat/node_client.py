"""Motia's real Node stream client (``@motiadev/stream-client-node``), installed by the test set-up and run
as a subprocess (``stream_client_node/drive.mjs``) that prints what the client sees as JSON lines.

The package is installed with ``npm ci`` into ``tests/compat/stream_client_node/node_modules`` (gitignored)
from the committed ``package.json``/``package-lock.json``: ``scripts/test`` does it on a fresh machine and
:func:`ensure_installed` does it when the tests run alone. Without Node or npm, or when the install fails,
the tests skip with the reason on a developer machine and fail in CI (``CI=true``): never a silent skip.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

NODE_DIR = Path(__file__).resolve().parent / "stream_client_node"
CLIENT_PACKAGE = NODE_DIR / "node_modules" / "@motiadev" / "stream-client-node" / "package.json"
#: Motia's browser client, installed beside it from the same package.json (test_stream_client_browser.py).
BROWSER_PACKAGE = NODE_DIR / "node_modules" / "@motiadev" / "stream-client-browser" / "package.json"
DRIVER = NODE_DIR / "drive.mjs"
#: The client version the compatibility claim is about (SPEC 10: Motia's 0.17.x clients).
CLIENT_VERSION = "0.17.6-beta.187"
INSTALL_TIMEOUT = 300.0

_install_lock = threading.Lock()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the Node client test must run; scripts/test installs it)", pytrace=False)
    pytest.skip(f"{reason}; run `bash scripts/test` to install it")


def ensure_installed() -> str:
    """The ``node`` executable, with the client package installed (``npm ci`` on first use)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node and npm are needed for the Motia Node client test (Debian: apt-get install nodejs npm)")
    assert node is not None and npm is not None
    with _install_lock:
        if not (CLIENT_PACKAGE.exists() and BROWSER_PACKAGE.exists()):
            try:
                done = subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                    cwd=NODE_DIR,
                    capture_output=True,
                    text=True,
                    timeout=INSTALL_TIMEOUT,
                )
            except subprocess.TimeoutExpired:
                _unavailable(f"npm ci in {NODE_DIR} did not finish within {INSTALL_TIMEOUT:.0f}s")
            if done.returncode != 0:
                _unavailable(f"npm ci in {NODE_DIR} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    for package in (CLIENT_PACKAGE, BROWSER_PACKAGE):
        installed = json.loads(package.read_text())["version"]
        assert installed == CLIENT_VERSION, (
            f"{package}: {installed}, expected {CLIENT_VERSION}: run npm ci in {NODE_DIR}"
        )
    return node


class NodeClient:
    """One ``drive.mjs`` process: a Motia ``Stream`` with a group and an item subscription on one socket.

    Its output lines are read by a thread into a queue; :meth:`expect` waits (bounded) for a line, and every
    line read is kept in :attr:`lines` for the final checks.
    """

    def __init__(
        self,
        node: str,
        url: str,
        stream: str,
        group: str,
        item: str,
        event_types: list[str],
        *,
        token: str | None = None,
    ) -> None:
        self.lines: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr: list[str] = []
        self.proc = subprocess.Popen(
            [node, str(DRIVER), url, stream, group, item, ",".join(event_types)],
            cwd=NODE_DIR,
            env={**os.environ, "MOTIA_STREAM_TOKEN": token or ""},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._queue.put(json.loads(raw))
        self._queue.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self._stderr.append(raw)

    def expect(self, what: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """The next line matching ``predicate`` (lines before it are kept, not checked here)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(left, 0.001))
            except queue.Empty:
                pytest.fail(f"the Node client did not see {what} within {timeout}s; it saw:\n{self.transcript()}")
            if line is None:
                pytest.fail(f"the Node client exited before {what}:\n{self.transcript()}")
            self.lines.append(line)
            if predicate(line):
                return line

    def state(self, kind: str, expected: Any, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until subscription ``kind`` ("group" or "item") reports ``expected`` as its state."""
        return self.expect(
            f"{kind} state {expected!r}", lambda line: line["kind"] == kind and line["state"] == expected, timeout
        )

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["kind"] == kind]

    def raw(self) -> list[dict[str, Any]]:
        return [line["message"] for line in self.lines if line["kind"] == "raw"]

    def close(self) -> None:
        """Close the subscriptions and the client (``leave`` frames), and wait for the process to end."""
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.write("close\n")
            self.proc.stdin.flush()
            self.expect("its own close", lambda line: line["kind"] == "closed")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the Node client did not exit after close:\n{self.transcript()}")
        self._release()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._release()

    def _release(self) -> None:
        """Close the pipes once the readers have seen their end (the process has exited)."""
        for reader in self._readers:
            reader.join(timeout=5)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None and not pipe.closed:
                try:
                    pipe.close()
                except BrokenPipeError:  # stdin of a process that is gone: nothing left to flush
                    pass

    def transcript(self) -> str:
        return "\n".join(json.dumps(line) for line in self.lines[-60:]) + "\nstderr: " + "".join(self._stderr)[-2000:]
