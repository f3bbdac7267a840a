"""What the tests' private servers (``tests/redis_server.py``, ``tests/postgres_server.py``) share: a free
loopback port, whether a process has exited, a start that ties the server's life to this process's
(:func:`spawn_tied`), the server's log file (opened per start, its tail quoted in start-up failures) and use as
a context manager that closes the server."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

#: The one thread that starts every server. Linux sends a child its parent-death signal when the *thread* that
#: forked it ends, not the process: a server started from a short-lived thread (``asyncio.to_thread(server.
#: restart)``) would die with that thread. This one lives until the interpreter exits.
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-server-spawner")


def spawn_tied(args: Sequence[str], death_signal: signal.Signals, **popen: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(args, **popen)`` whose process gets ``death_signal`` when this process dies, however
    it dies (a pytest killed with SIGKILL never runs its fixtures' teardown, so nothing else would stop it).

    On Linux the command runs under util-linux's ``setpriv --pdeathsig``, which sets the signal after
    ``Popen(user=...)`` changed the user (a change of user clears it) and then execs the server, same pid.
    That is no Python code run between fork and exec (``preexec_fn`` may deadlock in a process with threads,
    and the tests have them). Elsewhere, or without ``setpriv``, the server is started untied.
    """
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    command = [setpriv, "--pdeathsig", death_signal.name.removeprefix("SIG"), "--", *args] if setpriv else list(args)

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, **popen)

    return _spawner.submit(start).result()


def process_gone(pid: int) -> bool:
    """Whether ``pid`` has exited (Linux ``/proc``). A zombie counts as gone: once its parent died it waits for
    whoever reaps orphans (pid 1 in a container may never), and holds nothing but its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or between the open and the read
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """Base of a private test server: subclasses set ``log_path`` and define ``close()``."""

    log_path: Path
    _log: IO[bytes] | None = None

    def close(self) -> None:
        raise NotImplementedError  # pragma: no cover

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _open_log(self) -> IO[bytes]:
        """The log file, appended to (a restart keeps what the previous run wrote)."""
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _close_log()
        return self._log

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
