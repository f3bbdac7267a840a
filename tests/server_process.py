"""What the tests' private servers (``tests/redis_server.py``, ``tests/postgres_server.py``) share: a free
loopback port, the server's log file (opened per start, its tail quoted in start-up failures) and use as a
context manager that closes the server."""

from __future__ import annotations

import socket
from pathlib import Path
from types import TracebackType
from typing import IO, Self


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
