"""A private ``redis-server`` for the tests: its own loopback port and temp dir, started and stopped on demand.

``RedisServer()`` starts at once and waits until the server answers ``PING``. ``stop()`` sends SIGTERM and waits,
``kill()`` sends SIGKILL (a crash), ``restart()`` starts it again on the same port and dir, so an append-only file
(``appendonly=True``: ``--appendonly yes --appendfsync always``) is reloaded. ``close()`` stops it and removes the
dir. ``extra_args`` go at the end of the command line (e.g. ``["--cluster-enabled", "yes"]``). The server's output
goes to ``redis.log`` in its dir; start-up failures quote its tail.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.server_process import ServerProcess, free_port, spawn_tied

#: How long a server may take to answer PING after it was started (AOF reloading included).
START_DEADLINE = 30.0
#: How long ``stop()`` waits for SIGTERM to take effect before it kills.
STOP_DEADLINE = 30.0


def redis_server_path() -> str | None:
    """The ``redis-server`` executable on PATH, or ``None``."""
    return shutil.which("redis-server")


def ping(port: int, timeout: float = 1.0) -> bool:
    """``True`` if a Redis server on ``127.0.0.1:port`` answers ``PING`` with ``PONG`` (not ``-LOADING``)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = s.recv(64)
                if not chunk:
                    return False
                reply += chunk
            return reply == b"+PONG\r\n"
    except OSError:
        return False


class RedisServer(ServerProcess):
    """A ``redis-server`` process on ``127.0.0.1:port`` with its data in ``dir``."""

    def __init__(
        self, *, appendonly: bool = False, executable: str | None = None, extra_args: Sequence[str] = ()
    ) -> None:
        exe = executable or redis_server_path()
        if exe is None:
            raise FileNotFoundError("redis-server is not on PATH")
        self.executable = exe
        self.appendonly = appendonly
        self.extra_args = list(extra_args)
        self.dir = Path(tempfile.mkdtemp(prefix="motia-redis-"))
        self.log_path = self.dir / "redis.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self._start_on_a_free_port()
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __repr__(self) -> str:
        return f"<RedisServer {self.url} dir={self.dir} {'running' if self.running else 'stopped'}>"

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def _args(self) -> list[str]:
        args = [self.executable, "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
        args += ["--dir", str(self.dir), "--daemonize", "no"]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        return args + self.extra_args

    def _start_on_a_free_port(self, attempts: int = 5) -> None:
        """First start: if another process grabbed the free port in between, try another one."""
        for attempt in range(attempts):
            try:
                self.start()
                return
            except RuntimeError:
                if attempt == attempts - 1 or "Address already in use" not in self._log_tail():
                    raise
                self.port = free_port()

    def start(self) -> None:
        """Start the server (on ``self.port`` and ``self.dir``) and wait until it answers PING."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        log = self._open_log()
        # Killed with its parent (nothing to keep: it is a throwaway server).
        self.proc = spawn_tied(
            self._args(), signal.SIGKILL, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir
        )
        deadline = time.monotonic() + START_DEADLINE
        while not ping(self.port):
            if self.proc.poll() is not None:
                self._close_log()
                raise RuntimeError(
                    f"redis-server on port {self.port} exited with {self.proc.returncode}:\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"redis-server on port {self.port} did not answer PING within {START_DEADLINE}s:\n"
                    f"{self._log_tail()}"
                )
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM, then wait for the process to exit (SIGKILL if it does not within ``STOP_DEADLINE``)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_DEADLINE)
        self._close_log()

    def kill(self) -> None:
        """SIGKILL (no shutdown, no final save) and wait for the process to be gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_DEADLINE)
        self._close_log()

    def restart(self) -> None:
        """Stop the server if it still runs, then start it again on the same port and dir."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and remove its dir."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------------------------------------
