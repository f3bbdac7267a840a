"""``motia run --workers N``: N serving processes on one listening socket (SPEC 4).

The supervisor (the process the user started) binds the port once and starts N ``motia run``
processes that inherit the socket and accept from it, as gunicorn and uvicorn's workers do; the kernel
hands each new connection to one of them. It serves nothing itself. The workers are ordinary
instances on one store, so what already holds across instances holds across workers: state is shared
through the store, each cron tick runs once (``claim_tick``), each delivery is handled by one worker
at a time (leases). ``memory://`` cannot be shared by processes and is refused.

Signals: SIGINT/SIGTERM to the supervisor is passed once to every worker (they run in their own
process group, so a terminal's Ctrl-C reaches them only this way); each finishes its in-flight work,
closes its store and exits 0, and the supervisor exits 0 when all did. A second signal is passed on
too (a second Ctrl-C forces the workers, as it forces one ``motia run``). A worker that exits on its
own (a crash, a failed start-up) stops the others and the supervisor exits 1: a process manager
restarts the whole app rather than a half-serving one. A worker whose supervisor dies (even by
SIGKILL) sees the end of a pipe and stops gracefully, so no worker is left orphaned.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from urllib.parse import urlsplit

from motia.exceptions import ConfigError, MotiaError

__all__ = ["SOCKET_ENV", "SUPERVISOR_ENV", "check_workers", "inherited_socket", "supervise"]

logger = logging.getLogger("motia.runtime")

#: A worker's listening socket: the number of the file descriptor it inherited.
SOCKET_ENV = "MOTIA_WORKER_SOCKET"
#: A worker's end of a pipe from its supervisor: end of file means the supervisor is gone.
SUPERVISOR_ENV = "MOTIA_WORKER_SUPERVISOR"
#: Seconds a worker may take beyond ``--shutdown-timeout`` before the supervisor kills it.
KILL_GRACE = 10.0


def check_workers(workers: int, state_url: str) -> None:
    """Refuse what several processes cannot do: share an in-memory store."""
    if workers > 1 and urlsplit(state_url).scheme.lower() == "memory":
        raise ConfigError(
            f"--workers {workers} needs a store the processes can share (sqlite:///path.db or redis://...): "
            "each process would have its own memory:// store"
        )


def bind(host: str, port: int) -> socket.socket:
    """The listening socket every worker inherits (IPv6 when ``host`` is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise MotiaError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def supervise(
    command: Callable[[int], list[str]],
    *,
    host: str,
    port: int,
    workers: int,
    shutdown_timeout: float,
    env: Mapping[str, str],
) -> None:
    """Run ``workers`` processes of ``command(port)`` (a one-process ``motia run``; ``env`` added to
    their environment) on one socket bound to ``host:port`` until SIGINT/SIGTERM; return when all
    stopped gracefully, raise ``MotiaError`` (exit status 1) when a worker failed."""
    sock = bind(host, port)
    port = sock.getsockname()[1]
    watch_read, watch_write = os.pipe()  # the workers hold the read end; nobody ever writes
    child_env = {**os.environ, **env, SOCKET_ENV: str(sock.fileno()), SUPERVISOR_ENV: str(watch_read)}
    supervisor = _Supervisor(shutdown_timeout)
    # Handlers first: a signal that comes while workers start is passed to those already started.
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, supervisor.on_signal) for sig in handled}
    try:
        try:
            cmd = command(port)
            for _ in range(workers):
                if supervisor.stopping.is_set():
                    break
                fds = (sock.fileno(), watch_read)
                supervisor.start(subprocess.Popen(cmd, env=child_env, pass_fds=fds, process_group=0))
        finally:
            # The workers accept; the supervisor never does. The write end stays open while it lives.
            sock.close()
            os.close(watch_read)
        pids = ", ".join(str(w.pid) for w in supervisor.workers)
        logger.info("serving on port %d with %d workers (pids %s)", port, len(supervisor.workers), pids)
        failed = supervisor.wait()
    except BaseException:
        supervisor.kill()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(watch_write)
    if failed:
        raise MotiaError(f"{failed} of {len(supervisor.workers)} workers failed (their output says why)")
    logger.info("all %d workers stopped", len(supervisor.workers))


class _Supervisor:
    """The workers, the signals passed to them, and the wait for all of them to exit."""

    def __init__(self, shutdown_timeout: float) -> None:
        self.workers: list[subprocess.Popen[bytes]] = []
        self.stopping = threading.Event()
        #: The signals passed on: a worker one ended before it could catch it (still starting) stopped as told.
        self.sent: set[int] = set()
        self._exited: queue.SimpleQueue[subprocess.Popen[bytes]] = queue.SimpleQueue()
        self._killer = threading.Timer(shutdown_timeout + KILL_GRACE, self.kill)
        self._killer.daemon = True

    def start(self, worker: subprocess.Popen[bytes]) -> None:
        self.workers.append(worker)
        threading.Thread(target=self._reap, args=(worker,), name=f"motia-reap-{worker.pid}", daemon=True).start()

    def _reap(self, worker: subprocess.Popen[bytes]) -> None:
        worker.wait()
        self._exited.put(worker)

    def on_signal(self, sig: int, frame: FrameType | None) -> None:
        if not self.stopping.is_set():
            logger.info("received %s: stopping the workers gracefully", signal.Signals(sig).name)
        self.stop(sig)

    def stop(self, sig: int) -> None:
        """Pass ``sig`` to every running worker (again on a second signal: a second Ctrl-C forces)."""
        if not self.stopping.is_set():
            self.stopping.set()
            self._killer.start()
        self.sent.add(sig)
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(sig)

    def wait(self) -> int:
        """Wait for every worker; the number that failed (exit status not 0) or exited on their own."""
        failed = 0
        try:
            for _ in self.workers:
                worker = self._exited.get()  # signal handlers run while this waits
                code = worker.returncode
                told = self.stopping.is_set()
                if not told or (code != 0 and -code not in self.sent):
                    failed += 1
                    logger.error("worker %d exited with status %s", worker.pid, code)
                if not told:
                    logger.error("a worker stopped on its own: stopping the others")
                    self.stop(signal.SIGTERM)
        finally:
            self._killer.cancel()
        return failed

    def kill(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                logger.error("worker %d did not stop in time: killing it", worker.pid)
                worker.kill()


def inherited_socket() -> socket.socket | None:
    """In a worker: the listening socket from the supervisor (``None`` in a plain ``motia run``), and a
    watch on the supervisor that stops this process gracefully (SIGTERM to itself) when it is gone."""
    fd = os.environ.pop(SOCKET_ENV, None)
    watch = os.environ.pop(SUPERVISOR_ENV, None)
    if fd is None:
        return None
    if watch is not None:
        threading.Thread(
            target=_watch_supervisor, args=(int(watch),), name="motia-supervisor-watch", daemon=True
        ).start()
    return socket.socket(fileno=int(fd))


def _watch_supervisor(fd: int) -> None:
    while os.read(fd, 1):  # nobody writes: this returns b"" when the supervisor's end closes
        pass
    logger.warning("the supervisor is gone: stopping")
    os.kill(os.getpid(), signal.SIGTERM)
